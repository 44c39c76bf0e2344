/**
 * Contract tests: the configuration the program renders runs for real.
 *
 * The minikube stack is rendered by the mocks harness with its S3 endpoint pointed at moto; the
 * AWS resources are created in moto from the rendered inputs; PostgreSQL, the migration Job and the
 * tracking server run from the rendered containers (command, args, env, volumes, uid) in a
 * read-only sandbox; then a data scientist uses the platform with the real MLflow client, and the
 * tests check where everything landed and what is refused. See docs/integration.md.
 *
 * Run with `npm run test:integration` (which runs scripts/integration/setup.sh first).
 */
import { expect } from "chai";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { chromium } from "playwright-core";
import { MLFLOW_IMAGE } from "../../components/versions";
import { ROOT, runProgram } from "../harness";
import { generatePassword } from "./lib/credentials";
import { freePort, runToCompletion, Service, setPidFile, stopAll, stopService, tail } from "./lib/processes";
import { LocalContainer, Rendered, TYPES } from "./lib/rendered";
import { Moto, Postgres, runContainer, setMotoEnforcement, startContainer, startMoto, startPostgres, waitForProbes } from "./lib/services";

const CACHE = path.join(ROOT, ".cache", "integration");
const RUN = path.join(CACHE, "run");
const LOGS = path.join(RUN, "logs");
const MLFLOW_VENV = path.join(CACHE, "venv-mlflow");
const MOTO_VENV = path.join(CACHE, "venv-moto");
const PY_HELPER = path.join(__dirname, "contract.py");
/** Where the UI screenshot goes; scripts/integration/screenshot.sh points it at docs/. */
const SCREENSHOT = process.env.MLFLOW_UI_SCREENSHOT
    ? path.resolve(ROOT, process.env.MLFLOW_UI_SCREENSHOT)
    : path.join(RUN, "mlflow-ui.png");
/** The stack rendered; `CONTRACT_STACK=dev` runs the shared-cluster stack (two replicas). */
const STACK = process.env.CONTRACT_STACK ?? "minikube";
const BIG_MIB = 64;
const CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
];

/**
 * Python modules each image variant carries, from MLflow's docker/Dockerfile (`pip install mlflow`)
 * and docker/Dockerfile.full (`mlflow[extras,azure,db,gateway,genai,auth]`).
 */
const IMAGE_VARIANT_MODULES: Record<string, readonly string[]> = {
    "": [],
    "-full": ["psycopg2", "psycopg", "boto3", "flask_wtf", "uvloop", "httptools"],
};

const phases: Array<{ name: string; seconds: number }> = [];
async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
        return await fn();
    } finally {
        const seconds = (Date.now() - t0) / 1000;
        phases.push({ name, seconds });
        console.log(`      [phase] ${name}: ${seconds.toFixed(1)} s`);
    }
}

/** Runs a contract.py subcommand in the MLflow venv. */
async function python(command: string, input: unknown, env: NodeJS.ProcessEnv = {}): Promise<any> {
    const result = await runToCompletion(path.join(MLFLOW_VENV, "bin", "python"), [PY_HELPER, command], {
        env: {
            PATH: process.env.PATH, HOME: path.join(RUN, "home"),
            // A healthy platform needs no retries; the client's default backoff (7 retries, factor 2)
            // would turn a refused request into minutes of waiting before the failure shows.
            MLFLOW_HTTP_REQUEST_MAX_RETRIES: "2", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR: "1",
            ...env,
        },
        input: JSON.stringify(input),
        logFile: path.join(LOGS, `py-${command}.log`),
        timeoutMs: 600000,
    });
    if (result.code !== 0) {
        throw new Error(`contract.py ${command} failed (${result.code}):\n${result.stderr.slice(-4000)}`);
    }
    const lines = result.stdout.trim().split("\n");
    return JSON.parse(lines[lines.length - 1]!);
}

/** One HTTP request to the tracking server with an explicit Host header. */
function request(port: number, options: { path: string; host: string; auth?: string; method?: string; json?: unknown }): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
        const headers: Record<string, string> = { Host: options.host };
        const body = options.json === undefined ? undefined : JSON.stringify(options.json);
        if (body !== undefined) {
            headers["Content-Type"] = "application/json";
        }
        if (options.auth !== undefined) {
            headers.Authorization = `Basic ${Buffer.from(options.auth).toString("base64")}`;
        }
        const req = http.request({ host: "127.0.0.1", port, path: options.path, method: options.method ?? "GET", headers, timeout: 120000 }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        });
        req.on("error", reject);
        req.end(body);
    });
}

function arg(argv: readonly string[], flag: string): string {
    const i = argv.indexOf(flag);
    if (i < 0 || i + 1 >= argv.length) {
        throw new Error(`the rendered command has no ${flag}`);
    }
    return argv[i + 1]!;
}

describe(`contract: the rendered ${STACK} configuration runs for real`, function () {
    this.timeout(900000);

    let moto: Moto;
    let r: Rendered;
    let deployer: { id: string; secret: string };
    let accessKey: { id: string; secret: string };
    let bucket: string;
    let artifactPrefix: string;
    let postgres: Postgres;
    /** The Deployment's pods; the tests talk to the first one. */
    let pods: Array<{ service: Service; port: number; container: LocalContainer }> = [];
    let server: { service: Service; port: number; container: LocalContainer } | undefined;
    let serverStarts = 0;
    let region: string;
    let jobRuns = 0;
    let admin: { username: string; password: string };
    let db: { user: string; password: string; tracking: string; auth: string };
    let scientist: any;
    let mlflowImageEnv: Record<string, string>;
    let iamProbe: any;

    /** psql against the private PostgreSQL as the application role (or another role). */
    async function sql(database: string, query: string, as: { user: string; password: string } = db): Promise<string[][]> {
        const result = await runToCompletion("psql", ["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", query], {
            env: {
                PATH: process.env.PATH, PGHOST: "127.0.0.1", PGPORT: String(postgres.port), PGUSER: as.user,
                PGPASSWORD: as.password, PGDATABASE: database, PGCONNECT_TIMEOUT: "10",
            },
            logFile: path.join(LOGS, "psql.log"),
        });
        if (result.code !== 0) {
            throw new Error(`psql ${database}: ${result.stderr}`);
        }
        return result.stdout.split("\n").filter((l) => l !== "").map((l) => l.split("\t"));
    }

    async function pgDump(database: string): Promise<string> {
        const result = await runToCompletion("pg_dump", ["--schema-only", "--no-owner", database], {
            env: { PATH: process.env.PATH, PGHOST: "127.0.0.1", PGPORT: String(postgres.port), PGUSER: db.user, PGPASSWORD: db.password },
        });
        if (result.code !== 0) {
            throw new Error(`pg_dump ${database}: ${result.stderr}`);
        }
        // Recent pg_dump brackets its output with a random \restrict key: not part of the schema.
        return result.stdout.split("\n").filter((l) => !/^\\(un)?restrict /.test(l)).join("\n");
    }

    /** Runs the migration Job's pod: init containers in order, then its containers. */
    async function runMigrationJob(): Promise<void> {
        jobRuns += 1;
        const job = r.one(TYPES.job, /migrate/);
        const pod = job.inputs.spec.template.spec;
        const podDir = path.join(RUN, `job-${jobRuns}`);
        for (const c of pod.initContainers ?? []) {
            const lc = r.container(job, c.name, podDir, { imageEnv: mlflowImageEnv });
            const result = await runContainer(lc, path.join(LOGS, `job-${jobRuns}-${c.name}.log`));
            expect(result.code, `init container ${c.name}:\n${result.stderr.slice(-3000)}`).to.equal(0);
        }
        await Promise.all(pod.containers.map(async (c: any) => {
            const lc = r.container(job, c.name, podDir, { imageEnv: mlflowImageEnv });
            const result = await runContainer(lc, path.join(LOGS, `job-${jobRuns}-${c.name}.log`));
            expect(result.code, `container ${c.name}:\n${result.stderr.slice(-3000)}`).to.equal(0);
        }));
    }

    /**
     * Starts the Deployment's pods at once, as a rollout on an empty cluster does (`replicas`, or
     * the autoscaler's minimum), each with fresh emptyDir volumes, and waits for all their probes.
     */
    async function startServers(): Promise<void> {
        const deployment = r.one(TYPES.deployment, /deployment/);
        const hpa = r.all("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")[0];
        const count: number = deployment.inputs.spec.replicas ?? hpa?.inputs.spec.minReplicas ?? 1;
        pods = await Promise.all(Array.from({ length: count }, () => startServer()));
        server = pods[0];
    }

    /** Starts one pod of the Deployment and waits for its probes. */
    async function startServer(): Promise<{ service: Service; port: number; container: LocalContainer }> {
        const n = ++serverStarts;
        const deployment = r.one(TYPES.deployment, /deployment/);
        const lc = r.container(deployment, "mlflow", path.join(RUN, `server-${n}`), { imageEnv: mlflowImageEnv });
        const httpPort = lc.spec.ports.find((p: any) => p.name === "http");
        expect(httpPort, "container port named http").to.not.equal(undefined);
        // The pod must listen on its own IP on the port its probes and Service name; on this
        // machine the same process listens on a free loopback port instead.
        expect(arg(lc.argv, "--host"), "--host").to.equal("0.0.0.0");
        expect(arg(lc.argv, "--port"), "--port").to.equal(String(httpPort.containerPort));
        const port = await freePort();
        const argv = lc.argv.map((a, i) =>
            lc.argv[i - 1] === "--host" ? "127.0.0.1" : lc.argv[i - 1] === "--port" ? String(port) : a);
        const service = startContainer(lc, path.join(LOGS, `server-${n}.log`), argv);
        const probe = async (p: any): Promise<boolean> => {
            const named = lc.spec.ports.find((x: any) => x.name === p.httpGet.port);
            if ((named?.containerPort ?? p.httpGet.port) !== httpPort.containerPort) {
                throw new Error(`probe port ${p.httpGet.port} is not the server's port`);
            }
            // The kubelet probes the pod IP; /health must answer whatever the Host.
            return request(port, { path: p.httpGet.path, host: `10.244.0.10:${httpPort.containerPort}` })
                .then((res) => res.status >= 200 && res.status < 400, () => false);
        };
        await waitForProbes(lc, service, probe);
        return { service, port, container: lc };
    }

    before(async function () {
        fs.rmSync(RUN, { recursive: true, force: true });
        fs.mkdirSync(LOGS, { recursive: true });
        fs.mkdirSync(path.join(RUN, "home"), { recursive: true });
        setPidFile(path.join(RUN, "pids"));
        for (const venv of [MLFLOW_VENV, MOTO_VENV]) {
            if (!fs.existsSync(path.join(venv, "bin", "python"))) {
                throw new Error(`${venv} is missing: run scripts/integration/setup.sh (npm run test:integration does)`);
            }
        }
    });

    after(async function () {
        await stopAll();
        console.log("\n      phase timings:");
        for (const p of phases) {
            console.log(`        ${p.name.padEnd(58)} ${p.seconds.toFixed(1).padStart(6)} s`);
        }
        console.log(`      logs: ${path.relative(ROOT, LOGS)}`);
    });

    it("starts moto (S3 and IAM) on loopback, HTTPS only, enforcing IAM", async function () {
        moto = await phase("moto", () => startMoto(MOTO_VENV, path.join(RUN, "moto"), LOGS));
        mlflowImageEnv = {
            // The image's environment: its Python first on PATH, a UTF-8 locale. Beyond the image:
            // trust in the emulator's self-signed certificate, as the image trusts AWS's.
            PATH: `${MLFLOW_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
            LANG: "C.UTF-8",
            AWS_CA_BUNDLE: moto.caBundle,
        };
    });

    it("renders the stack with the S3 endpoint pointed at moto, for the MLflow version in the venv", async function () {
        r = new Rendered(await phase("render (mocks harness)", () => runProgram(STACK, { awsEndpoint: moto.url })));
        const deployment = r.one(TYPES.deployment, /deployment/);
        const image: string = deployment.inputs.spec.template.spec.containers[0].image;
        expect(image).to.equal(MLFLOW_IMAGE);
        const m = /^ghcr\.io\/mlflow\/mlflow:v(\d+\.\d+\.\d+)(-full)?$/.exec(image);
        expect(m, `unexpected MLflow image ${image}`).to.not.equal(null);
        const [, tagVersion, variant = ""] = m!;

        const probe = await runToCompletion(path.join(MLFLOW_VENV, "bin", "python"), ["-c",
            "import importlib.util, json, mlflow; print(json.dumps({'version': mlflow.__version__, 'modules': " +
            "{m: importlib.util.find_spec(m) is not None for m in ['psycopg2', 'psycopg', 'boto3', 'flask_wtf', 'uvloop', 'httptools']}}))"],
        { env: { PATH: process.env.PATH } });
        const venv = JSON.parse(probe.stdout);
        expect(venv.version, `the venv's MLflow must be the image's (${image})`).to.equal(tagVersion);

        // The modules the rendered server needs, and whether the rendered image carries them.
        const serverArgs: string[] = deployment.inputs.spec.template.spec.containers[0].args;
        const needed = new Set<string>();
        const driver = /^postgresql(?:\+(\w+))?:/.exec(arg(serverArgs, "--backend-store-uri"));
        if (driver) {
            needed.add(driver[1] ?? "psycopg2"); // SQLAlchemy's default PostgreSQL driver
        }
        if (arg(serverArgs, "--artifacts-destination").startsWith("s3://")) {
            needed.add("boto3");
        }
        if (serverArgs.includes("basic-auth")) {
            needed.add("flask_wtf");
        }
        const carried = IMAGE_VARIANT_MODULES[variant] ?? [];
        const lacking = [...needed].filter((mod) => !carried.includes(mod));
        expect(lacking, `${image} lacks Python modules the rendered server needs`).to.deep.equal([]);
        for (const mod of carried) {
            expect(venv.modules[mod], `the venv mirrors ${image} and must carry ${mod}`).to.equal(true);
        }
    });

    it("creates the ArtifactStore's bucket, policies, IAM user and access key in moto from the rendered inputs", async function () {
        const awsResources = r.run.resources.filter((x) => x.type.startsWith("aws:"))
            .map((x) => ({ type: x.type, name: x.name, inputs: x.inputs, state: x.state }));
        const provider = r.run.one("pulumi:providers:aws");
        region = provider.inputs.region;
        const defaultTags = JSON.parse(provider.inputs.defaultTags ?? "{}").tags ?? {};
        const artifactUri = r.run.outputs.artifactUri as string;
        const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(artifactUri);
        expect(m, `artifactUri ${artifactUri}`).to.not.equal(null);
        artifactPrefix = m![2]!;
        const report = await phase("provision AWS resources in moto", () => python("provision", {
            endpoint: moto.url, region, defaultTags, artifactPrefix, resources: awsResources,
        }, { AWS_CA_BUNDLE: moto.caBundle }));
        bucket = report.bucket;
        expect(bucket).to.equal(m![1]);
        deployer = report.deployer;
        // IAM is enforced: a key moto does not know is refused.
        expect(report.enforcement.unknownKeyListBuckets).to.not.equal("ok");
        expect(report.enforcement.unknownKeyListUsers).to.not.equal("ok");
        expect(report.created).to.have.length(awsResources.length);
        for (const [what, rb] of Object.entries<any>(report.readBack)) {
            expect(rb.actual, `${what} as moto stores it`).to.deep.equal(rb.requested);
        }
        expect(report.policyArn.created, "the IAM policy ARN the attachment names").to.equal(report.policyArn.rendered);
        console.log(`      TLS-only bucket policy under moto: ${report.tlsPolicyProbe === "ok"
            ? "a TLS request is allowed; the policy stays in place"
            : `a TLS request is refused (${report.tlsPolicyProbe}): moto does not evaluate aws:SecureTransport; policy removed, endpoint is HTTPS only`}`);

        // The real access key replaces the mocks' in the rendered Secret.
        const s3Secret = r.all(TYPES.secret).find((s) => s.inputs.stringData?.AWS_ACCESS_KEY_ID !== undefined);
        expect(s3Secret, "the Secret holding the S3 access key").to.not.equal(undefined);
        const mock = s3Secret!.inputs.stringData;
        expect(report.accessKeys).to.have.length(1);
        accessKey = { id: report.accessKeys[0].id, secret: report.accessKeys[0].secret };
        r.substituteCredential(mock.AWS_ACCESS_KEY_ID, accessKey.id);
        r.substituteCredential(mock.AWS_SECRET_ACCESS_KEY, accessKey.secret);
        expect(r.secretValue(s3Secret!.state.metadata.name, "AWS_ACCESS_KEY_ID")).to.equal(accessKey.id);
    });

    it("generates real passwords as the program's RandomPassword resources specify, with hostile characters", async function () {
        for (const pw of r.run.ofType("random:index/randomPassword:RandomPassword")) {
            r.substituteCredential(pw.state.result, generatePassword(pw.inputs));
        }
        const pgSecret = r.one(TYPES.secret, /postgres/).state.metadata.name;
        const serverSecret = r.one(TYPES.secret, /mlflow-server/).state.metadata.name;
        db = {
            user: r.secretValue(pgSecret, "username"),
            password: r.secretValue(pgSecret, "password"),
            tracking: "", auth: "",
        };
        admin = { username: r.run.outputs.adminUsername as string, password: r.secretValue(serverSecret, "admin-password") };
        for (const p of [db.password, admin.password]) {
            expect(r.run.credentials).to.not.include(p);
            expect(p).to.match(/['"\\ @:/?#%&$]/);
        }
    });

    it("starts PostgreSQL from the StatefulSet's container, initialised by the component's SQL", async function () {
        const pgBin = fs.readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a))
            .map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => fs.existsSync(path.join(d, "initdb")));
        expect(pgBin, "PostgreSQL server binaries (scripts/integration/setup.sh installs them)").to.not.equal(undefined);
        postgres = await phase("PostgreSQL: initdb, init SQL, start, startup probe", () => startPostgres(r, pgBin!, path.join(RUN, "postgres"), LOGS));
        const sts = r.one(TYPES.statefulSet, /postgres/);
        const env = sts.inputs.spec.template.spec.containers[0].env as any[];
        db.tracking = env.find((e) => e.name === "MLFLOW_TRACKING_DB").value;
        db.auth = env.find((e) => e.name === "MLFLOW_AUTH_DB").value;

        // The application role logs in with its hostile password over TCP (scram-sha-256) …
        const owners = await sql("postgres", "SELECT datname, pg_get_userbyid(datdba) FROM pg_database ORDER BY datname");
        expect(owners).to.deep.include.members([[db.tracking, db.user], [db.auth, db.user]]);
        const role = await sql("postgres", `SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user`);
        expect(role).to.deep.equal([["f", "f", "f"]]);
        // … a wrong password is refused, so the password is really checked …
        await sql("postgres", "SELECT 1", { user: db.user, password: `${db.password}x` }).then(
            () => expect.fail("a wrong password was accepted"), (e: Error) => expect(e.message).to.match(/password authentication failed/));
        // … and a role that does not own the databases cannot connect to them.
        const superuser = r.secretValue(r.one(TYPES.secret, /postgres/).state.metadata.name, "postgres-password");
        const outsider = { user: "contract_outsider", password: crypto.randomBytes(12).toString("hex") };
        await sql("postgres", `CREATE ROLE ${outsider.user} LOGIN PASSWORD '${outsider.password}'`, { user: "postgres", password: superuser });
        await sql(db.tracking, "SELECT 1", outsider).then(
            () => expect.fail("PUBLIC can connect to the tracking database"), (e: Error) => expect(e.message).to.match(/permission denied/));
    });

    it("runs the migration Job (tracking schema, then auth schema) to completion", async function () {
        await phase("migration Job", runMigrationJob);
        const tracking = await sql(db.tracking, "SELECT version_num FROM alembic_version");
        expect(tracking).to.have.length(1);
        const auth = await sql(db.auth, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'");
        expect(auth).to.deep.equal([["1"]]);
        expect([...r.addressUses.values()].some((n) => n > 0), "the database address was mapped to loopback").to.equal(true);
    });

    it("starts the Deployment's container and passes its startup and readiness probes", async function () {
        await phase("tracking server start (probes)", startServers);
        expect(server!.container.sandbox.uid).to.equal(10001);
        // Every pod created or found the admin user: concurrent first starts share one auth database.
        for (const pod of pods) {
            const res = await request(pod.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: `127.0.0.1:${pod.port}`, auth: `${admin.username}:${admin.password}` });
            expect(res.status, `pod on port ${pod.port}`).to.equal(200);
        }
        expect(await sql(db.auth, "SELECT count(*) FROM users")).to.deep.equal([["1"]]);
    });

    it("serves a data scientist using the real MLflow client", async function () {
        // The rendered port-forward URL, with its local port taken by the server here.
        const local = new URL(r.run.outputs.localUrl as string);
        local.port = String(server!.port);
        scientist = await phase(`data scientist session (${BIG_MIB} MiB artifact)`, () => python("scientist", {
            experiment: "mlflow-k8s-contract",
            modelName: "contract-model",
            learningRates: [0.1, 0.01],
            bigMiB: BIG_MIB,
            workDir: path.join(RUN, "scientist"),
        }, {
            MLFLOW_TRACKING_URI: local.origin,
            MLFLOW_TRACKING_USERNAME: admin.username,
            MLFLOW_TRACKING_PASSWORD: admin.password,
            // Every artifact byte through the tracking server (see the presigned test below).
            MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD: "false",
        }));
        console.log(`      client timings: ${JSON.stringify(scientist.timings)}`);
        expect(scientist.runs).to.have.length(2);
        expect(scientist.searchByParam).to.deep.equal([scientist.runs[0].runId]);
        expect(scientist.searchRanked).to.have.members(scientist.runs.map((x: any) => x.runId));
        expect(scientist.lossPoints).to.equal(1000);
        expect(scientist.downloadedEqual, "downloaded through the server").to.deep.equal({
            "reports/summary.txt": true, "reports/nested/config.json": true, "reports/nested/curve.csv": true, "data/weights.bin": true,
        });
        expect(scientist.bigBytes).to.equal(BIG_MIB * 1024 * 1024);
        expect(scientist.modelVersions).to.have.length(1);
        expect(scientist.modelVersions[0].status).to.equal("READY");
        expect(scientist.prediction).to.deep.equal([2, 4, 6]);
    });

    it("hands the client presigned S3 URLs for large uploads and, by default, for every download", async function () {
        // moto cannot authenticate query-string (presigned) signatures with IAM enforcement on (it
        // fails the request with a KeyError on the missing Authorization header), so enforcement
        // is paused for this step only and resumed before the S3 checks below.
        const before = fs.readFileSync(server!.service.logFile, "utf8").length;
        await setMotoEnforcement(moto, false);
        try {
            const local = new URL(r.run.outputs.localUrl as string);
            local.port = String(server!.port);
            const result = await phase("data scientist, direct-to-S3 paths", () => python("scientist-presigned", {
                runId: scientist.runs[0].runId, workDir: path.join(RUN, "scientist"),
            }, {
                MLFLOW_TRACKING_URI: local.origin,
                MLFLOW_TRACKING_USERNAME: admin.username,
                MLFLOW_TRACKING_PASSWORD: admin.password,
                // The client goes to S3 itself: it trusts the emulator's certificate as a laptop trusts AWS's.
                REQUESTS_CA_BUNDLE: moto.caBundle,
            }));
            console.log(`      client timings: ${JSON.stringify(result.timings)}`);
            expect(result.downloadedEqual).to.deep.equal({
                "reports/summary.txt": true, "reports/nested/config.json": true, "reports/nested/curve.csv": true,
                "data/weights.bin": true, "direct/weights.bin": true,
            });
        } finally {
            await setMotoEnforcement(moto, true);
        }
        const log = fs.readFileSync(server!.service.logFile, "utf8").slice(before);
        expect(log, "presigned part URLs handed out").to.match(/POST \/api\/2\.0\/mlflow-artifacts\/mpu\/create\//);
        expect(log, "presigned download URLs handed out").to.match(/GET \/api\/2\.0\/mlflow-artifacts\/presigned\//);
        expect(log, "no proxied download").to.not.match(/GET \/api\/2\.0\/mlflow-artifacts\/artifacts\/\d/);
    });

    it("stores the artifacts in the bucket under the rendered prefix, readable with the server's key", async function () {
        const run0 = scientist.runs[0];
        // mlflow-artifacts:/<path> is served from <artifacts-destination>/<path>.
        const m = /^mlflow-artifacts:\/(.+)$/.exec(run0.artifactUri);
        expect(m, `artifact URI ${run0.artifactUri}`).to.not.equal(null);
        const bigKey = `${artifactPrefix}/${m![1]}/data/weights.bin`;
        const directKey = `${artifactPrefix}/${m![1]}/direct/weights.bin`;
        const probe = await phase("S3 checks with the server's access key", () => python("s3-probe", {
            endpoint: moto.url, region, bucket, prefix: artifactPrefix, key: accessKey, deployer, digest: [bigKey, directKey],
        }, { AWS_CA_BUNDLE: moto.caBundle }));
        const keys: string[] = probe.objects.map((o: any) => o.key);
        expect(keys.filter((k) => !k.startsWith(`${artifactPrefix}/`)), "objects outside the prefix").to.deep.equal([]);
        expect(keys).to.include.members([
            bigKey,
            `${artifactPrefix}/${m![1]}/reports/summary.txt`,
            `${artifactPrefix}/${m![1]}/reports/nested/config.json`,
        ]);
        expect(keys.some((k) => k.startsWith(`${artifactPrefix}/${scientist.experimentId}/models/`)), "the logged model's files").to.equal(true);
        const big = probe.digests[bigKey];
        expect(big.sha256).to.equal(scientist.bigSha256);
        expect(big.sse, "bucket default encryption").to.equal("AES256");
        expect(big.versionId, "bucket versioning").to.be.a("string").and.not.equal("null");
        // Both 64 MiB files reached S3 in parts, one written by the server, one by the client
        // through presigned part URLs (created and completed by the server with its key).
        expect(big.etag, "multipart ETag").to.match(/-\d+$/);
        const direct = probe.digests[directKey];
        expect(direct.sha256).to.equal(scientist.bigSha256);
        expect(direct.etag, "multipart ETag").to.match(/-\d+$/);
        iamProbe = probe;
    });

    it("limits the access key to the artifact prefix of its bucket (moto's IAM enforcement)", async function () {
        const denied = ["listAllBuckets", "deleteBucket", "putBucketPolicy", "putBucketVersioning", "putAtBucketRoot",
            "putInSiblingPrefix", "putInOtherBucket", "getFromOtherBucket", "iamListUsers", "iamCreateAccessKey"];
        for (const action of denied) {
            expect(iamProbe[action], action).to.not.equal("ok");
        }
        for (const action of ["putInsidePrefix", "getInsidePrefix", "listInsidePrefix", "deleteInsidePrefix"]) {
            expect(iamProbe[action], action).to.equal("ok");
        }
        console.log(`      not enforced by moto (s3:prefix condition): list outside the prefix -> ${iamProbe.listOutsidePrefix}`);
    });

    it("keeps the metadata in PostgreSQL's tracking database and the users in the auth database", async function () {
        const exp = await sql(db.tracking, `SELECT experiment_id, artifact_location FROM experiments WHERE experiment_id = ${Number(scientist.experimentId)}`);
        expect(exp).to.have.length(1);
        const runIds = scientist.runs.map((x: any) => `'${x.runId}'`).join(",");
        expect(await sql(db.tracking, `SELECT count(*) FROM runs WHERE run_uuid IN (${runIds}) AND experiment_id = ${Number(scientist.experimentId)}`)).to.deep.equal([["2"]]);
        expect(await sql(db.tracking, `SELECT count(*) FROM metrics WHERE run_uuid = '${scientist.runs[0].runId}' AND key = 'loss'`)).to.deep.equal([["1000"]]);
        expect(await sql(db.tracking, `SELECT key, value FROM params WHERE run_uuid = '${scientist.runs[1].runId}' ORDER BY key`))
            .to.deep.equal([["epochs", "1000"], ["learning_rate", "0.01"], ["optimizer", "adam"]]);
        expect(await sql(db.tracking, `SELECT value FROM tags WHERE run_uuid = '${scientist.runs[0].runId}' AND key = 'team'`)).to.deep.equal([["platform"]]);
        expect(await sql(db.tracking, "SELECT name, version FROM model_versions WHERE name = 'contract-model'")).to.deep.equal([["contract-model", "1"]]);
        expect(await sql(db.auth, `SELECT username, is_admin FROM users WHERE username = '${admin.username}'`)).to.deep.equal([[admin.username, "t"]]);
    });

    it("answers 401 to a request without credentials", async function () {
        const res = await request(server!.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: `127.0.0.1:${server!.port}` });
        expect(res.status).to.equal(401);
        const ui = await request(server!.port, { path: "/", host: `127.0.0.1:${server!.port}` });
        expect(ui.status).to.equal(401);
        const wrong = await request(server!.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: `127.0.0.1:${server!.port}`, auth: `${admin.username}:wrong` });
        expect(wrong.status).to.equal(401);
    });

    it("accepts the Service's DNS names and the port-forward host, and refuses other Host headers with 403", async function () {
        const svc = r.named(TYPES.service, r.run.outputs.serviceName as string);
        const ns: string = svc.state.metadata.namespace;
        const svcPort: number = svc.inputs.spec.ports[0].port;
        // The Service reaches the container port the server listens on.
        const targetPort = svc.inputs.spec.ports[0].targetPort;
        const containerPort = server!.container.spec.ports.find((p: any) => p.name === targetPort || p.containerPort === targetPort);
        expect(containerPort, `Service targetPort ${targetPort}`).to.not.equal(undefined);
        expect(arg(server!.container.argv, "--port")).to.equal(String(containerPort.containerPort));
        const names = [svc.state.metadata.name, `${svc.state.metadata.name}.${ns}`, `${svc.state.metadata.name}.${ns}.svc`,
            `${svc.state.metadata.name}.${ns}.svc.cluster.local`];
        const forwardPort = /port-forward \S+ (\d+):/.exec(r.run.outputs.portForwardCommand as string)![1];
        const accepted = [...names, ...names.map((n) => `${n}:${svcPort}`), `localhost:${forwardPort}`, `127.0.0.1:${forwardPort}`];
        const auth = `${admin.username}:${admin.password}`;
        const apiPath = "/api/2.0/mlflow/experiments/search?max_results=1";
        for (const host of accepted) {
            const res = await request(server!.port, { path: apiPath, host, auth });
            expect(res.status, `Host: ${host}`).to.equal(200);
        }
        for (const host of ["evil.example.com", `${svc.state.metadata.name}.attacker.svc.cluster.local`, "10.244.0.10:5000"]) {
            const res = await request(server!.port, { path: apiPath, host, auth });
            expect(res.status, `Host: ${host}`).to.equal(403);
            // The probes' endpoint answers whatever the Host.
            expect((await request(server!.port, { path: "/health", host })).status, `/health with Host: ${host}`).to.equal(200);
        }
    });

    it("shows the experiment and its runs in the UI to a logged-in user (screenshot)", async function () {
        await phase("UI screenshot (Chromium)", async () => {
            const profile = fs.mkdtempSync(path.join(RUN, "chromium-"));
            const context = await chromium.launchPersistentContext(profile, {
                executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_FLAGS,
                httpCredentials: { username: admin.username, password: admin.password },
                viewport: { width: 1440, height: 900 },
            });
            try {
                const page = await context.newPage();
                await page.goto(`http://localhost:${server!.port}/#/experiments/${scientist.experimentId}/runs`, { waitUntil: "domcontentloaded" });
                for (const run of scientist.runs) {
                    await page.getByText(`lr-${run.learningRate}`, { exact: true }).first().waitFor({ timeout: 90000 });
                }
                // Cosmetic, for the picture: the classic ML view, without the assistant panel.
                await page.getByText("Model training", { exact: true }).click({ timeout: 5000 }).catch(() => undefined);
                await page.getByRole("button", { name: "Close", exact: true }).click({ timeout: 5000 }).catch(() => undefined);
                await page.getByText(`lr-${scientist.runs[0].learningRate}`, { exact: true }).first().waitFor({ timeout: 30000 });
                // The UI keeps polling, so "network idle" never comes: let the table settle.
                await page.waitForTimeout(2000);
                fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
                await page.screenshot({ path: SCREENSHOT });
            } finally {
                await context.close();
            }
        });
        expect(fs.statSync(SCREENSHOT).size).to.be.greaterThan(10000);
        console.log(`      screenshot: ${path.relative(ROOT, SCREENSHOT)}`);
    });

    it("restarts against the migrated database with every run and artifact intact", async function () {
        await phase("tracking server restart", async () => {
            await Promise.all(pods.map((p) => stopService(p.service, 30000)));
            await startServers();
        });
        const auth = `${admin.username}:${admin.password}`;
        const host = `127.0.0.1:${server!.port}`;
        const search = await request(server!.port, { path: "/api/2.0/mlflow/runs/search", host, auth, method: "POST", json: { experiment_ids: [scientist.experimentId] } });
        expect(search.status, search.body.toString()).to.equal(200);
        expect(JSON.parse(search.body.toString()).runs.map((x: any) => x.info.run_id)).to.have.members(scientist.runs.map((x: any) => x.runId));
        const rel = /^mlflow-artifacts:\/(.+)$/.exec(scientist.runs[0].artifactUri)![1];
        const big = await request(server!.port, { path: `/api/2.0/mlflow-artifacts/artifacts/${rel}/data/weights.bin`, host, auth });
        expect(big.status).to.equal(200);
        expect(crypto.createHash("sha256").update(big.body).digest("hex")).to.equal(scientist.bigSha256);
    });

    it("re-running the migration Job changes nothing", async function () {
        const before = { tracking: await pgDump(db.tracking), auth: await pgDump(db.auth) };
        const rows = `SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM metrics), (SELECT version_num FROM alembic_version)`;
        const countsBefore = await sql(db.tracking, rows);
        await phase("migration Job, second run", runMigrationJob);
        expect(await pgDump(db.tracking), "tracking schema").to.equal(before.tracking);
        expect(await pgDump(db.auth), "auth schema").to.equal(before.auth);
        expect(await sql(db.tracking, rows)).to.deep.equal(countsBefore);
        // The server still serves after the migration ran beside it.
        const res = await request(server!.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: `127.0.0.1:${server!.port}`, auth: `${admin.username}:${admin.password}` });
        expect(res.status).to.equal(200);
        for (const pod of pods) {
            expect(tail(pod.service.logFile, 200)).to.not.match(/Traceback/);
        }
    });
});
