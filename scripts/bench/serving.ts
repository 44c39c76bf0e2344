/**
 * `npm run bench:serving`: a served model's endpoint as the program renders it (the model server
 * Deployment's pod: its download as the model's own user, then its scoring server) against plain
 * `mlflow models serve` with MLflow's defaults on the same model files, on this machine. Requests/s
 * and p50/p99 latency at `--clients` concurrent clients (10 by default), interleaved repetitions,
 * and the ratio. The platform (moto, render, PostgreSQL, tracking server, training) is the contract
 * tests' (test/integration/lib/, contract.py). See docs/benchmarks.md.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { MODEL_DIR } from "../../components/modelServer";
import { MLFLOW_VERSION } from "../../components/versions";
import { ROOT } from "../../test/harness";
import { call, percentile, runLoad, Target } from "../../test/integration/lib/load";
import { Platform, ServerPod } from "../../test/integration/lib/platform";
import { freePort, Service, setPidFile, startService, stopAll, waitUntil } from "../../test/integration/lib/processes";
import { treeCpuSeconds, treeMemory } from "../../test/integration/lib/procfs";
import { TYPES } from "../../test/integration/lib/rendered";
import { logger, median, waitForQuiet } from "./common";

const log = logger("bench:serving");

interface Options {
    reps: number;
    clients: number;
    requests: number;
    quietWait: number;
    dir: string;
}

const HELP = `usage: npm run bench:serving -- [options]
  --reps N         interleaved repetitions (default 3)
  --clients N      concurrent clients (default 10)
  --requests N     requests per client and repetition (default 300)
  --quiet-wait S   before each measurement, wait up to S seconds for other work to stop (default 1800)
  --dir DIR        scratch directory, recreated (default $BENCH_DIR, set by run.sh to .cache/bench/serving)`;

function parseOptions(argv: string[]): Options {
    const o: Options = {
        reps: 3, clients: 10, requests: 300, quietWait: 1800,
        dir: process.env.BENCH_DIR ?? path.join(ROOT, ".cache", "bench", "serving"),
    };
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i]!;
        const value = (): string => {
            const v = argv[++i];
            if (v === undefined) {
                throw new Error(`${flag} needs a value\n${HELP}`);
            }
            return v;
        };
        const int = (min: number): number => {
            const n = Number(value());
            if (!Number.isInteger(n) || n < min) {
                throw new Error(`${flag} must be an integer ≥ ${min}\n${HELP}`);
            }
            return n;
        };
        switch (flag) {
            case "--reps": o.reps = int(1); break;
            case "--clients": o.clients = int(1); break;
            case "--requests": o.requests = int(1); break;
            case "--quiet-wait": o.quietWait = int(0); break;
            case "--dir": o.dir = path.resolve(value()); break;
            case "-h": case "--help": console.log(HELP); process.exit(0); break;
            default: throw new Error(`unknown option ${flag}\n${HELP}`);
        }
    }
    return o;
}

/** An endpoint under test: its main process and where to reach it. */
interface Endpoint {
    readonly name: string;
    readonly service: Service;
    readonly target: Target;
}

interface Measurement {
    readonly endpoint: string;
    readonly rep: number;
    readonly requests: number;
    readonly errors: number;
    readonly reqPerS: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly cpuMsPerReq: number;
    readonly pssMiB: number;
    readonly waitedForQuietS: number;
}

/** `mlflow models serve` as its documentation shows it, on the files the rendered pod downloaded. */
async function startPlain(p: Platform, modelDir: string, dir: string): Promise<Endpoint> {
    const port = await freePort();
    const service = startService("mlflow-models-serve", path.join(p.mlflowVenv, "bin", "mlflow"),
        ["models", "serve", "-m", modelDir, "--env-manager", "local", "-h", "127.0.0.1", "-p", String(port)], {
            env: { PATH: `${path.join(p.mlflowVenv, "bin")}:/usr/bin:/bin`, HOME: dir, MLFLOW_DISABLE_TELEMETRY: "true" },
            logFile: path.join(p.logs, "mlflow-models-serve.log"),
        });
    await waitUntil("mlflow models serve to answer /ping", 120000, 200, async () =>
        (await call({ port, host: `127.0.0.1:${port}` }, "GET", "/ping")).status === 200);
    return { name: "plain `mlflow models serve`", service, target: { port, host: `127.0.0.1:${port}` } };
}

async function measure(e: Endpoint, o: Options, rep: number, body: string): Promise<Measurement> {
    const waitedForQuietS = await waitForQuiet(o.quietWait, log);
    // A few requests first: the first call of each worker loads what the model needs.
    await runLoad(e.target, "/invocations", Array.from({ length: o.clients }, () => Array<string>(5).fill(body)));
    const cpu0 = treeCpuSeconds(e.service.child.pid!);
    const res = await runLoad(e.target, "/invocations", Array.from({ length: o.clients }, () => Array<string>(o.requests).fill(body)));
    const cpu = treeCpuSeconds(e.service.child.pid!) - cpu0;
    const m: Measurement = {
        endpoint: e.name, rep, requests: res.requests, errors: res.errors,
        reqPerS: res.requests / res.wallSeconds,
        p50Ms: percentile(res.latenciesMs, 50), p99Ms: percentile(res.latenciesMs, 99),
        cpuMsPerReq: (cpu * 1000) / res.requests, pssMiB: treeMemory(e.service.child.pid!).pssMiB,
        waitedForQuietS,
    };
    log(`${e.name} rep ${rep}: ${m.reqPerS.toFixed(0)} req/s, p50 ${m.p50Ms.toFixed(1)} ms, p99 ${m.p99Ms.toFixed(1)} ms, `
        + `${m.errors} errors, ${m.cpuMsPerReq.toFixed(2)} ms CPU/request, ${m.pssMiB.toFixed(0)} MiB PSS`);
    return m;
}

async function main(): Promise<void> {
    const o = parseOptions(process.argv.slice(2));
    fs.rmSync(o.dir, { recursive: true, force: true });
    fs.mkdirSync(o.dir, { recursive: true });
    setPidFile(path.join(o.dir, "pids"));
    const started = Date.now();
    log(`options ${JSON.stringify(o)}`);
    const served = { name: "iris", model: "models:/iris@champion" };
    const p = new Platform({
        stack: "minikube", dir: path.join(o.dir, "platform"),
        overrides: { mlflowDefaultPermission: "NO_PERMISSIONS", servedModels: JSON.stringify([served]) },
    });
    try {
        log("moto, render, PostgreSQL, migration Job, tracking server (the contract tests' platform)");
        await p.bringUp();
        log("as the admin: train and register iris (scikit-learn), alias champion; the rendered grants CronJob");
        const trained = await p.python("serving-train", {
            experiments: { a: "iris-a", b: "other-b" }, model: "iris", alias: "champion", secretModel: "other",
        }, p.clientEnv());
        await p.runPodToSuccess(p.r.one(TYPES.cronJob, /^mlflow-serving-grants$/), { label: "serving-grants" });
        const deployment = p.r.one(TYPES.deployment, /^mlflow-model-iris-deployment$/);
        const start = await p.startPod(deployment, "model-iris", p.trackingServiceAddresses());
        const failed = start.init.find((s) => s.code !== 0);
        if (failed !== undefined || start.pod === undefined) {
            throw new Error(`the rendered model server did not start: ${failed?.container}: ${failed?.stderr.slice(-2000)}`);
        }
        const pod: ServerPod = start.pod;
        log(`rendered pod ready: download ${start.initSeconds.toFixed(1)} s, load to /ping ${start.readySeconds.toFixed(1)} s`);
        const modelDir = pod.container.sandbox.mounts.find((m) => m.target === MODEL_DIR)!.source;
        const rendered: Endpoint = { name: "rendered", service: pod.service, target: { port: pod.port, host: deployment.state.metadata.name } };
        const plain = await startPlain(p, modelDir, o.dir);
        const body = JSON.stringify(trained.payload);
        // Both answer the same predictions, or the comparison means nothing.
        const answers = await Promise.all([rendered, plain].map(async (e) =>
            (await call(e.target, "POST", "/invocations", undefined, { body })).body.toString()));
        if (answers[0] !== answers[1] || JSON.parse(answers[0]!).predictions.length !== trained.payload.dataframe_split.data.length) {
            throw new Error(`the endpoints answer differently: ${answers.join(" / ")}`);
        }

        const runs: Measurement[] = [];
        for (let rep = 1; rep <= o.reps; rep++) {
            // Alternate who goes first, so drift of the machine falls on both.
            for (const e of rep % 2 === 1 ? [rendered, plain] : [plain, rendered]) {
                runs.push(await measure(e, o, rep, body));
            }
        }
        const summary = summarize(runs, o, pod);
        const out = path.join(o.dir, "result.json");
        fs.writeFileSync(out, `${JSON.stringify({
            meta: {
                startedAt: new Date(started).toISOString(), minutes: (Date.now() - started) / 60000, mlflow: MLFLOW_VERSION,
                cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model.replace(/\s+\d+-Core Processor$/, "").trim(),
                memoryGiB: Math.round(os.totalmem() / 2 ** 30 * 10) / 10, node: process.version, options: o,
                renderedCommand: pod.container.argv, modelFiles: fs.readdirSync(modelDir),
                rowsPerRequest: trained.payload.dataframe_split.data.length,
            },
            runs, summary,
        }, null, 2)}\n`);
        console.log(`\n${summary.text}\nresult: ${path.relative(process.cwd(), out)}`);
    } finally {
        await stopAll();
    }
}

function summarize(runs: readonly Measurement[], o: Options, pod: ServerPod): { text: string; ratio: Record<string, number> } {
    const of = (endpoint: string, key: keyof Measurement) => runs.filter((r) => r.endpoint === endpoint).map((r) => r[key] as number);
    const fmt = (values: number[], digits: number) =>
        `${median(values).toFixed(digits)} [${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}]`;
    const keys: Array<[keyof Measurement, string, number]> = [
        ["reqPerS", "requests/s", 0], ["p50Ms", "latency p50 (ms)", 1], ["p99Ms", "latency p99 (ms)", 1],
        ["errors", "errors", 0], ["cpuMsPerReq", "CPU per request (ms)", 2], ["pssMiB", "PSS after the load (MiB)", 0],
    ];
    const ratio: Record<string, number> = {};
    const lines = [
        `== ${o.clients} clients × ${o.requests} POST /invocations, ${o.reps} repetitions: median [min–max]`,
        `   rendered: ${pod.container.argv.join(" ")}`,
        `${"".padEnd(26)}${"rendered".padEnd(24)}${"plain mlflow models serve".padEnd(28)}rendered ÷ plain`,
    ];
    for (const [key, label, digits] of keys) {
        const r = of("rendered", key);
        const pl = of("plain `mlflow models serve`", key);
        ratio[key] = median(r) / median(pl);
        lines.push(`${label.padEnd(26)}${fmt(r, digits).padEnd(24)}${fmt(pl, digits).padEnd(28)}${Number.isFinite(ratio[key]!) ? `×${ratio[key]!.toFixed(2)}` : "-"}`);
    }
    return { text: lines.join("\n"), ratio };
}

main().catch((err) => {
    console.error(err instanceof Error ? err.stack ?? err.message : err);
    process.exitCode = 1;
});
