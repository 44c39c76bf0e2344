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
import { MLFLOW_IMAGE, MLFLOW_VERSION } from "../../components/versions";
import { ROOT } from "../harness";
import { runToCompletion, setPidFile, stopAll, tail } from "./lib/processes";
import { CACHE, MLFLOW_VENV, MOTO_VENV, Platform, arg, phase, printPhases, request } from "./lib/platform";
import { TYPES } from "./lib/rendered";
import { setMotoEnforcement } from "./lib/services";
import { createRuns, downloadArtifact, logBatchBody, percentile, runLoad, uploadArtifact } from "./lib/load";
import { parseMetrics, sum } from "./lib/metrics";
import { PeakSampler, treeMemory } from "./lib/procfs";
import { parseQuantity } from "../../components/config";
import { MEMORY_HEADROOM } from "../../components/sizing";

const RUN = path.join(CACHE, "run");
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
    "-full": ["psycopg2", "psycopg", "boto3", "flask_wtf", "uvloop", "httptools", "prometheus_flask_exporter", "prometheus_client"],
};

describe(`contract: the rendered ${STACK} configuration runs for real`, function () {
    this.timeout(900000);

    const p = new Platform({ stack: STACK, dir: RUN });
    let scientist: any;
    let iamProbe: any;
    /** The server's access key (the rendered ArtifactStore's `mlflow-artifacts` identity). */
    const accessKey = () => p.keys.get("mlflow-artifacts-access-key")!;

    async function pgDump(database: string): Promise<string> {
        const result = await runToCompletion("pg_dump", ["--schema-only", "--no-owner", database], {
            env: { PATH: process.env.PATH, PGHOST: "127.0.0.1", PGPORT: String(p.postgres.port), PGUSER: p.db.user, PGPASSWORD: p.db.password },
        });
        if (result.code !== 0) {
            throw new Error(`pg_dump ${database}: ${result.stderr}`);
        }
        // Recent pg_dump brackets its output with a random \restrict key: not part of the schema.
        return result.stdout.split("\n").filter((l) => !/^\\(un)?restrict /.test(l)).join("\n");
    }

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        for (const venv of [MLFLOW_VENV, MOTO_VENV]) {
            if (!fs.existsSync(path.join(venv, "bin", "python"))) {
                throw new Error(`${venv} is missing: run scripts/integration/setup.sh (npm run test:integration does)`);
            }
        }
    });

    after(async function () {
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it("starts moto (S3 and IAM) on loopback, HTTPS only, enforcing IAM", async function () {
        await phase("moto", () => p.startMoto());
    });

    it("renders the stack with the S3 endpoint pointed at moto, for the MLflow version in the venv", async function () {
        await phase("render (mocks harness)", () => p.render());
        const deployment = p.r.one(TYPES.deployment, /deployment/);
        const image: string = deployment.inputs.spec.template.spec.containers[0].image;
        expect(image).to.equal(MLFLOW_IMAGE);
        const m = /^ghcr\.io\/mlflow\/mlflow:v(\d+\.\d+\.\d+)(-full)?$/.exec(image);
        expect(m, `unexpected MLflow image ${image}`).to.not.equal(null);
        const [, tagVersion, variant = ""] = m!;

        const probe = await runToCompletion(path.join(MLFLOW_VENV, "bin", "python"), ["-c",
            "import importlib.util, json, mlflow; print(json.dumps({'version': mlflow.__version__, 'modules': " +
            "{m: importlib.util.find_spec(m) is not None for m in ['psycopg2', 'psycopg', 'boto3', 'flask_wtf', 'uvloop', 'httptools', 'prometheus_flask_exporter', 'prometheus_client']}}))"],
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
        if (serverArgs.includes("--expose-prometheus")) {
            // MLflow's exporter in the workers, and the client library the exporter beside them reads with.
            needed.add("prometheus_flask_exporter").add("prometheus_client");
        }
        const carried = IMAGE_VARIANT_MODULES[variant] ?? [];
        const lacking = [...needed].filter((mod) => !carried.includes(mod));
        expect(lacking, `${image} lacks Python modules the rendered server needs`).to.deep.equal([]);
        for (const mod of carried) {
            expect(venv.modules[mod], `the venv mirrors ${image} and must carry ${mod}`).to.equal(true);
        }
    });

    it("creates the ArtifactStore's bucket, policies, IAM users and access keys in moto from the rendered inputs", async function () {
        const report = await phase("provision AWS resources in moto", () => p.provision());
        expect(p.bucket).to.equal(/^s3:\/\/([^/]+)\//.exec(p.r.run.outputs.artifactUri as string)![1]);
        // IAM is enforced: a key moto does not know is refused.
        expect(report.enforcement.unknownKeyListBuckets).to.not.equal("ok");
        expect(report.enforcement.unknownKeyListUsers).to.not.equal("ok");
        expect(report.created).to.have.length(p.r.run.resources.filter((x) => x.type.startsWith("aws:")).length);
        for (const [what, rb] of Object.entries<any>(report.readBack)) {
            expect(rb.actual, `${what} as moto stores it`).to.deep.equal(rb.requested);
        }
        for (const arn of report.policyArns) {
            expect(arn.created, "the IAM policy ARN the attachment names").to.equal(arn.rendered);
        }
        console.log(`      TLS-only bucket policy under moto: ${report.tlsPolicyProbe === "ok"
            ? "a TLS request is allowed; the policy stays in place"
            : `a TLS request is refused (${report.tlsPolicyProbe}): moto does not evaluate aws:SecureTransport; policy removed, endpoint is HTTPS only`}`);
        // The real keys replaced the mocks' in the rendered Secrets.
        expect([...p.keys.keys()].sort()).to.deep.equal(["mlflow-artifacts-access-key", "mlflow-artifacts-backup-access-key"]);
        const s3Secret = p.r.one(TYPES.secret, /^mlflow-s3-credentials$/).state.metadata.name;
        expect(p.r.secretValue(s3Secret, "AWS_ACCESS_KEY_ID")).to.equal(accessKey().id);
    });

    it("generates real passwords as the program's RandomPassword resources specify, with hostile characters", async function () {
        p.generatePasswords();
        for (const pw of [p.db.password, p.admin.password]) {
            expect(p.r.run.credentials).to.not.include(pw);
            expect(pw).to.match(/['"\\ @:/?#%&$]/);
        }
    });

    it("starts PostgreSQL from the StatefulSet's container, initialised by the component's SQL", async function () {
        await phase("PostgreSQL: initdb, init SQL, start, startup probe", () => p.startPostgres());
        // The application role logs in with its hostile password over TCP (scram-sha-256) …
        const owners = await p.sql("postgres", "SELECT datname, pg_get_userbyid(datdba) FROM pg_database ORDER BY datname");
        expect(owners).to.deep.include.members([[p.db.tracking, p.db.user], [p.db.auth, p.db.user]]);
        const role = await p.sql("postgres", `SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user`);
        expect(role).to.deep.equal([["f", "f", "f"]]);
        // … a wrong password is refused, so the password is really checked …
        await p.sql("postgres", "SELECT 1", { user: p.db.user, password: `${p.db.password}x` }).then(
            () => expect.fail("a wrong password was accepted"), (e: Error) => expect(e.message).to.match(/password authentication failed/));
        // … and a role that does not own the databases cannot connect to them.
        const outsider = { user: "contract_outsider", password: crypto.randomBytes(12).toString("hex") };
        await p.sql("postgres", `CREATE ROLE ${outsider.user} LOGIN PASSWORD '${outsider.password}'`, p.superuser);
        await p.sql(p.db.tracking, "SELECT 1", outsider).then(
            () => expect.fail("PUBLIC can connect to the tracking database"), (e: Error) => expect(e.message).to.match(/permission denied/));
    });

    it("runs the migration Job (a backup, then the tracking schema, then the auth schema) to completion", async function () {
        await phase("migration Job", () => p.runMigrationJob());
        const tracking = await p.sql(p.db.tracking, "SELECT version_num FROM alembic_version");
        expect(tracking).to.have.length(1);
        const auth = await p.sql(p.db.auth, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'");
        expect(auth).to.deep.equal([["1"]]);
        expect([...p.r.addressUses.values()].some((n) => n > 0), "the database address was mapped to loopback").to.equal(true);
    });

    it("starts the Deployment's container and passes its startup and readiness probes", async function () {
        await phase("tracking server start (probes)", () => p.startServers());
        expect(p.server.container.sandbox.uid).to.equal(10001);
        // Every pod created or found the admin user: concurrent first starts share one auth database.
        for (const pod of p.pods) {
            const res = await request(pod.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: `127.0.0.1:${pod.port}`, auth: `${p.admin.user}:${p.admin.password}` });
            expect(res.status, `pod on port ${pod.port}`).to.equal(200);
        }
        expect(await p.sql(p.db.auth, "SELECT count(*) FROM users")).to.deep.equal([["1"]]);
    });

    it("serves a data scientist using the real MLflow client", async function () {
        // The rendered port-forward URL, with its local port taken by the server here; every
        // artifact byte through the tracking server (see the presigned test below).
        scientist = await phase(`data scientist session (${BIG_MIB} MiB artifact)`, () => p.python("scientist", {
            experiment: "mlflow-k8s-contract",
            modelName: "contract-model",
            learningRates: [0.1, 0.01],
            bigMiB: BIG_MIB,
            workDir: path.join(RUN, "scientist"),
        }, p.clientEnv()));
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

    it("fits its memory limit with headroom, idle and under 32 concurrent clients, with no database pool error", async function () {
        const deployment = p.r.one(TYPES.deployment, /deployment/);
        const limitMiB = parseQuantity(deployment.inputs.spec.template.spec.containers[0].resources.limits.memory) / 2 ** 20;
        const root = p.server.service.child.pid!;
        const idle = treeMemory(root);
        const pgRoot = p.postgres.service.child.pid!;
        const pgIdle = treeMemory(pgRoot);
        const pgLimitMiB = parseQuantity(p.r.one(TYPES.statefulSet, /postgres/).inputs.spec.template.spec.containers[0].resources.limits.memory) / 2 ** 20;
        const target = { port: p.server.port, host: `127.0.0.1:${p.server.port}`, auth: `${p.admin.user}:${p.admin.password}` };
        const clients = 32;
        const { runIds } = await createRuns(target, "contract-load", clients);
        // Each client its own run, five log_batch requests of 500 metrics (50 keys x 10 steps).
        const bodies = runIds.map((id) => Array.from({ length: 5 }, (_, b) => logBatchBody(id, b, 50, 10)));
        const sampler = new PeakSampler(root, undefined, 250);
        const pgSampler = new PeakSampler(pgRoot, pgRoot, 250);
        sampler.start();
        pgSampler.start();
        const load = await phase(`load: ${clients} clients x 5 log_batch of 500 metrics`, () => runLoad(target, "/api/2.0/mlflow/runs/log-batch", bodies));
        sampler.stop();
        pgSampler.stop();
        const budget = limitMiB * (1 - MEMORY_HEADROOM);
        console.log(`      server process tree: idle ${idle.pssMiB.toFixed(0)} MiB PSS in ${idle.processes} processes ` +
            `(${idle.detail.filter((d) => d.pssMiB >= 1).map((d) => `${d.cmd} ${d.pssMiB.toFixed(0)}`).join(", ")}); ` +
            `peak ${sampler.peakPssMiB.toFixed(0)} MiB; limit ${limitMiB} MiB, ${MEMORY_HEADROOM * 100}% kept free: ${budget.toFixed(0)} MiB`);
        console.log(`      load: ${load.requests} requests in ${load.wallSeconds.toFixed(1)} s, p50 ${percentile(load.latenciesMs, 50).toFixed(0)} ms, ` +
            `p99 ${percentile(load.latenciesMs, 99).toFixed(0)} ms, ${load.errors} errors`);
        expect(load.errors, JSON.stringify(load.errorSamples)).to.equal(0);
        expect(load.poolTimeouts).to.equal(0);
        expect(idle.pssMiB, "idle").to.be.at.most(budget);
        expect(sampler.peakPssMiB, "peak under load").to.be.at.most(budget);
        expect(idle.detail.some((d) => /huey|job runner/.test(d.cmd)), "no job runner processes").to.equal(false);
        console.log(`      PostgreSQL: idle ${pgIdle.pssMiB.toFixed(0)} MiB PSS in ${pgIdle.processes} processes, peak ${pgSampler.peakPssMiB.toFixed(0)} MiB ` +
            `with ${JSON.stringify(pgSampler.peakBackends)} backends; limit ${pgLimitMiB} MiB`);
        expect(pgSampler.peakPssMiB, "PostgreSQL at peak").to.be.at.most(pgLimitMiB * (1 - MEMORY_HEADROOM));
    });

    it("stops accepting a changed password, and a deleted user, within the auth cache's TTL; the Job resets the admin", async function () {
        const ini = p.r.configMapData(p.r.one(TYPES.configMap, /auth-config/).state.metadata.name)["basic_auth.ini"]!;
        const ttl = Number(/auth_cache_ttl_seconds = (\d+)/.exec(ini)![1]);
        const admin = `${p.admin.user}:${p.admin.password}`;
        const host = `127.0.0.1:${p.server.port}`;
        const call = (auth: string, path = "/api/2.0/mlflow/experiments/search?max_results=1", method = "GET", json?: unknown) =>
            request(p.server.port, { path, host, auth, method, json });
        // New connections reach either worker; every one must agree.
        const everyWorker = async (auth: string): Promise<number[]> => Promise.all(Array.from({ length: 8 }, () => call(auth).then((r) => r.status)));
        const [old, fresh] = [crypto.randomBytes(12).toString("hex"), crypto.randomBytes(12).toString("hex")];
        expect((await call(admin, "/api/2.0/mlflow/users/create", "POST", { username: "carol", password: old })).status).to.equal(200);
        expect(new Set(await everyWorker(`carol:${old}`)), "carol logs in, and every worker caches it").to.deep.equal(new Set([200]));
        const changed = Date.now();
        expect((await call(admin, "/api/2.0/mlflow/users/update-password", "PATCH", { username: "carol", password: fresh })).status).to.equal(200);
        expect(new Set(await everyWorker(`carol:${fresh}`)), "the new password works at once").to.deep.equal(new Set([200]));
        const refusedAfter = async (auth: string, since: number): Promise<number> => {
            while ((Date.now() - since) / 1000 < ttl + 5) {
                if ((await everyWorker(auth)).every((s) => s === 401)) {
                    return (Date.now() - since) / 1000;
                }
                await new Promise((r) => setTimeout(r, 250));
            }
            throw new Error(`still accepted ${ttl + 5} s after the change`);
        };
        const oldRefused = await refusedAfter(`carol:${old}`, changed);
        const deleted = Date.now();
        expect((await call(admin, "/api/2.0/mlflow/users/delete", "DELETE", { username: "carol" })).status).to.equal(200);
        const deletedRefused = await refusedAfter(`carol:${fresh}`, deleted);
        console.log(`      auth cache TTL ${ttl} s: old password refused by every worker after ${oldRefused.toFixed(1)} s, deleted user after ${deletedRefused.toFixed(1)} s`);
        // The bound is the TTL; the measurement adds one polling round (0.25 s, then eight requests
        // each verifying a password hash, about 0.1 s of CPU apiece on two cores).
        expect(oldRefused).to.be.at.most(ttl + 2);
        expect(deletedRefused).to.be.at.most(ttl + 2);

        // The admin's password changed through the API: the stack's output no longer logs in …
        const other = crypto.randomBytes(12).toString("hex");
        expect((await call(admin, "/api/2.0/mlflow/users/update-password", "PATCH", { username: p.admin.user, password: other, current_password: p.admin.password })).status).to.equal(200);
        await refusedAfter(admin, Date.now());
        // … until the rendered Job runs again, which sets it back from the Secret.
        await phase("migration Job, again (admin reset)", () => p.runMigrationJob());
        expect(new Set(await everyWorker(admin)), "the stack's adminPassword logs in on every worker").to.deep.equal(new Set([200]));
        console.log("      admin: a password changed through the API was reset by the migration Job; adminPassword logs in again");
    });

    it("hands the client presigned S3 URLs for large uploads and, by default, for every download", async function () {
        // moto cannot authenticate query-string (presigned) signatures with IAM enforcement on (it
        // fails the request with a KeyError on the missing Authorization header), so enforcement
        // is paused for this step only and resumed before the S3 checks below.
        const before = fs.readFileSync(p.server.service.logFile, "utf8").length;
        await setMotoEnforcement(p.moto, false);
        try {
            const result = await phase("data scientist, direct-to-S3 paths", () => p.python("scientist-presigned", {
                runId: scientist.runs[0].runId, workDir: path.join(RUN, "scientist"),
            }, {
                MLFLOW_TRACKING_URI: p.trackingUri(),
                MLFLOW_TRACKING_USERNAME: p.admin.user,
                MLFLOW_TRACKING_PASSWORD: p.admin.password,
                // The client goes to S3 itself: it trusts the emulator's certificate as a laptop trusts AWS's.
                REQUESTS_CA_BUNDLE: p.moto.caBundle,
            }));
            console.log(`      client timings: ${JSON.stringify(result.timings)}`);
            expect(result.downloadedEqual).to.deep.equal({
                "reports/summary.txt": true, "reports/nested/config.json": true, "reports/nested/curve.csv": true,
                "data/weights.bin": true, "direct/weights.bin": true,
            });
        } finally {
            await setMotoEnforcement(p.moto, true);
        }
        const log = fs.readFileSync(p.server.service.logFile, "utf8").slice(before);
        expect(log, "presigned part URLs handed out").to.match(/POST \/api\/2\.0\/mlflow-artifacts\/mpu\/create\//);
        expect(log, "presigned download URLs handed out").to.match(/GET \/api\/2\.0\/mlflow-artifacts\/presigned\//);
        expect(log, "no proxied download").to.not.match(/GET \/api\/2\.0\/mlflow-artifacts\/artifacts\/\d/);
    });

    it("takes concurrent uploads through the proxy intact within the memory limit; a cut-off upload leaves nothing in S3 or the pod's /tmp", async function () {
        const target = { port: p.server.port, host: `127.0.0.1:${p.server.port}`, auth: `${p.admin.user}:${p.admin.password}` };
        const dir = path.join(RUN, "concurrent");
        fs.mkdirSync(dir, { recursive: true });
        // Eight uploads at once, each spooled to the pod's /tmp by MLflow, then sent to S3.
        const files = Array.from({ length: 8 }, (_, i) => {
            const file = path.join(dir, `part-${i}.bin`);
            fs.writeFileSync(file, crypto.randomBytes((12 + i) << 20));
            return { file, rel: `concurrent/${i}/part-${i}.bin`, sha256: crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex") };
        });
        const limitMiB = parseQuantity(p.r.one(TYPES.deployment, /deployment/).inputs.spec.template.spec.containers[0].resources.limits.memory) / 2 ** 20;
        const sampler = new PeakSampler(p.server.service.child.pid!, undefined, 100);
        const before = treeMemory(p.server.service.child.pid!).pssMiB;
        sampler.start();
        const uploads = await phase("8 concurrent uploads of 12-19 MiB through the proxy", () => Promise.all(files.map((f) => uploadArtifact(target, f.rel, f.file))));
        sampler.stop();
        expect(uploads.map((u) => u.status), uploads.map((u) => u.body).join("\n")).to.deep.equal(files.map(() => 200));
        console.log(`      server process tree during the uploads: ${before.toFixed(0)} MiB PSS before, peak ${sampler.peakPssMiB.toFixed(0)} MiB`);
        expect(sampler.peakPssMiB, "peak during the uploads").to.be.at.most(limitMiB * (1 - MEMORY_HEADROOM));
        for (const f of files) {
            const down = await downloadArtifact(target, f.rel);
            expect(down.sha256, f.rel).to.equal(f.sha256);
        }

        // A client that goes away after 20 of 64 MiB: no object, no multipart upload left open, and
        // nothing left in the pod's /tmp (the spooled part is removed; it would count against the emptyDir).
        const tmp = p.server.container.sandbox.mounts.find((m) => m.target === "/tmp")!.source;
        const filesUnder = (d: string): string[] => fs.readdirSync(d, { recursive: true, withFileTypes: true })
            .filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name)).sort();
        const tmpBefore = filesUnder(tmp);
        const cutKey = "concurrent/cut/partial.bin";
        const sent = await new Promise<number>((resolve) => {
            const req = http.request({
                host: "127.0.0.1", port: p.server.port, method: "PUT", path: `/api/2.0/mlflow-artifacts/artifacts/${cutKey}`, agent: false,
                headers: { Host: target.host, Authorization: `Basic ${Buffer.from(target.auth).toString("base64")}`, "Content-Type": "application/octet-stream", "Content-Length": 64 << 20 },
            });
            req.on("error", () => undefined);
            let written = 0;
            const chunk = crypto.randomBytes(1 << 20);
            const next = (): void => {
                if (written >= 20) {
                    setTimeout(() => { req.destroy(); resolve(written); }, 500);
                    return;
                }
                written++;
                if (req.write(chunk)) {
                    setImmediate(next);
                } else {
                    req.once("drain", next);
                }
            };
            next();
        });
        expect(sent).to.equal(20);
        const s3 = { endpoint: p.moto.url, region: p.region, bucket: p.bucket, deployer: p.deployer };
        let left: any;
        for (let i = 0; i < 20; i++) {
            await new Promise((r) => setTimeout(r, 500));
            left = await p.python("multipart-uploads", { ...s3, prefix: `${p.artifactPrefix}/concurrent/cut/` }, { AWS_CA_BUNDLE: p.moto.caBundle });
            if (left.uploads.length === 0) {
                break;
            }
        }
        expect(left.uploads, "multipart uploads left open").to.deep.equal([]);
        const objects = await p.python("artifact-objects", { ...s3, prefix: `${p.artifactPrefix}/concurrent/cut/` }, { AWS_CA_BUNDLE: p.moto.caBundle });
        expect(objects.objects, "no object from the cut-off upload").to.deep.equal([]);
        expect(filesUnder(tmp), "files left in the pod's /tmp").to.deep.equal(tmpBefore);
        // The server goes on serving.
        expect((await uploadArtifact(target, "concurrent/after/ok.bin", files[0]!.file)).status).to.equal(200);
    });

    it("stores the artifacts in the bucket under the rendered prefix, readable with the server's key", async function () {
        const run0 = scientist.runs[0];
        // mlflow-artifacts:/<path> is served from <artifacts-destination>/<path>.
        const m = /^mlflow-artifacts:\/(.+)$/.exec(run0.artifactUri);
        expect(m, `artifact URI ${run0.artifactUri}`).to.not.equal(null);
        const bigKey = `${p.artifactPrefix}/${m![1]}/data/weights.bin`;
        const directKey = `${p.artifactPrefix}/${m![1]}/direct/weights.bin`;
        const probe = await phase("S3 checks with the server's access key", () => p.python("s3-probe", {
            endpoint: p.moto.url, region: p.region, bucket: p.bucket, prefix: p.artifactPrefix, key: accessKey(), deployer: p.deployer, digest: [bigKey, directKey],
        }, { AWS_CA_BUNDLE: p.moto.caBundle }));
        const keys: string[] = probe.objects.map((o: any) => o.key);
        // Artifacts under the artifact prefix; the only other objects are the migration Job's backup.
        const backupPrefix = (p.r.run.outputs.backupUri as string).replace(/^s3:\/\/[^/]+\//, "");
        expect(keys.filter((k) => !k.startsWith(`${p.artifactPrefix}/`) && !k.startsWith(`${backupPrefix}/`)), "objects outside the prefixes").to.deep.equal([]);
        // One per run of the migration Job so far (it backs up before every migration).
        expect(keys.filter((k) => k.startsWith(`${backupPrefix}/`) && k.endsWith("/manifest.json")), "the pre-migration backups").to.have.length.of.at.least(1);
        expect(keys).to.include.members([
            bigKey,
            `${p.artifactPrefix}/${m![1]}/reports/summary.txt`,
            `${p.artifactPrefix}/${m![1]}/reports/nested/config.json`,
        ]);
        expect(keys.some((k) => k.startsWith(`${p.artifactPrefix}/${scientist.experimentId}/models/`)), "the logged model's files").to.equal(true);
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
        const exp = await p.sql(p.db.tracking, `SELECT experiment_id, artifact_location FROM experiments WHERE experiment_id = ${Number(scientist.experimentId)}`);
        expect(exp).to.have.length(1);
        const runIds = scientist.runs.map((x: any) => `'${x.runId}'`).join(",");
        expect(await p.sql(p.db.tracking, `SELECT count(*) FROM runs WHERE run_uuid IN (${runIds}) AND experiment_id = ${Number(scientist.experimentId)}`)).to.deep.equal([["2"]]);
        expect(await p.sql(p.db.tracking, `SELECT count(*) FROM metrics WHERE run_uuid = '${scientist.runs[0].runId}' AND key = 'loss'`)).to.deep.equal([["1000"]]);
        expect(await p.sql(p.db.tracking, `SELECT key, value FROM params WHERE run_uuid = '${scientist.runs[1].runId}' ORDER BY key`))
            .to.deep.equal([["epochs", "1000"], ["learning_rate", "0.01"], ["optimizer", "adam"]]);
        expect(await p.sql(p.db.tracking, `SELECT value FROM tags WHERE run_uuid = '${scientist.runs[0].runId}' AND key = 'team'`)).to.deep.equal([["platform"]]);
        expect(await p.sql(p.db.tracking, "SELECT name, version FROM model_versions WHERE name = 'contract-model'")).to.deep.equal([["contract-model", "1"]]);
        expect(await p.sql(p.db.auth, `SELECT username, is_admin FROM users WHERE username = '${p.admin.user}'`)).to.deep.equal([[p.admin.user, "t"]]);
    });

    it("answers 401 to a request without credentials", async function () {
        const res = await request(p.server.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: `127.0.0.1:${p.server.port}` });
        expect(res.status).to.equal(401);
        const ui = await request(p.server.port, { path: "/", host: `127.0.0.1:${p.server.port}` });
        expect(ui.status).to.equal(401);
        const wrong = await request(p.server.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: `127.0.0.1:${p.server.port}`, auth: `${p.admin.user}:wrong` });
        expect(wrong.status).to.equal(401);
    });

    it("accepts the Service's DNS names and the port-forward host, and refuses other Host headers with 403", async function () {
        const svc = p.r.named(TYPES.service, p.r.run.outputs.serviceName as string);
        const ns: string = svc.state.metadata.namespace;
        const svcPort: number = svc.inputs.spec.ports[0].port;
        // The Service reaches the container port the server listens on.
        const targetPort = svc.inputs.spec.ports[0].targetPort;
        const containerPort = p.server.container.spec.ports.find((p: any) => p.name === targetPort || p.containerPort === targetPort);
        expect(containerPort, `Service targetPort ${targetPort}`).to.not.equal(undefined);
        expect(arg(p.server.container.argv, "--port")).to.equal(String(containerPort.containerPort));
        const names = [svc.state.metadata.name, `${svc.state.metadata.name}.${ns}`, `${svc.state.metadata.name}.${ns}.svc`,
            `${svc.state.metadata.name}.${ns}.svc.cluster.local`];
        const forwardPort = /port-forward \S+ (\d+):/.exec(p.r.run.outputs.portForwardCommand as string)![1];
        const accepted = [...names, ...names.map((n) => `${n}:${svcPort}`), `localhost:${forwardPort}`, `127.0.0.1:${forwardPort}`];
        const auth = `${p.admin.user}:${p.admin.password}`;
        const apiPath = "/api/2.0/mlflow/experiments/search?max_results=1";
        for (const host of accepted) {
            const res = await request(p.server.port, { path: apiPath, host, auth });
            expect(res.status, `Host: ${host}`).to.equal(200);
        }
        for (const host of ["evil.example.com", `${svc.state.metadata.name}.attacker.svc.cluster.local`, "10.244.0.10:5000"]) {
            const res = await request(p.server.port, { path: apiPath, host, auth });
            expect(res.status, `Host: ${host}`).to.equal(403);
            // The probes' endpoint answers whatever the Host.
            expect((await request(p.server.port, { path: "/health", host })).status, `/health with Host: ${host}`).to.equal(200);
        }
    });

    it("is scraped by pod IP on its annotated metrics port, request counters moving with traffic, while the API by pod IP stays refused", async function () {
        const template = p.r.one(TYPES.deployment, /deployment/).inputs.spec.template;
        const annotations = template.metadata.annotations;
        expect(annotations["prometheus.io/scrape"]).to.equal("true");
        const metricsPort = Number(annotations["prometheus.io/port"]);
        const metricsPath: string = annotations["prometheus.io/path"];
        // The annotated port is a container port of the pod, served by the exporter beside the server.
        const exporter = p.server.sidecars.find((c) => c.container.spec.ports.some((x: any) => x.containerPort === metricsPort));
        expect(exporter, `a container of the pod listens on ${metricsPort}`).to.not.equal(undefined);
        // A scraper connects to the pod IP: that is its Host header, and it has no MLflow login.
        const podIpHost = `10.244.0.10:${metricsPort}`;
        const scrape = async (): Promise<Map<string, number>> => {
            const res = await request(exporter!.port, { path: metricsPath, host: podIpHost });
            expect(res.status, `scrape of ${metricsPath}: ${res.body.toString().slice(0, 300)}`).to.equal(200);
            return parseMetrics(res.body.toString());
        };
        const before = await scrape();

        const auth = `${p.admin.user}:${p.admin.password}`;
        const host = `127.0.0.1:${p.server.port}`;
        const gets = 7, posts = 5, denied = 3;
        for (let i = 0; i < gets; i++) {
            expect((await request(p.server.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host, auth })).status).to.equal(200);
        }
        for (let i = 0; i < posts; i++) {
            expect((await request(p.server.port, { path: "/api/2.0/mlflow/runs/search", host, auth, method: "POST", json: { max_results: 1 } })).status).to.equal(200);
        }
        for (let i = 0; i < denied; i++) {
            expect((await request(p.server.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host })).status).to.equal(401);
        }
        const after = await scrape();
        const moved = (name: string, labels: Record<string, string>) => sum(after, name, labels) - sum(before, name, labels);
        // Every request was counted by whichever worker served it (uvicorn spreads them), summed
        // across the workers' files by the exporter.
        expect(moved("mlflow_http_request_total", { method: "GET", status: "200" }), "GET 200").to.be.at.least(gets);
        expect(moved("mlflow_http_request_total", { method: "POST", status: "200" }), "POST 200").to.be.at.least(posts);
        expect(moved("mlflow_http_request_total", { method: "GET", status: "401" }), "GET 401").to.be.at.least(denied);
        expect(moved("mlflow_http_request_duration_seconds_count", { method: "POST", status: "200" }), "POST latency samples").to.be.at.least(posts);
        expect([...after.keys()].filter((k) => k.startsWith("mlflow_http_request_duration_seconds_count{"))
            .every((k) => k.includes(`mlflow_version="${MLFLOW_VERSION}"`)), "latencies labelled with the server's version").to.equal(true);

        // The same pod-IP Host is refused by the server's own port: the API, and MLflow's /metrics there.
        for (const path_ of ["/api/2.0/mlflow/experiments/search?max_results=1", "/metrics"]) {
            for (const podHost of [`10.244.0.10:${arg(p.server.container.argv, "--port")}`, podIpHost]) {
                const res = await request(p.server.port, { path: path_, host: podHost, auth });
                expect(res.status, `${path_} with Host ${podHost} on the server's port`).to.equal(403);
            }
        }
        // The exporter serves counters and nothing else, whatever the path.
        const api = await request(exporter!.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: podIpHost });
        expect(api.body.toString()).to.not.include("experiment_id");
        expect(api.body.toString()).to.match(/^# HELP /m);
    });

    it("shows the experiment and its runs in the UI to a logged-in user (screenshot)", async function () {
        await phase("UI screenshot (Chromium)", async () => {
            const profile = fs.mkdtempSync(path.join(RUN, "chromium-"));
            const context = await chromium.launchPersistentContext(profile, {
                executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_FLAGS,
                httpCredentials: { username: p.admin.user, password: p.admin.password },
                viewport: { width: 1440, height: 900 },
            });
            try {
                const page = await context.newPage();
                await page.goto(`http://localhost:${p.server.port}/#/experiments/${scientist.experimentId}/runs`, { waitUntil: "domcontentloaded" });
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
            await p.stopServers();
            await p.startServers();
        });
        const auth = `${p.admin.user}:${p.admin.password}`;
        const host = `127.0.0.1:${p.server.port}`;
        const search = await request(p.server.port, { path: "/api/2.0/mlflow/runs/search", host, auth, method: "POST", json: { experiment_ids: [scientist.experimentId] } });
        expect(search.status, search.body.toString()).to.equal(200);
        expect(JSON.parse(search.body.toString()).runs.map((x: any) => x.info.run_id)).to.have.members(scientist.runs.map((x: any) => x.runId));
        const rel = /^mlflow-artifacts:\/(.+)$/.exec(scientist.runs[0].artifactUri)![1];
        const big = await request(p.server.port, { path: `/api/2.0/mlflow-artifacts/artifacts/${rel}/data/weights.bin`, host, auth });
        expect(big.status).to.equal(200);
        expect(crypto.createHash("sha256").update(big.body).digest("hex")).to.equal(scientist.bigSha256);
    });

    it("re-running the migration Job changes nothing", async function () {
        const before = { tracking: await pgDump(p.db.tracking), auth: await pgDump(p.db.auth) };
        const rows = `SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM metrics), (SELECT version_num FROM alembic_version)`;
        const countsBefore = await p.sql(p.db.tracking, rows);
        await phase("migration Job, second run", () => p.runMigrationJob());
        expect(await pgDump(p.db.tracking), "tracking schema").to.equal(before.tracking);
        expect(await pgDump(p.db.auth), "auth schema").to.equal(before.auth);
        expect(await p.sql(p.db.tracking, rows)).to.deep.equal(countsBefore);
        // The server still serves after the migration ran beside it.
        const res = await request(p.server.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: `127.0.0.1:${p.server.port}`, auth: `${p.admin.user}:${p.admin.password}` });
        expect(res.status).to.equal(200);
        for (const pod of p.pods) {
            expect(tail(pod.service.logFile, 200)).to.not.match(/Traceback/);
        }
    });
});
