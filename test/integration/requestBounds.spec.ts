/**
 * Contract test of the request bounds (components/request-bounds, docs/adr/0011): the minikube
 * server rendered and run for real, then K hostile clients at once (over-limit and maximal bodies,
 * signed in and anonymous, API and artifact upload, declared and chunked, slow senders) while a
 * normal user logs runs. The server's tree stays within its memory limit minus the headroom, every
 * hostile request gets the answer designed for it in MLflow's JSON error shape, the normal user's
 * calls all succeed and nothing hostile is written. Then the latency the layer adds to `log_batch`
 * at 32 clients, against the same server with MLflow's plain basic-auth app.
 */
import { expect } from "chai";
import * as http from "http";
import * as path from "path";
import { parseQuantity } from "../../components/config";
import { MEMORY_HEADROOM } from "../../components/sizing";
import { ROOT } from "../harness";
import { call, createRuns, logBatchBody, percentile, runLoad } from "./lib/load";
import { CACHE, Platform, SERVER_DEPLOYMENT, phase, printPhases } from "./lib/platform";
import { runToCompletion, setPidFile, stopAll } from "./lib/processes";
import { ForeignCpu, PeakSampler, treeMemory } from "./lib/procfs";
import { TYPES } from "./lib/rendered";

const RUN = path.join(CACHE, "run-request-bounds");
const K = 8;
const LOG_BATCH = "/api/2.0/mlflow/runs/log-batch";
/** Shorter than the default, so that the slow senders' test takes seconds. */
const BODY_TIMEOUT_SECONDS = 5;
/** Smaller than the default, so that a chunked upload passes it quickly. */
const UPLOAD_LIMIT = "16Mi";

interface Answer {
    readonly status: number;
    readonly body: string;
    readonly seconds: number;
}

/**
 * One request whose body is sent as `chunks` (each written after `pauseMs`), with a declared
 * length or chunked; resolves with the answer, or status 0 when the connection broke first.
 */
function send(port: number, o: { method?: string; path: string; auth?: string; length?: number; chunks: () => Iterable<Buffer>; pauseMs?: number }): Promise<Answer> {
    const t0 = Date.now();
    return new Promise((resolve) => {
        const headers: Record<string, string | number> = { Host: `127.0.0.1:${port}`, "Content-Type": o.method === "PUT" ? "application/octet-stream" : "application/json" };
        if (o.length !== undefined) {
            headers["Content-Length"] = o.length;
        }
        if (o.auth !== undefined) {
            headers.Authorization = `Basic ${Buffer.from(o.auth).toString("base64")}`;
        }
        let done = false;
        const finish = (a: Answer): void => {
            if (!done) {
                done = true;
                resolve(a);
            }
        };
        const req = http.request({ host: "127.0.0.1", port, path: o.path, method: o.method ?? "POST", headers, agent: false, timeout: 300000 }, (res) => {
            const got: Buffer[] = [];
            res.on("data", (c: Buffer) => got.push(c));
            res.on("end", () => finish({ status: res.statusCode ?? 0, body: Buffer.concat(got).toString(), seconds: (Date.now() - t0) / 1000 }));
            res.on("error", () => finish({ status: res.statusCode ?? 0, body: Buffer.concat(got).toString(), seconds: (Date.now() - t0) / 1000 }));
        });
        req.on("error", (e) => finish({ status: 0, body: e.message, seconds: (Date.now() - t0) / 1000 }));
        const it = o.chunks()[Symbol.iterator]();
        const next = (): void => {
            if (done || req.destroyed) {
                return;
            }
            const n = it.next();
            if (n.done) {
                req.end();
                return;
            }
            const ok = req.write(n.value);
            const go = (): void => { setTimeout(next, o.pauseMs ?? 0); };
            if (ok) {
                go();
            } else {
                req.once("drain", go);
            }
        };
        next();
    });
}

function* repeat(chunk: Buffer, times: number): Iterable<Buffer> {
    for (let i = 0; i < times; i++) {
        yield chunk;
    }
}

/**
 * The largest `log_batch` MLflow accepts: 1000 entities, of which 100 params of 6000 and 100 tags of
 * 8000 characters, the rest metrics, every key of 250 characters (1.7 MiB).
 */
function maximalLogBatch(runId: string): Buffer {
    const key = (p: string, i: number): string => `${p}${i}`.padEnd(250, "k");
    return Buffer.from(JSON.stringify({
        run_id: runId,
        metrics: Array.from({ length: 800 }, (_, i) => ({ key: key("m", i), value: 1.2345678901234567e+300, timestamp: 1700000000000 + i, step: 1000000000 + i })),
        params: Array.from({ length: 100 }, (_, i) => ({ key: key("p", i), value: "v".repeat(6000) })),
        tags: Array.from({ length: 100 }, (_, i) => ({ key: key("t", i), value: "t".repeat(8000) })),
    }));
}

describe("contract: request bounds keep hostile requests from taking the server down", function () {
    this.timeout(900000);
    const p = new Platform({ stack: "minikube", dir: RUN, overrides: { mlflowRequestBodyTimeoutSeconds: BODY_TIMEOUT_SECONDS, mlflowMaxUploadSize: UPLOAD_LIMIT } });
    const admin = (): string => `${p.admin.user}:${p.admin.password}`;
    const env = (name: string): string => p.server.container.env[name]!;

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        await phase("minikube: moto, render, provision, PostgreSQL, migration, server", () => p.bringUp());
    });

    after(async function () {
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it("passes the plugin's own unit tests with the image's Python (test/python/test_request_bounds.py)", async function () {
        const result = await runToCompletion(path.join(p.mlflowVenv, "bin", "python"), [path.join(ROOT, "test", "python", "test_request_bounds.py")], {
            env: { PATH: process.env.PATH, PYTHONDONTWRITEBYTECODE: "1" }, logFile: path.join(p.logs, "pytest-request-bounds.log"),
        });
        expect(result.code, result.stderr.slice(-3000)).to.equal(0);
        expect(result.stderr).to.match(/Ran \d+ tests/);
    });

    it("runs MLflow's basic-auth app behind the bounds plugin, from the mounted ConfigMap, with the rendered limits", async function () {
        expect(p.server.container.argv).to.include.members(["--app-name", "bounded-basic-auth"]);
        expect(env("REQUEST_BOUNDS_MAX_BODY_BYTES")).to.equal(String(2 * 2 ** 20));
        expect(env("REQUEST_BOUNDS_MAX_UPLOAD_BYTES")).to.equal(String(parseQuantity(UPLOAD_LIMIT)));
        const r = await call({ port: p.server.port, host: `127.0.0.1:${p.server.port}`, auth: admin() }, "GET", "/api/2.0/mlflow/experiments/search?max_results=1");
        expect(r.status, r.body.toString()).to.equal(200);
        // The bounds' own refusal proves they are in front: a declared body one byte over the limit.
        const over = await send(p.server.port, { path: LOG_BATCH, length: 2 * 2 ** 20 + 1, chunks: () => [] });
        expect(over.status, over.body).to.equal(413);
    });

    it(`holds K=${K} hostile clients of each kind at once within the memory limit; each gets its designed answer; a normal user is unaffected`, async function () {
        const target = { port: p.server.port, host: `127.0.0.1:${p.server.port}`, auth: admin() };
        const limitMiB = parseQuantity(p.r.one(TYPES.deployment, SERVER_DEPLOYMENT).inputs.spec.template.spec.containers[0].resources.limits.memory) / 2 ** 20;
        const { experimentId, runIds } = await createRuns(target, "bounds-normal", 4);
        const hostileExp = await call(target, "POST", "/api/2.0/mlflow/experiments/create", { name: "bounds-hostile" });
        const hostileRun = JSON.parse((await call(target, "POST", "/api/2.0/mlflow/runs/create", { experiment_id: JSON.parse(hostileExp.body.toString()).experiment_id, start_time: Date.now() })).body.toString()).run.info.run_id;
        const maximal = maximalLogBatch("0".repeat(32));
        const overMiB = 58;
        const mib = Buffer.alloc(2 ** 20, 0x20);

        const root = p.server.service.child.pid!;
        const idle = treeMemory(root).pssMiB;
        const sampler = new PeakSampler(root, undefined, 100);
        sampler.start();
        let normalDone = false;
        const normal: number[] = [];
        const normalUser = (async () => {
            for (let b = 0; !normalDone || b < 20; b++) {
                const r = await call(target, "POST", LOG_BATCH, undefined, { body: logBatchBody(runIds[b % runIds.length]!, b, 10, 5) });
                normal.push(r.status);
                if (r.status !== 200) {
                    console.log(`      normal user: ${r.status} ${r.body.toString().slice(0, 300)}`);
                }
            }
        })();
        const times = <T>(n: number, f: () => Promise<T>): Promise<T[]> => Promise.all(Array.from({ length: n }, f));
        const kinds: Record<string, { expected: number[]; answers: Promise<Answer[]> }> = {
            // 58 MB, as the issue's reproduction: refused from the Content-Length, before the login check.
            "over-limit API body, signed in": { expected: [413], answers: times(K, () => send(p.server.port, { path: LOG_BATCH, auth: admin(), length: overMiB * 2 ** 20, chunks: () => repeat(mib, overMiB) })) },
            "over-limit API body, anonymous": { expected: [413], answers: times(K, () => send(p.server.port, { path: LOG_BATCH, length: overMiB * 2 ** 20, chunks: () => repeat(mib, overMiB) })) },
            // A chunked body reserves the whole limit in the budget: 413 once past it, or 503 while the budget is taken.
            "over-limit API body, chunked": { expected: [413, 503], answers: times(K, () => send(p.server.port, { path: LOG_BATCH, auth: admin(), chunks: () => repeat(mib, 8) })) },
            // The largest body MLflow accepts, for a run that does not exist: read and parsed in full
            // (the worst cost an allowed body has), or 503 while the worker's budget is taken.
            "maximal API body, signed in": { expected: [404, 503], answers: times(K, () => send(p.server.port, { path: LOG_BATCH, auth: admin(), length: maximal.length, chunks: () => [maximal] })) },
            "maximal API body, anonymous": { expected: [401, 503], answers: times(K, () => send(p.server.port, { path: LOG_BATCH, length: maximal.length, chunks: () => [maximal] })) },
            "over-limit upload, declared": { expected: [413], answers: times(K, () => send(p.server.port, { method: "PUT", path: `/api/2.0/mlflow-artifacts/artifacts/${experimentId}/hostile/declared.bin`, auth: admin(), length: 3 * 2 ** 30, chunks: () => repeat(mib, 32) })) },
            "over-limit upload, chunked": { expected: [413], answers: times(K, () => send(p.server.port, { method: "PUT", path: `/api/2.0/mlflow-artifacts/artifacts/${experimentId}/hostile/chunked.bin`, auth: admin(), chunks: () => repeat(mib, 24) })) },
            "over-limit upload, anonymous": { expected: [413], answers: times(K, () => send(p.server.port, { method: "PUT", path: `/api/2.0/mlflow-artifacts/artifacts/${experimentId}/hostile/anonymous.bin`, length: 3 * 2 ** 30, chunks: () => repeat(mib, 32) })) },
            // A body that trickles in: 1 KiB a second of a declared 64 KiB.
            "slow API body, signed in": { expected: [408], answers: times(K, () => send(p.server.port, { path: LOG_BATCH, auth: admin(), length: 64 * 1024, chunks: () => repeat(Buffer.alloc(1024, 0x20), 64), pauseMs: 1000 })) },
            "slow API body, anonymous": { expected: [408], answers: times(K, () => send(p.server.port, { path: LOG_BATCH, length: 64 * 1024, chunks: () => repeat(Buffer.alloc(1024, 0x20), 64), pauseMs: 1000 })) },
            // An upload that stops sending for longer than the timeout.
            "stalled upload": { expected: [408], answers: times(K, () => send(p.server.port, { method: "PUT", path: `/api/2.0/mlflow-artifacts/artifacts/${experimentId}/hostile/stalled.bin`, auth: admin(), length: 4 * 2 ** 20, chunks: () => repeat(mib, 2), pauseMs: (BODY_TIMEOUT_SECONDS + 3) * 1000 })) },
        };
        const results = await phase(`${Object.keys(kinds).length} kinds x ${K} hostile clients`, async () => {
            const out: Record<string, Answer[]> = {};
            for (const [kind, k] of Object.entries(kinds)) {
                out[kind] = await k.answers;
            }
            return out;
        });
        // Then the maximal bodies alone, K at once: each worker reads those its budget admits in full.
        results["maximal API body, signed in, alone"] = await phase(`${K} maximal bodies at once`, () =>
            times(K, () => send(p.server.port, { path: LOG_BATCH, auth: admin(), length: maximal.length, chunks: () => [maximal] })));
        kinds["maximal API body, signed in, alone"] = { expected: [404, 503], answers: Promise.resolve([]) };
        normalDone = true;
        await normalUser;
        sampler.stop();

        const budget = limitMiB * (1 - MEMORY_HEADROOM);
        console.log(`      server tree: ${idle.toFixed(0)} MiB PSS before, peak ${sampler.peakPssMiB.toFixed(0)} MiB with ${K} hostile clients of each of ` +
            `${Object.keys(kinds).length} kinds at once; limit ${limitMiB} MiB, ${budget.toFixed(0)} MiB without the headroom`);
        for (const [kind, answers] of Object.entries(results)) {
            const statuses = answers.map((a) => a.status);
            const counts = Object.entries(statuses.reduce<Record<string, number>>((c, s) => ({ ...c, [s]: (c[s] ?? 0) + 1 }), {})).map(([s, n]) => `${n} x ${s}`).join(", ");
            console.log(`      ${kind.padEnd(32)} ${counts} in ${Math.max(...answers.map((a) => a.seconds)).toFixed(1)} s at most`);
        }
        for (const [kind, answers] of Object.entries(results)) {
            for (const a of answers) {
                expect(kinds[kind]!.expected, `${kind}: ${a.status} ${a.body.slice(0, 300)}`).to.include(a.status);
                if (a.status !== 401) {
                    // Every answer the bounds or MLflow give is MLflow's error shape, with a code its client maps.
                    const parsed = JSON.parse(a.body);
                    expect(parsed.error_code, `${kind}: ${a.body}`).to.be.oneOf(["RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "TEMPORARILY_UNAVAILABLE", "RESOURCE_DOES_NOT_EXIST"]);
                    if (a.status === 413 || a.status === 408) {
                        expect(parsed.message, `${kind}: the refusal names the key to raise`).to.match(/stack config mlflow(MaxRequestBodySize|MaxUploadSize|RequestBodyTimeoutSeconds)/);
                    }
                }
            }
        }
        expect(results["maximal API body, signed in, alone"]!.some((a) => a.status === 404), "some maximal bodies were read in full").to.equal(true);
        expect(sampler.peakPssMiB, "peak PSS of the server's tree").to.be.at.most(budget);
        expect(normal.length).to.be.at.least(20);
        expect(normal.every((s) => s === 200), `normal user's statuses: ${normal.join(",")}`).to.equal(true);

        // Nothing hostile is written: no metric, param or tag beyond the normal user's, no artifact, nothing left in /tmp.
        const hostileRows = await p.sql(p.db.tracking, `SELECT (SELECT count(*) FROM metrics WHERE run_uuid = '${hostileRun}') + (SELECT count(*) FROM params) + (SELECT count(*) FROM metrics WHERE key LIKE 'm%k')`);
        expect(hostileRows).to.deep.equal([["0"]]);
        const s3 = { endpoint: p.moto.url, region: p.region, bucket: p.bucket, deployer: p.deployer };
        const objects = await p.python("artifact-objects", { ...s3, prefix: `${p.artifactPrefix}/${experimentId}/hostile/` }, { AWS_CA_BUNDLE: p.moto.caBundle });
        expect(objects.objects, "no hostile artifact").to.deep.equal([]);
        const tmp = p.server.container.sandbox.mounts.find((m) => m.target === "/tmp")!.source;
        const leftovers = await runToCompletion("find", [tmp, "-type", "f", "-size", "+1M"], { env: { PATH: process.env.PATH }, logFile: path.join(p.logs, "find.log") });
        expect(leftovers.stdout.trim(), "spooled uploads left in /tmp").to.equal("");
        // The server still serves.
        expect((await call(target, "GET", "/api/2.0/mlflow/experiments/search?max_results=1")).status).to.equal(200);
    });

    it("adds little latency to log_batch at 32 clients, against MLflow's plain basic-auth app", async function () {
        const target = () => ({ port: p.server.port, host: `127.0.0.1:${p.server.port}`, auth: admin() });
        const clients = 32;
        const measure = async (label: string): Promise<number> => {
            const { runIds } = await createRuns(target(), `bounds-latency-${label}-${Date.now()}`, clients);
            const bodies = runIds.map((id) => Array.from({ length: 5 }, (_, b) => logBatchBody(id, b, 50, 10)));
            const foreign = new ForeignCpu();
            const load = await phase(`${label}: ${clients} clients x 5 log_batch of 500 metrics`, () => runLoad(target(), LOG_BATCH, bodies));
            expect(load.errors, JSON.stringify(load.errorSamples)).to.equal(0);
            console.log(`      ${label}: p50 ${percentile(load.latenciesMs, 50).toFixed(0)} ms, p99 ${percentile(load.latenciesMs, 99).toFixed(0)} ms, ` +
                `${(load.requests / load.wallSeconds).toFixed(1)} req/s; other processes on the machine: ${foreign.coresBusy().toFixed(2)} cores`);
            return load.wallSeconds;
        };
        const container = p.r.one(TYPES.deployment, SERVER_DEPLOYMENT).inputs.spec.template.spec.containers[0];
        const rendered: string[] = [...container.args];
        const restart = async (args: string[]): Promise<void> => {
            await p.stopServers();
            container.args = args;
            await p.startServers();
        };
        const plain = rendered.map((a) => (a === "bounded-basic-auth" ? "basic-auth" : a));
        // Alternated, each round a pair; the median pair's ratio, so that a busy moment of the shared
        // machine (another engineer's tests) falling on one side of one pair does not decide it.
        const ratios: number[] = [];
        try {
            for (let round = 1; round <= 3; round++) {
                const bounded = await measure(`bounded, round ${round}`);
                await restart(plain);
                const unbounded = await measure(`plain basic-auth, round ${round}`);
                await restart(rendered);
                ratios.push(bounded / unbounded);
            }
        } finally {
            container.args = rendered;
        }
        const median = [...ratios].sort((a, b) => a - b)[1]!;
        console.log(`      wall time of the same load, bounded / plain, per round: ${ratios.map((r) => `x${r.toFixed(2)}`).join(", ")}; median x${median.toFixed(2)}`);
        expect(median, "the bounds cost at most 15% of log_batch's time").to.be.at.most(1.15);
    });

    it("answers in MLflow's JSON error shape, never Flask's HTML page, while PostgreSQL goes away under load, and serves again once it is back", async function () {
        const target = { port: p.server.port, host: `127.0.0.1:${p.server.port}`, auth: admin() };
        const { runIds } = await createRuns(target, "bounds-postgres-down", 8);
        const answers: Array<{ status: number; body: string }> = [];
        let stop = false;
        const clients = runIds.map(async (id, c) => {
            for (let b = 0; !stop; b++) {
                const r = await call(target, "POST", LOG_BATCH, undefined, { body: logBatchBody(id, b, 20, 5), timeoutMs: 60000 });
                answers.push({ status: r.status, body: r.body.toString() });
                if (r.status !== 200) {
                    await new Promise((res) => setTimeout(res, 50 * (c + 1)));
                }
            }
        });
        await new Promise((res) => setTimeout(res, 3000));
        await phase("PostgreSQL stopped under 8 clients logging", () => p.stopPostgres());
        await new Promise((res) => setTimeout(res, 5000));
        stop = true;
        await Promise.all(clients);
        const failed = answers.filter((a) => a.status !== 200);
        const code = (a: { body: string }): string => { try { return JSON.parse(a.body).error_code; } catch { return "not JSON"; } };
        const byStatus = failed.reduce<Record<string, number>>((c, a) => ({ ...c, [`${a.status} ${code(a)}`]: (c[`${a.status} ${code(a)}`] ?? 0) + 1 }), {});
        console.log(`      ${answers.length} log_batch calls, ${answers.length - failed.length} answered 200; the others by status and code ${JSON.stringify(byStatus)}`);
        for (const a of failed.filter((x) => x.status === 500).slice(0, 2)) {
            console.log(`      a 500: ${a.body.slice(0, 300)}`);
        }
        expect(failed.length, "some calls met PostgreSQL gone").to.be.greaterThan(0);
        for (const a of failed) {
            expect(a.body, `${a.status}: not Flask's HTML page`).to.not.match(/<html|<!doctype/i);
            expect(JSON.parse(a.body).error_code, `${a.status} ${a.body.slice(0, 200)}`).to.be.a("string");
        }
        await phase("PostgreSQL back, the server's pods restarted on its new address", async () => {
            await p.startPostgres();
            await p.stopServers();
            await p.startServers();
        });
        const after = await call({ ...target, port: p.server.port, host: `127.0.0.1:${p.server.port}` }, "POST", LOG_BATCH, undefined, { body: logBatchBody(runIds[0]!, 999, 5, 1) });
        expect(after.status, after.body.toString()).to.equal(200);
    });
});
