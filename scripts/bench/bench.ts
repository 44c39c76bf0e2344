/**
 * Benchmark of issue 8: the rendered tracking server against `mlflow server` with MLflow's defaults
 * (without and with basic auth), on the same machine, PostgreSQL and S3 emulator, in one run with
 * interleaved repetitions. Not part of `npm test`: `npm run bench` (scripts/bench/README.md,
 * docs/benchmarks.md).
 *
 * The platform is the contract tests' (test/integration/lib/platform.ts): moto, the stack rendered by
 * the mocks harness, its AWS resources, real credentials, PostgreSQL from the rendered StatefulSet
 * and the rendered migration Job. Every server runs in the same read-only sandbox as the rendered
 * Deployment container and is waited for with that container's probes; the defaults servers get
 * nothing from the render but what reaches the same services (database login, S3 key, endpoint).
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parseQuantity } from "../../components/config";
import { MEMORY_HEADROOM } from "../../components/sizing";
import { MLFLOW_VERSION } from "../../components/versions";
import { ROOT } from "../../test/harness";
import { call, createRuns, downloadArtifact, logBatchBody, percentile, runLoad, Target, uploadArtifact } from "../../test/integration/lib/load";
import { arg, Platform, request } from "../../test/integration/lib/platform";
import { freePort, runToCompletion, Service, setPidFile, stopAll, stopService, waitUntil } from "../../test/integration/lib/processes";
import { connectionsPerProcess, ForeignCpu, loadAverage, PeakSampler, postgresBackends, treeCpuSeconds, treeMemory } from "../../test/integration/lib/procfs";
import { logger, median, sleep, waitForQuiet } from "./common";
import { LocalContainer, TYPES } from "../../test/integration/lib/rendered";
import { startContainer, waitForProbes } from "../../test/integration/lib/services";

const S3_PY = path.join(__dirname, "s3_direct.py");
const LOG_BATCH = "/api/2.0/mlflow/runs/log-batch";

// --- options ----------------------------------------------------------------------------------

interface Options {
    stack: string;
    reps: number;
    clients: number[];
    batches: number;
    keys: number;
    steps: number;
    serial: number;
    settle: number;
    quietWait: number;
    artifactMiB: number;
    variants: string[];
    dir: string;
    out: string | undefined;
}

const HELP = `usage: npm run bench -- [options]
  --stack NAME        stack to render (default minikube)
  --reps N            interleaved repetitions (default 3)
  --clients N,M       concurrent clients of each load test, one run each (default 32,64)
  --batches N         log_batch requests per client (default 10)
  --keys N --steps N  metrics per log_batch = keys x steps (default 50 x 10 = 500)
  --serial N          single-client log_batch requests for CPU per request (default 20)
  --settle S          seconds between the first call and the idle measurement (default 30)
  --quiet-wait S      before each measurement, wait up to S seconds for other work on the machine
                      to stop (others under 0.4 cores for 5 s; its own services get 60 s to settle; default 1800, 0 to not wait)
  --artifact-mib N    artifact size for the proxy/direct transfers, 0 to skip (default 256)
  --variants A,B      variants to run (default all): VARIANT_NAMES
  --dir DIR           scratch directory, recreated (default $BENCH_DIR or .cache/bench); not under
                      /tmp: the sandboxed server mounts its own /tmp over it
  --out FILE          JSON result (default <dir>/result.json; the Markdown tables go beside it)`;

function parseOptions(argv: string[]): Options {
    const o: Options = {
        stack: "minikube", reps: 3, clients: [32, 64], batches: 10, keys: 50, steps: 10, serial: 20, settle: 30, quietWait: 1800,
        artifactMiB: 256, variants: VARIANTS.map((v) => v.name),
        dir: process.env.BENCH_DIR ?? path.join(ROOT, ".cache", "bench"), out: undefined,
    };
    const help = HELP.replace("VARIANT_NAMES", VARIANTS.map((v) => v.name).join(", "));
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i]!;
        const value = (): string => {
            const v = argv[++i];
            if (v === undefined) {
                throw new Error(`${flag} needs a value`);
            }
            return v;
        };
        const int = (text: string, min: number): number => {
            const n = Number(text);
            if (!Number.isInteger(n) || n < min) {
                throw new Error(`${flag} takes integers >= ${min}`);
            }
            return n;
        };
        const list = (): string[] => value().split(",").map((s) => s.trim()).filter((s) => s !== "");
        switch (flag) {
            case "--stack": o.stack = value(); break;
            case "--reps": o.reps = int(value(), 1); break;
            case "--clients": o.clients = list().map((s) => int(s, 1)); break;
            case "--batches": o.batches = int(value(), 1); break;
            case "--keys": o.keys = int(value(), 1); break;
            case "--steps": o.steps = int(value(), 1); break;
            case "--serial": o.serial = int(value(), 1); break;
            case "--settle": o.settle = int(value(), 0); break;
            case "--quiet-wait": o.quietWait = int(value(), 0); break;
            case "--artifact-mib": o.artifactMiB = int(value(), 0); break;
            case "--variants": o.variants = list(); break;
            case "--dir": o.dir = path.resolve(value()); break;
            case "--out": o.out = path.resolve(value()); break;
            case "-h": case "--help": console.log(help); process.exit(0); break;
            default: throw new Error(`unknown option ${flag}\n${help}`);
        }
    }
    const unknown = o.variants.filter((name) => !VARIANTS.some((v) => v.name === name));
    if (unknown.length > 0) {
        throw new Error(`unknown variant ${unknown.join(", ")}\n${help}`);
    }
    if (o.keys * o.steps > 1000) {
        throw new Error("MLflow accepts at most 1000 metrics per log_batch (keys x steps)");
    }
    return o;
}

// --- variants ---------------------------------------------------------------------------------

interface Variant {
    readonly name: string;
    readonly description: string;
    /** `mlflow server` with MLflow's defaults, or the rendered Deployment container. */
    readonly kind: "defaults" | "rendered";
    /** Whether the server runs the basic-auth app (clients then send the admin's credentials). */
    readonly auth: boolean;
    /** Environment set on top of the container's. */
    readonly env?: Record<string, string>;
    /** Keys set in the rendered auth ini's [mlflow] section. */
    readonly ini?: Record<string, string>;
    /** Whether the artifact transfers run (two variants are enough to compare proxy and direct). */
    readonly artifacts: boolean;
}

const VARIANTS: readonly Variant[] = [
    {
        name: "defaults", kind: "defaults", auth: false, artifacts: true,
        description: "`mlflow server` with MLflow's defaults: no auth, 4 workers, job execution on, SQLAlchemy's pools (5 + 10); only the store, artifact destination, host and port given",
    },
    {
        name: "defaults+auth", kind: "defaults", auth: true, artifacts: false,
        description: "the same with `--app-name basic-auth` and only what MLflow needs to start it (admin username and password, MLFLOW_FLASK_SERVER_SECRET_KEY): auth store in SQLite in its working directory, no credential cache",
    },
    {
        name: "rendered", kind: "rendered", auth: true, artifacts: true,
        description: "the rendered Deployment container as is",
    },
    {
        name: "rendered-noauth", kind: "rendered", auth: false, artifacts: false,
        description: "the rendered container without `--app-name basic-auth`",
    },
    {
        name: "rendered-before", kind: "rendered", auth: true, artifacts: false,
        env: { MLFLOW_SERVER_ENABLE_JOB_EXECUTION: "true", MLFLOW_SQLALCHEMYSTORE_POOL_SIZE: "5", MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW: "5" },
        ini: { auth_cache_ttl_seconds: "0" },
        description: "the rendered container with the configuration before ADR 0006: job execution on, no credential cache, pools 5 + 5",
    },
];

// --- helpers ----------------------------------------------------------------------------------

const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;
const log = logger("bench");

type Stats = Record<string, number | string | Record<string, unknown> | undefined>;

interface Bench {
    readonly o: Options;
    readonly p: Platform;
    readonly logs: string;
    readonly artifact: { file: string; sha256: string; bytes: number } | undefined;
}

/** A server started for one variant and repetition. */
interface Server {
    readonly service: Service;
    readonly target: Target;
    /** Where its proxied artifacts land in the bucket. */
    readonly artifactKeyPrefix: string;
}

// --- setup ------------------------------------------------------------------------------------

async function setup(o: Options): Promise<Bench> {
    fs.rmSync(o.dir, { recursive: true, force: true });
    fs.mkdirSync(o.dir, { recursive: true });
    setPidFile(path.join(o.dir, "pids"));
    const p = new Platform({ stack: o.stack, dir: path.join(o.dir, "platform") });
    // Platform.bringUp without its last two steps: every variant migrates and starts cold.
    log("moto, render, AWS resources, credentials, PostgreSQL (the contract tests' platform)");
    await p.startMoto();
    await p.render();
    await p.provision();
    p.generatePasswords();
    await p.startPostgres();
    let artifact: Bench["artifact"];
    if (o.artifactMiB > 0) {
        const file = path.join(o.dir, "artifact.bin");
        const hash = crypto.createHash("sha256");
        const fd = fs.openSync(file, "w", 0o644);
        for (let i = 0; i < o.artifactMiB; i++) {
            // Random bytes: nothing on the way may compress them.
            const chunk = crypto.randomBytes(1 << 20);
            hash.update(chunk);
            fs.writeSync(fd, chunk);
        }
        fs.closeSync(fd);
        artifact = { file, sha256: hash.digest("hex"), bytes: o.artifactMiB << 20 };
    }
    return { o, p, logs: p.logs, artifact };
}

/** The rendered server container (Deployment `mlflow`). */
function deploymentContainer(b: Bench): any {
    return b.p.r.one(TYPES.deployment, /deployment/).inputs.spec.template.spec.containers.find((c: any) => c.name === "mlflow");
}

/** Runs s3_direct.py in the MLflow venv (boto3 as the server has it). */
async function s3Direct(b: Bench, command: string, input: unknown): Promise<any> {
    const env = { PATH: process.env.PATH, HOME: path.join(b.p.dir, "home"), AWS_CA_BUNDLE: b.p.moto.caBundle, PYTHONDONTWRITEBYTECODE: "1" };
    const result = await runToCompletion(path.join(b.p.mlflowVenv, "bin", "python"), [S3_PY, command],
        { env, input: JSON.stringify(input), logFile: path.join(b.logs, `s3-direct-${command}.log`), timeoutMs: 1800000 });
    if (result.code !== 0) {
        throw new Error(`s3_direct.py ${command} (${result.code}):\n${result.stderr.slice(-3000)}`);
    }
    return JSON.parse(result.stdout.trim().split("\n").pop()!);
}

/** Deletes every version under a prefix: moto keeps each in memory. */
async function purge(b: Bench, prefix: string): Promise<void> {
    await s3Direct(b, "purge", { endpoint: b.p.moto.url, region: b.p.region, key: b.p.deployer, bucket: b.p.bucket, prefix });
}

// --- servers ----------------------------------------------------------------------------------

/** The rendered container, changed as the variant says. */
function renderedContainer(b: Bench, v: Variant, podDir: string): LocalContainer {
    const deployment = b.p.r.one(TYPES.deployment, /deployment/);
    if ((deployment.inputs.spec.template.spec.initContainers ?? []).length > 0) {
        throw new Error("the server pod has init containers, which the benchmark does not run");
    }
    const lc = b.p.r.container(deployment, "mlflow", podDir, { images: b.p.images });
    let argv = lc.argv;
    if (!v.auth) {
        const i = argv.indexOf("--app-name");
        if (i < 0 || argv[i + 1] !== "basic-auth") {
            throw new Error("the rendered server has no --app-name basic-auth to remove");
        }
        argv = [...argv.slice(0, i), ...argv.slice(i + 2)];
    }
    const iniPath = lc.env.MLFLOW_AUTH_CONFIG_PATH;
    const mount = lc.sandbox.mounts.find((m) => iniPath?.startsWith(`${m.target}/`));
    if (v.ini !== undefined) {
        if (iniPath === undefined || mount === undefined) {
            throw new Error(`${v.name}: the rendered container has no mounted auth ini`);
        }
        const file = path.join(mount.source, path.relative(mount.target, iniPath));
        const mode = fs.statSync(file).mode & 0o777;
        let text = fs.readFileSync(file, "utf8").replace(/\n?$/, "\n");
        // configparser refuses a key twice: replace it where the rendered ini sets it.
        for (const [k, val] of Object.entries(v.ini)) {
            const line = new RegExp(`^${k}\\s*=.*$`, "m");
            text = line.test(text) ? text.replace(line, `${k} = ${val}`) : `${text}${k} = ${val}\n`;
        }
        fs.chmodSync(file, 0o644);
        fs.writeFileSync(file, text);
        fs.chmodSync(file, mode);
    }
    return { ...lc, argv, env: { ...lc.env, ...(v.env ?? {}) } };
}

/**
 * `mlflow server` as MLflow's docs start it, in the rendered container's sandbox (uid, read-only
 * root, a writable /tmp as working directory) and probed as it is.
 */
function defaultsContainer(b: Bench, v: Variant, podDir: string, database: string): LocalContainer {
    const rendered = b.p.r.container(b.p.r.one(TYPES.deployment, /deployment/), "mlflow", path.join(podDir, "rendered"), { images: b.p.images });
    const tmp = path.join(podDir, "tmp");
    fs.mkdirSync(tmp, { recursive: true, mode: 0o777 });
    fs.chmodSync(tmp, 0o777);
    // What reaches the same services (credentials, emulator) and, with auth, what MLflow refuses to start without.
    const names = ["PGUSER", "PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "MLFLOW_S3_ENDPOINT_URL",
        ...(v.auth ? ["MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"] : [])];
    const env: Record<string, string> = { ...b.p.images[rendered.spec.image]!.env, HOME: "/tmp" };
    for (const n of names.filter((x) => rendered.env[x] !== undefined)) {
        env[n] = rendered.env[n]!;
    }
    const port = deploymentContainer(b).ports.find((x: any) => x.name === "http").containerPort;
    return {
        name: `mlflow-${v.name}`,
        spec: { ...rendered.spec, env: undefined, args: undefined },
        argv: ["mlflow", "server", "--backend-store-uri", `postgresql://127.0.0.1:${b.p.postgres.port}/${database}`,
            "--artifacts-destination", `s3://${b.p.bucket}/${b.p.artifactPrefix}/defaults`,
            ...(v.auth ? ["--app-name", "basic-auth"] : []), "--host", "0.0.0.0", "--port", String(port)],
        env,
        sandbox: { ...rendered.sandbox, mounts: [{ target: "/tmp", source: tmp, readOnly: false }], workingDir: "/tmp" },
    };
}

/** Starts a container on a free loopback port and waits for its startup, then readiness, probe. */
async function startServer(b: Bench, lc: LocalContainer, tag: string): Promise<{ service: Service; port: number }> {
    const port = await freePort();
    if (arg(lc.argv, "--host") !== "0.0.0.0") {
        throw new Error(`${lc.name} does not listen on 0.0.0.0`);
    }
    const containerPort = arg(lc.argv, "--port");
    const argv = lc.argv.map((a, i) => lc.argv[i - 1] === "--host" ? "127.0.0.1" : lc.argv[i - 1] === "--port" ? String(port) : a);
    const service = startContainer(lc, path.join(b.logs, `server-${tag}.log`), argv);
    // The kubelet probes the pod IP: /health answers whatever the Host.
    await waitForProbes(lc, service, (probe: any) => request(port, { path: probe.httpGet.path, host: `10.244.0.10:${containerPort}` })
        .then((r) => r.status >= 200 && r.status < 400, () => false));
    return { service, port };
}

/** Drops and recreates databases as the component's init SQL creates them. */
async function freshDatabases(b: Bench, names: string[]): Promise<void> {
    const q = (id: string): string => `"${id.replace(/"/g, '""')}"`;
    // One statement a call: DROP DATABASE cannot run inside the transaction psql makes of several.
    for (const n of names) {
        for (const sql of [`DROP DATABASE IF EXISTS ${q(n)} WITH (FORCE)`, `CREATE DATABASE ${q(n)} OWNER ${q(b.p.db.user)}`, `REVOKE ALL ON DATABASE ${q(n)} FROM PUBLIC`]) {
            await b.p.sql("postgres", sql, b.p.superuser);
        }
    }
}

// --- measurements -----------------------------------------------------------------------------

/** Empty database(s) → the rendered migration Job (rendered variants) → /health → first API call. */
async function coldStart(b: Bench, v: Variant, tag: string): Promise<{ server: Server; stats: Stats }> {
    const foreign = new ForeignCpu();
    const defaultsDb = "mlflow_bench_defaults";
    await freshDatabases(b, v.kind === "defaults" ? [defaultsDb] : [b.p.db.tracking, b.p.db.auth]);
    const podDir = path.join(b.o.dir, "pods", tag);
    const t0 = performance.now();
    if (v.kind === "rendered") {
        await b.p.runMigrationJob();
    }
    const t1 = performance.now();
    // The defaults servers migrate their empty database themselves, inside "server start".
    const migration = v.kind === "rendered" ? { migrationS: (t1 - t0) / 1000 } : {};
    const lc = v.kind === "rendered" ? renderedContainer(b, v, podDir) : defaultsContainer(b, v, podDir, defaultsDb);
    const { service, port } = await startServer(b, lc, tag);
    const t2 = performance.now();
    const target: Target = { port, host: `127.0.0.1:${port}`, ...(v.auth ? { auth: `${b.p.admin.user}:${b.p.admin.password}` } : {}) };
    // Each worker builds its stores at its first request: part of the start a client sees.
    await waitUntil("the first API call", 120000, 100, async () =>
        (await call(target, "GET", "/api/2.0/mlflow/experiments/search?max_results=1", undefined, { timeoutMs: 30000 })).status === 200);
    const t3 = performance.now();
    return {
        server: { service, target, artifactKeyPrefix: `${b.p.artifactPrefix}${v.kind === "defaults" ? "/defaults" : ""}` },
        stats: {
            ...migration, serverToHealthS: (t2 - t1) / 1000, healthToFirstCallS: (t3 - t2) / 1000, totalS: (t3 - t0) / 1000,
            load1: loadAverage()[0], foreignCpuCores: foreign.coresBusy(),
        },
    };
}

/** Idle: processes, PSS (median of 3 samples), CPU rate over 10 s, PostgreSQL connections. */
async function idle(b: Bench, server: Server): Promise<Stats> {
    const pid = server.service.child.pid!;
    const mems = [];
    for (let i = 0; i < 3; i++) {
        mems.push(treeMemory(pid));
        await sleep(1000);
    }
    const mem = mems.sort((x, y) => x.pssMiB - y.pssMiB)[1]!;
    const c0 = treeCpuSeconds(pid);
    const foreign = new ForeignCpu();
    await sleep(10000);
    const backends = postgresBackends(b.p.postgres.service.child.pid!);
    const byProcess: Record<string, { n: number; pssMiB: number }> = {};
    for (const d of mem.detail) {
        const x = byProcess[d.cmd] ?? { n: 0, pssMiB: 0 };
        byProcess[d.cmd] = { n: x.n + 1, pssMiB: round(x.pssMiB + d.pssMiB) };
    }
    return {
        pssMiB: mem.pssMiB, processes: mem.processes, cpuPctOfOneCore: (treeCpuSeconds(pid) - c0) * 10,
        pgConnections: Object.values(backends).reduce((a, n) => a + n, 0), pgConnectionsByDb: backends, byProcess,
        load1: loadAverage()[0], foreignCpuCores: foreign.coresBusy(),
    };
}

/** `clients` concurrent clients, one run each, `batches` log_batch requests of keys × steps metrics. */
async function loadTest(b: Bench, server: Server, tag: string, clients: number, idleCpuPct: number): Promise<Stats> {
    const o = b.o;
    const pid = server.service.child.pid!;
    const pgPid = b.p.postgres.service.child.pid!;
    const { runIds } = await createRuns(server.target, `bench-load-${clients}-${tag}`, clients);
    const bodies = runIds.map((id) => Array.from({ length: o.batches }, (_, n) => logBatchBody(id, n, o.keys, o.steps)));
    const sampler = new PeakSampler(pid, pgPid, 500);
    const c0 = treeCpuSeconds(pid);
    const pg0 = treeCpuSeconds(pgPid);
    const client0 = process.cpuUsage();
    const foreign = new ForeignCpu();
    sampler.start();
    // Keep-alive connections stay with the worker that accepted them: how they spread, a few seconds in.
    let perWorker: Record<string, number> = {};
    const peek = setTimeout(() => { perWorker = connectionsPerProcess(pid, server.target.port); }, 3000);
    const res = await runLoad(server.target, LOG_BATCH, bodies);
    clearTimeout(peek);
    sampler.stop();
    const serverCpu = treeCpuSeconds(pid) - c0;
    const clientUsage = process.cpuUsage(client0);
    const clientCpuS = (clientUsage.user + clientUsage.system) / 1e6 - sampler.cpuSeconds;
    return {
        requests: res.requests, errors: res.errors, errorStatuses: res.errorStatuses,
        errorSamples: res.errorSamples.length > 0 ? { samples: res.errorSamples } : undefined,
        wallS: res.wallSeconds, batchesPerS: res.requests / res.wallSeconds,
        metricsPerS: (res.requests * o.keys * o.steps) / res.wallSeconds,
        p50Ms: percentile(res.latenciesMs, 50), p99Ms: percentile(res.latenciesMs, 99), maxMs: percentile(res.latenciesMs, 100),
        poolTimeouts: res.poolTimeouts,
        serverCpuMsPerReq: (serverCpu * 1000) / res.requests,
        serverCpuMsPerReqIdleCorrected: ((serverCpu - (idleCpuPct / 100) * res.wallSeconds) * 1000) / res.requests,
        serverCpuCoresBusy: serverCpu / res.wallSeconds,
        postgresCpuMsPerReq: ((treeCpuSeconds(pgPid) - pg0) * 1000) / res.requests,
        clientCpuMsPerReq: (clientCpuS * 1000) / res.requests,
        peakPssMiB: sampler.peakPssMiB, peakProcesses: sampler.peakProcesses,
        peakPgConnections: Object.values(sampler.peakBackends).reduce((a, n) => a + n, 0), peakPgConnectionsByDb: sampler.peakBackends,
        clientConnectionsPerWorker: Object.values(perWorker).sort((x, y) => y - x).join("/"),
        load1: loadAverage()[0], foreignCpuCores: foreign.coresBusy(),
    };
}

/** One client, `serial` requests one after another: server CPU per request without contention. */
async function serialTest(b: Bench, server: Server, tag: string, idleCpuPct: number): Promise<Stats> {
    const o = b.o;
    const pid = server.service.child.pid!;
    const { runIds } = await createRuns(server.target, `bench-serial-${tag}`, 1);
    // One request first: connection set-up and first-use caches are not what is measured.
    await runLoad(server.target, LOG_BATCH, [[logBatchBody(runIds[0]!, o.serial, o.keys, o.steps)]]);
    const bodies = [Array.from({ length: o.serial }, (_, n) => logBatchBody(runIds[0]!, n, o.keys, o.steps))];
    const c0 = treeCpuSeconds(pid);
    const foreign = new ForeignCpu();
    const res = await runLoad(server.target, LOG_BATCH, bodies);
    const cpu = treeCpuSeconds(pid) - c0;
    return {
        requests: res.requests, errors: res.errors, p50Ms: percentile(res.latenciesMs, 50),
        serverCpuMsPerReq: (cpu * 1000) / res.requests,
        serverCpuMsPerReqIdleCorrected: ((cpu - (idleCpuPct / 100) * res.wallSeconds) * 1000) / res.requests,
        load1: loadAverage()[0], foreignCpuCores: foreign.coresBusy(),
    };
}

/** The artifact through the server's proxy: upload (the server writes it to S3), then download. */
async function artifactTest(b: Bench, server: Server, tag: string): Promise<Stats> {
    const a = b.artifact!;
    const pid = server.service.child.pid!;
    const rel = `bench/${tag}/artifact.bin`;
    const sampler = new PeakSampler(pid, undefined, 500);
    const foreign = new ForeignCpu();
    const c0 = treeCpuSeconds(pid);
    sampler.start();
    const up = await uploadArtifact(server.target, rel, a.file);
    const c1 = treeCpuSeconds(pid);
    const down = await downloadArtifact(server.target, rel);
    const c2 = treeCpuSeconds(pid);
    sampler.stop();
    if (up.status !== 200) {
        throw new Error(`proxied upload: HTTP ${up.status} ${up.body}`);
    }
    if (down.status !== 200 || down.sha256 !== a.sha256) {
        throw new Error(`proxied download: HTTP ${down.status}, ${down.bytes} bytes, digest ${down.sha256 === a.sha256 ? "ok" : "differs"}`);
    }
    await purge(b, `${server.artifactKeyPrefix}/bench/`);
    const mib = a.bytes / 2 ** 20;
    return {
        uploadS: up.seconds, downloadS: down.seconds, uploadMiBps: mib / up.seconds, downloadMiBps: mib / down.seconds,
        serverCpuUploadS: c1 - c0, serverCpuDownloadS: c2 - c1, peakPssMiB: sampler.peakPssMiB,
        load1: loadAverage()[0], foreignCpuCores: foreign.coresBusy(),
    };
}

/** The same artifact direct to S3 with boto3 and the server's own key (a client holding AWS keys). */
async function directTest(b: Bench, rep: number): Promise<Stats> {
    const a = b.artifact!;
    const common = {
        endpoint: b.p.moto.url, region: b.p.region, key: b.p.keys.get("mlflow-artifacts-access-key"), bucket: b.p.bucket,
        objectKey: `${b.p.artifactPrefix}/bench-direct/rep-${rep}/artifact.bin`,
    };
    const up = await s3Direct(b, "upload", { ...common, file: a.file });
    const down = await s3Direct(b, "download", { ...common, file: path.join(b.o.dir, "direct-download.bin") });
    if (down.sha256 !== a.sha256) {
        throw new Error("direct download: digest differs");
    }
    await purge(b, `${b.p.artifactPrefix}/bench-direct/`);
    const mib = a.bytes / 2 ** 20;
    return { uploadS: up.seconds, downloadS: down.seconds, uploadMiBps: mib / up.seconds, downloadMiBps: mib / down.seconds, load1: loadAverage()[0] };
}

interface VariantRun {
    readonly variant: string;
    readonly rep: number;
    readonly position: number;
    /** By section: coldStart, idle, load<clients>, serial, artifact, peak. */
    readonly sections: Record<string, Stats>;
    readonly error?: string;
}

/** A measurement, started once the machine is quiet; the wait is recorded with it. */
async function whenQuiet(b: Bench, measure: () => Promise<Stats>): Promise<Stats> {
    const waitedForQuietS = await waitForQuiet(b.o.quietWait, log);
    return { ...(await measure()), waitedForQuietS };
}

async function runVariant(b: Bench, v: Variant, rep: number, position: number): Promise<VariantRun> {
    const tag = `${v.name.replace(/[^a-z0-9]+/gi, "-")}-r${rep}`;
    const s: Record<string, Stats> = {};
    const waitedForQuietS = await waitForQuiet(b.o.quietWait, log);
    log(`${v.name} rep ${rep}: cold start`);
    const { server, stats } = await coldStart(b, v, tag);
    s.coldStart = { ...stats, waitedForQuietS };
    try {
        log(`${v.name} rep ${rep}: first call after ${round(stats.totalS as number)} s; settling ${b.o.settle} s`);
        await sleep(b.o.settle * 1000);
        s.idle = await whenQuiet(b, () => idle(b, server));
        const idleCpu = s.idle.cpuPctOfOneCore as number;
        log(`${v.name} rep ${rep}: idle ${round(s.idle.pssMiB as number, 0)} MiB PSS in ${s.idle.processes} processes`);
        for (const clients of b.o.clients) {
            const l = s[`load${clients}`] = await whenQuiet(b, () => loadTest(b, server, tag, clients, idleCpu));
            log(`${v.name} rep ${rep}: ${clients} clients: ${round(l.batchesPerS as number, 2)} req/s, p50 ${round(l.p50Ms as number, 0)} ms, ` +
                `p99 ${round(l.p99Ms as number, 0)} ms, ${l.errors} errors (${l.poolTimeouts} pool timeouts), ${round(l.serverCpuMsPerReq as number, 0)} ms CPU/request`);
        }
        s.serial = await whenQuiet(b, () => serialTest(b, server, tag, idleCpu));
        log(`${v.name} rep ${rep}: 1 client: ${round(s.serial.serverCpuMsPerReq as number, 0)} ms CPU/request, p50 ${round(s.serial.p50Ms as number, 0)} ms`);
        if (v.artifacts && b.artifact !== undefined) {
            s.artifact = await whenQuiet(b, () => artifactTest(b, server, tag));
            log(`${v.name} rep ${rep}: proxied ${b.o.artifactMiB} MiB up ${round(s.artifact.uploadS as number)} s, down ${round(s.artifact.downloadS as number)} s`);
        }
        const peaks = Object.values(s).map((x) => x.peakPssMiB).filter((x): x is number => typeof x === "number");
        s.peak = { pssMiB: Math.max(s.idle.pssMiB as number, ...peaks) };
        return { variant: v.name, rep, position, sections: s };
    } finally {
        await stopService(server.service, 30000);
    }
}

// --- summary ----------------------------------------------------------------------------------

/** `ratio: false`: the figure describes the machine, not the variant; a ratio would mean nothing. */
interface Figure { readonly label: string; readonly key: string; readonly unit: string; readonly digits: number; readonly ratio?: false }
interface Section { readonly title: string; readonly name: string; readonly figures: Figure[] }

function sections(o: Options): Section[] {
    const f = (label: string, key: string, unit: string, digits: number): Figure => ({ label, key, unit, digits });
    const machine: Figure[] = [
        { ...f("load average (1 min) at the end", "load1", "", 2), ratio: false },
        { ...f("CPU used by other work on the machine", "foreignCpuCores", "cores", 2), ratio: false },
    ];
    return [
        {
            title: "Cold start", name: "coldStart", figures: [
                f("migration Job (rendered variants)", "migrationS", "s", 1), f("server start → /health 200", "serverToHealthS", "s", 1),
                f("/health → first API call", "healthToFirstCallS", "s", 2), f("empty database → first API call", "totalS", "s", 1), ...machine,
            ],
        },
        {
            title: "Idle", name: "idle", figures: [
                f("processes", "processes", "", 0), f("PSS of the process tree", "pssMiB", "MiB", 0), f("CPU", "cpuPctOfOneCore", "% of a core", 1),
                f("PostgreSQL connections", "pgConnections", "", 0), ...machine,
            ],
        },
        ...o.clients.map((n) => ({
            title: `Load: ${n} clients × ${o.batches} log_batch of ${o.keys * o.steps} metrics`, name: `load${n}`, figures: [
                f("throughput", "batchesPerS", "req/s", 2), f("metrics", "metricsPerS", "metrics/s", 0),
                f("latency p50", "p50Ms", "ms", 0), f("latency p99", "p99Ms", "ms", 0),
                f("errors (non-200)", "errors", "", 0), f("pool timeouts (QueuePool limit … reached)", "poolTimeouts", "", 0),
                f("server CPU per request", "serverCpuMsPerReq", "ms", 0), f("server CPU per request, idle rate subtracted", "serverCpuMsPerReqIdleCorrected", "ms", 0),
                f("server cores busy", "serverCpuCoresBusy", "cores", 2), f("PostgreSQL CPU per request", "postgresCpuMsPerReq", "ms", 1),
                f("peak PSS of the process tree", "peakPssMiB", "MiB", 0), f("peak PostgreSQL connections", "peakPgConnections", "", 0),
                f("load generator CPU per request", "clientCpuMsPerReq", "ms", 2), ...machine,
            ],
        })),
        {
            title: `One client × ${o.serial} log_batch`, name: "serial", figures: [
                f("server CPU per request", "serverCpuMsPerReq", "ms", 0), f("server CPU per request, idle rate subtracted", "serverCpuMsPerReqIdleCorrected", "ms", 0),
                f("latency p50", "p50Ms", "ms", 0), ...machine,
            ],
        },
        {
            title: `Artifact of ${o.artifactMiB} MiB through the server's proxy`, name: "artifact", figures: [
                f("upload", "uploadS", "s", 1), f("upload rate", "uploadMiBps", "MiB/s", 0), f("download", "downloadS", "s", 1),
                f("download rate", "downloadMiBps", "MiB/s", 0), f("server CPU for the upload", "serverCpuUploadS", "s", 1),
                f("server CPU for the download", "serverCpuDownloadS", "s", 1), f("peak PSS during the transfers", "peakPssMiB", "MiB", 0), ...machine,
            ],
        },
        { title: "Memory", name: "peak", figures: [f("peak PSS over the whole repetition (idle, loads, transfers)", "pssMiB", "MiB", 0)] },
    ];
}

interface Summary { median: number; min: number; max: number; n: number }

function values(runs: readonly VariantRun[], variant: string, section: string, key: string): number[] {
    return runs.filter((r) => r.variant === variant && r.error === undefined)
        .map((r) => r.sections[section]?.[key]).filter((x): x is number => typeof x === "number" && Number.isFinite(x));
}

function summarize(runs: readonly VariantRun[], variants: readonly string[], secs: readonly Section[]): Record<string, Record<string, Summary>> {
    const out: Record<string, Record<string, Summary>> = {};
    for (const v of variants) {
        out[v] = {};
        for (const sec of secs) {
            for (const fig of sec.figures) {
                const xs = values(runs, v, sec.name, fig.key);
                if (xs.length > 0) {
                    out[v]![`${sec.name}.${fig.key}`] = { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
                }
            }
        }
    }
    return out;
}

const fmt = (x: number | undefined, digits: number): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : "-");
const BASELINES = ["defaults", "defaults+auth"];

/** "median [min–max]" and the ratios of medians to the baselines, per variant, for one figure. */
function cells(summary: Record<string, Record<string, Summary>>, variants: readonly string[], section: string, fig: Figure): Array<{ value: string; ratios: string }> {
    const key = `${section}.${fig.key}`;
    const digits = fig.digits;
    return variants.map((v) => {
        const s = summary[v]?.[key];
        if (s === undefined) {
            return { value: "-", ratios: "" };
        }
        const ratios = BASELINES.filter((base) => fig.ratio !== false && base !== v && summary[base]?.[key] !== undefined && summary[base]![key]!.median !== 0)
            .map((base) => `×${fmt(s.median / summary[base]![key]!.median, 2)} ${base === "defaults" ? "d" : "d+a"}`);
        return { value: s.n > 1 ? `${fmt(s.median, digits)} [${fmt(s.min, digits)}–${fmt(s.max, digits)}]` : fmt(s.median, digits), ratios: ratios.join(" ") };
    });
}

function summaryText(summary: Record<string, Record<string, Summary>>, variants: readonly string[], secs: readonly Section[]): string {
    const lines = ["median [min–max] over the repetitions; ×r d = median / median of defaults, ×r d+a = of defaults+auth"];
    for (const sec of secs) {
        lines.push("", `== ${sec.title}`);
        for (const fig of sec.figures) {
            const cs = cells(summary, variants, sec.name, fig);
            if (cs.every((c) => c.value === "-")) {
                continue;
            }
            lines.push(`${fig.label}${fig.unit ? ` (${fig.unit})` : ""}`);
            variants.forEach((v, i) => lines.push(`    ${v.padEnd(16)} ${cs[i]!.value.padEnd(24)} ${cs[i]!.ratios}`));
        }
    }
    return lines.join("\n");
}

function summaryMarkdown(summary: Record<string, Record<string, Summary>>, variants: readonly string[], secs: readonly Section[]): string {
    const lines: string[] = [];
    for (const sec of secs) {
        const rows = sec.figures.map((fig) => ({ fig, cs: cells(summary, variants, sec.name, fig) }))
            .filter((r) => r.cs.some((c) => c.value !== "-"));
        const used = variants.filter((_, i) => rows.some((r) => r.cs[i]!.value !== "-"));
        lines.push(`### ${sec.title}`, "", `| figure | ${used.map((v) => `\`${v}\``).join(" | ")} |`, `|---|${used.map(() => "---|").join("")}`);
        for (const { fig, cs } of rows) {
            const shown = variants.map((v, i) => ({ v, c: cs[i]! })).filter((x) => used.includes(x.v));
            lines.push(`| ${fig.label}${fig.unit ? ` (${fig.unit})` : ""} | ${shown.map(({ c }) => c.ratios ? `${c.value}<br>${c.ratios}` : c.value).join(" | ")} |`);
        }
        lines.push("");
    }
    return lines.join("\n");
}

// --- issue 8's targets ------------------------------------------------------------------------

interface Goal { readonly target: string; readonly measured: string; readonly pass: boolean | undefined }

/** Per repetition, a / b of one figure in two variants (the repetitions are paired: same window of time). */
function pairedRatios(runs: readonly VariantRun[], a: [string, string, string], b: [string, string, string]): number[] {
    const reps = [...new Set(runs.map((r) => r.rep))];
    return reps.map((rep) => {
        const one = (v: string, sec: string, key: string) => runs.find((r) => r.variant === v && r.rep === rep && r.error === undefined)?.sections[sec]?.[key];
        const x = one(...a);
        const y = one(...b);
        return typeof x === "number" && typeof y === "number" && y !== 0 ? x / y : NaN;
    }).filter((x) => Number.isFinite(x));
}

function goals(o: Options, runs: readonly VariantRun[], direct: readonly Stats[], memoryLimitMiB: number): Goal[] {
    const out: Goal[] = [];
    const med = (v: string, sec: string, key: string): number => median(values(runs, v, sec, key));
    const range = (xs: number[], d = 2): string => (xs.length > 0 ? `[${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}]` : "");
    const ratioGoal = (target: string, num: [string, string, string], den: [string, string, string], test: (r: number) => boolean): void => {
        const r = med(...num) / med(...den);
        const per = pairedRatios(runs, num, den);
        out.push(Number.isFinite(r)
            ? { target, measured: `×${fmt(r, 2)} (per repetition ${range(per)})`, pass: test(r) }
            : { target, measured: `not measured (needs ${num[0]} and ${den[0]})`, pass: undefined });
    };
    for (const n of o.clients) {
        const errs = values(runs, "rendered", `load${n}`, "errors");
        const pools = values(runs, "rendered", `load${n}`, "poolTimeouts");
        out.push({
            target: `rendered: 0 errors at ${n} clients`,
            measured: `${errs.reduce((a, x) => a + x, 0)} errors (${pools.reduce((a, x) => a + x, 0)} pool timeouts) in ${errs.length} repetitions`,
            pass: errs.length > 0 ? errs.every((x) => x === 0) : undefined,
        });
    }
    for (const n of o.clients) {
        ratioGoal(`rendered log_batch throughput ≥ 1.5× defaults+auth at ${n} clients`,
            ["rendered", `load${n}`, "batchesPerS"], ["defaults+auth", `load${n}`, "batchesPerS"], (r) => r >= 1.5);
    }
    for (const sec of [...o.clients.map((n) => `load${n}`), "serial"]) {
        ratioGoal(`rendered CPU per request ≤ 1.3× rendered-noauth (${sec === "serial" ? "1 client" : `${sec.slice(4)} clients`})`,
            ["rendered", sec, "serverCpuMsPerReq"], ["rendered-noauth", sec, "serverCpuMsPerReq"], (r) => r <= 1.3);
    }
    if (direct.length > 0) {
        const per = proxyRatios(runs, direct, "rendered", "uploadS");
        const r = median(per);
        out.push({ target: "rendered artifact upload rate ≥ 0.9× direct to S3", measured: `×${fmt(r, 2)} (per repetition ${range(per)})`, pass: Number.isFinite(r) ? r >= 0.9 : undefined });
    }
    const cold = values(runs, "rendered", "coldStart", "totalS");
    out.push({ target: "rendered cold start < 15 s", measured: `${fmt(median(cold), 1)} s ${range(cold, 1)}`, pass: cold.length > 0 ? median(cold) < 15 : undefined });
    const peak = values(runs, "rendered", "peak", "pssMiB");
    const budget = memoryLimitMiB * (1 - MEMORY_HEADROOM);
    out.push({
        target: `rendered peak PSS ≤ ${1 - MEMORY_HEADROOM} × memory limit (${memoryLimitMiB} MiB → ${fmt(budget, 0)} MiB)`,
        measured: `highest ${fmt(Math.max(...peak), 0)} MiB (median ${fmt(median(peak), 0)})`,
        pass: peak.length > 0 ? Math.max(...peak) <= budget : undefined,
    });
    return out;
}

/**
 * Per repetition, a proxied transfer's rate relative to the direct one of the same repetition
 * (direct seconds / proxied seconds): 1 means the proxy costs nothing.
 */
function proxyRatios(runs: readonly VariantRun[], direct: readonly Stats[], variant: string, key: "uploadS" | "downloadS"): number[] {
    return runs.filter((x) => x.variant === variant && x.sections.artifact !== undefined)
        .map((x) => (direct[x.rep - 1]?.[key] as number) / (x.sections.artifact![key] as number)).filter((x) => Number.isFinite(x));
}

/** The artifact through each proxy against direct S3: seconds, and rates relative to direct. */
function transferTable(runs: readonly VariantRun[], direct: readonly Stats[], variants: readonly Variant[]): string[][] {
    const show = (xs: number[], d: number): string => (xs.length === 0 ? "-" : `${fmt(median(xs), d)} [${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}]`);
    const rows = [["", "upload (s)", "download (s)", "upload rate ÷ direct", "download rate ÷ direct"],
        ["direct to S3", show(direct.map((d) => d.uploadS as number), 1), show(direct.map((d) => d.downloadS as number), 1), "1", "1"]];
    for (const v of variants.filter((x) => x.artifacts)) {
        rows.push([`${v.name} (proxy)`, show(values(runs, v.name, "artifact", "uploadS"), 1), show(values(runs, v.name, "artifact", "downloadS"), 1),
            show(proxyRatios(runs, direct, v.name, "uploadS"), 2), show(proxyRatios(runs, direct, v.name, "downloadS"), 2)]);
    }
    return rows;
}

const verdict = (g: Goal): string => (g.pass === undefined ? "n/a" : g.pass ? "pass" : "FAIL");

// --- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
    const o = parseOptions(process.argv.slice(2));
    const started = performance.now();
    const variants = VARIANTS.filter((v) => o.variants.includes(v.name));
    const meta = {
        startedAt: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model,
        memoryGiB: round(os.totalmem() / 2 ** 30, 1), node: process.version, mlflow: MLFLOW_VERSION, options: o, loadAtStart: loadAverage(),
    };
    log(`options ${JSON.stringify(o)}`);
    const b = await setup(o);
    const c = deploymentContainer(b);
    const memoryLimitMiB = parseQuantity(c.resources.limits.memory) / 2 ** 20;
    const literal = (name: string): string | undefined => (c.env as any[]).find((e) => e.name === name)?.value;
    const ini = b.p.r.configMapData(b.p.r.one(TYPES.configMap, /auth-config/).state.metadata.name)["basic_auth.ini"] ?? "";
    // What "rendered" was in this run: the configuration moves on, the figures stay with it.
    const rendered = {
        workers: arg(c.args, "--workers"), poolSize: literal("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"), maxOverflow: literal("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"),
        jobExecution: literal("MLFLOW_SERVER_ENABLE_JOB_EXECUTION"), authCacheTtlSeconds: /^auth_cache_ttl_seconds\s*=\s*(\S+)/m.exec(ini)?.[1],
        cpuLimit: c.resources.limits.cpu, memoryLimit: c.resources.limits.memory,
    };
    log(`rendered server: ${JSON.stringify(rendered)}`);
    const runs: VariantRun[] = [];
    const direct: Stats[] = [];
    try {
        for (let rep = 1; rep <= o.reps; rep++) {
            // Interleaved, and rotated: each variant starts one place further along every repetition.
            const order = variants.map((_, i) => variants[(i + rep - 1) % variants.length]!);
            for (const [position, v] of order.entries()) {
                try {
                    runs.push(await runVariant(b, v, rep, position));
                } catch (err) {
                    const message = err instanceof Error ? err.message : String(err);
                    log(`${v.name} rep ${rep} FAILED: ${message.split("\n")[0]}`);
                    runs.push({ variant: v.name, rep, position, sections: {}, error: message });
                }
            }
            if (b.artifact !== undefined) {
                log(`rep ${rep}: ${o.artifactMiB} MiB direct to S3`);
                direct.push(await whenQuiet(b, () => directTest(b, rep)));
            }
        }
    } finally {
        await stopAll();
    }
    const secs = sections(o);
    const names = variants.map((v) => v.name);
    const summary = summarize(runs, names, secs);
    const targets = goals(o, runs, direct, memoryLimitMiB);
    const loads = runs.flatMap((r) => Object.values(r.sections).map((s) => s.load1)).filter((x): x is number => typeof x === "number");
    const finished = {
        finishedAt: new Date().toISOString(), minutes: round((performance.now() - started) / 60000, 1), loadAtEnd: loadAverage(),
        load1AtMeasurements: { median: median(loads), min: Math.min(...loads), max: Math.max(...loads) },
    };
    const transfers = transferTable(runs, direct, variants);
    const transferTitle = `${o.artifactMiB} MiB artifact: through the server's proxy and direct to S3 (boto3, the server's key), per-repetition ratios`;
    const out = o.out ?? path.join(o.dir, "result.json");
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, `${JSON.stringify({ meta: { ...meta, ...finished, rendered }, variants, runs, direct, summary, targets }, null, 2)}\n`);
    const md = [
        `Run of ${meta.startedAt}: ${o.reps} repetitions, ${meta.cpus} × ${meta.cpuModel}, ${meta.memoryGiB} GiB, ${finished.minutes} min; ` +
        `1-min load average at the measurements ${fmt(finished.load1AtMeasurements.median, 2)} [${fmt(finished.load1AtMeasurements.min, 2)}–${fmt(finished.load1AtMeasurements.max, 2)}]. ` +
        `Rendered server: ${JSON.stringify(rendered)}.`, "",
        "Each cell: median [min–max] over the repetitions; below it the ratio of medians to `defaults` (d) and to `defaults+auth` (d+a).", "",
        summaryMarkdown(summary, names, secs),
        ...(direct.length > 0 ? [`### ${transferTitle}`, "", ...transfers.map((r, i) => `| ${r.join(" | ")} |${i === 0 ? `\n|${r.map(() => "---|").join("")}` : ""}`), ""] : []),
        "### Targets", "", "| target | measured (median) | verdict |", "|---|---|---|",
        ...targets.map((g) => `| ${g.target} | ${g.measured} | ${verdict(g)} |`), "",
    ].join("\n");
    fs.writeFileSync(out.replace(/\.json$/, "") + ".md", md);

    console.log(`\n${summaryText(summary, names, secs)}`);
    if (direct.length > 0) {
        console.log(`\n== ${transferTitle}\n${transfers.map((r) => `    ${r[0]!.padEnd(18)} ${r.slice(1).map((c) => c.padEnd(24)).join("")}`).join("\n")}`);
    }
    console.log(`\nload average (1 min): at start ${meta.loadAtStart.join(" ")}, at end ${finished.loadAtEnd.join(" ")}; ` +
        `at the measurements ${fmt(finished.load1AtMeasurements.median, 2)} [${fmt(finished.load1AtMeasurements.min, 2)}–${fmt(finished.load1AtMeasurements.max, 2)}]`);
    console.log("\n== issue 8's targets");
    const width = Math.max(...targets.map((g) => g.target.length));
    for (const g of targets) {
        console.log(`    ${verdict(g).padEnd(5)} ${g.target.padEnd(width)}  ${g.measured}`);
    }
    console.log(`\nresult: ${out} (and .md)\nlogs: ${b.logs}\ntook ${finished.minutes} min`);
    if (runs.some((x) => x.error !== undefined)) {
        process.exitCode = 1;
    }
}

main().catch((err) => {
    console.error(err instanceof Error ? err.stack : err);
    void stopAll().finally(() => process.exit(1));
});
