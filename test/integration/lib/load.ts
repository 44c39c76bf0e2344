/**
 * The load generator, in the benchmark's own Node process so that it costs little CPU on a
 * two-core machine: request bodies are serialised before the clock starts, each client is an async
 * loop on its own keep-alive connection, and nothing but the status and the latency is kept.
 *
 * It speaks MLflow's REST API as the Python client does (`/api/2.0/mlflow/runs/log-batch`, the
 * proxied artifact routes), with basic auth when the server has it.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";

/** Where a server listens and how to talk to it. */
export interface Target {
    readonly port: number;
    /** The Host header to send (one the server's --allowed-hosts accepts). */
    readonly host: string;
    /** `user:password`, or undefined for a server without auth. */
    readonly auth?: string;
}

export interface Reply {
    readonly status: number;
    readonly body: Buffer;
    /** Milliseconds from sending to the end of the response. */
    readonly ms: number;
}

function headers(t: Target, extra: Record<string, string | number> = {}): Record<string, string | number> {
    const h: Record<string, string | number> = { Host: t.host, ...extra };
    if (t.auth !== undefined) {
        h.Authorization = `Basic ${Buffer.from(t.auth).toString("base64")}`;
    }
    return h;
}

/** One JSON (or empty) request. Network errors resolve with status 0. */
export function call(t: Target, method: string, path: string, json?: unknown, options: { agent?: http.Agent; body?: string; timeoutMs?: number; hostHeader?: string } = {}): Promise<Reply> {
    const body = options.body ?? (json === undefined ? undefined : JSON.stringify(json));
    const h = headers(t, body === undefined ? {} : { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
    if (options.hostHeader !== undefined) {
        h.Host = options.hostHeader;
    }
    const t0 = performance.now();
    return new Promise((resolve) => {
        const req = http.request({
            host: "127.0.0.1", port: t.port, path, method, headers: h, agent: options.agent ?? false,
            timeout: options.timeoutMs ?? 120000,
        }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), ms: performance.now() - t0 }));
            res.on("error", () => resolve({ status: 0, body: Buffer.alloc(0), ms: performance.now() - t0 }));
        });
        req.on("timeout", () => req.destroy(new Error("timeout")));
        req.on("error", (e) => resolve({ status: 0, body: Buffer.from(e.message), ms: performance.now() - t0 }));
        req.end(body);
    });
}

/** Parses a 200 JSON reply or throws with the server's answer. */
export async function callOk(t: Target, method: string, path: string, json?: unknown): Promise<any> {
    const r = await call(t, method, path, json);
    if (r.status !== 200) {
        throw new Error(`${method} ${path}: HTTP ${r.status} ${r.body.toString().slice(0, 500)}`);
    }
    return r.body.length > 0 ? JSON.parse(r.body.toString()) : {};
}

/** An experiment and one run per client. */
export async function createRuns(t: Target, experimentName: string, clients: number): Promise<{ experimentId: string; runIds: string[] }> {
    const exp = await callOk(t, "POST", "/api/2.0/mlflow/experiments/create", { name: experimentName });
    const experimentId: string = exp.experiment_id;
    const runIds: string[] = [];
    for (let i = 0; i < clients; i++) {
        const run = await callOk(t, "POST", "/api/2.0/mlflow/runs/create", {
            experiment_id: experimentId, start_time: Date.now(), run_name: `client-${i}`,
        });
        runIds.push(run.run.info.run_id);
    }
    return { experimentId, runIds };
}

/**
 * The body of one `log_batch`: `keys` metrics × `steps` steps (keys × steps points), as a training
 * loop flushing its buffered metrics would send them.
 */
export function logBatchBody(runId: string, batch: number, keys: number, steps: number): string {
    const metrics: Array<{ key: string; value: number; timestamp: number; step: number }> = [];
    const now = Date.now();
    for (let s = 0; s < steps; s++) {
        const step = batch * steps + s;
        for (let k = 0; k < keys; k++) {
            metrics.push({ key: `metric_${k}`, value: Math.sin(step / 10 + k), timestamp: now + step, step });
        }
    }
    return JSON.stringify({ run_id: runId, metrics, params: [], tags: [] });
}

export interface LoadResult {
    readonly requests: number;
    readonly errors: number;
    /** Status → count, for the errors. */
    readonly errorStatuses: Record<string, number>;
    /** First bytes of a few error bodies. */
    readonly errorSamples: string[];
    /**
     * Errors whose body names SQLAlchemy's pool timeout (`QueuePool limit of size N overflow M
     * reached`). MLflow turns it into an HTTP 400 and does not log it, so only the body tells.
     */
    readonly poolTimeouts: number;
    readonly wallSeconds: number;
    readonly latenciesMs: number[];
}

/**
 * `bodies[c]` are client c's request bodies, sent one after another on its own connection; all
 * clients start together.
 */
export async function runLoad(t: Target, path: string, bodies: string[][]): Promise<LoadResult> {
    const latencies: number[] = [];
    const errorStatuses: Record<string, number> = {};
    const errorSamples: string[] = [];
    let errors = 0;
    let poolTimeouts = 0;
    const t0 = performance.now();
    await Promise.all(bodies.map(async (list) => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        try {
            for (const body of list) {
                const r = await call(t, "POST", path, undefined, { agent, body, timeoutMs: 300000 });
                latencies.push(r.ms);
                if (r.status !== 200) {
                    errors += 1;
                    errorStatuses[String(r.status)] = (errorStatuses[String(r.status)] ?? 0) + 1;
                    if (/QueuePool limit of size \d+ overflow \d+ reached/.test(r.body.toString())) {
                        poolTimeouts += 1;
                    }
                    if (errorSamples.length < 5) {
                        errorSamples.push(`${r.status}: ${r.body.toString().slice(0, 300)}`);
                    }
                }
            }
        } finally {
            agent.destroy();
        }
    }));
    return {
        requests: latencies.length, errors, errorStatuses, errorSamples, poolTimeouts,
        wallSeconds: (performance.now() - t0) / 1000, latenciesMs: latencies,
    };
}

/** The p-th percentile (0-100) of a list, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
    if (values.length === 0) {
        return NaN;
    }
    const sorted = [...values].sort((a, b) => a - b);
    const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
    return sorted[rank - 1]!;
}

/** Streams a file to the server's proxied artifact route (what the client does below 500 MB). */
export function uploadArtifact(t: Target, artifactPath: string, file: string): Promise<{ status: number; seconds: number; body: string }> {
    const size = fs.statSync(file).size;
    const t0 = performance.now();
    return new Promise((resolve) => {
        const req = http.request({
            host: "127.0.0.1", port: t.port, method: "PUT", path: `/api/2.0/mlflow-artifacts/artifacts/${artifactPath}`,
            headers: headers(t, { "Content-Type": "application/octet-stream", "Content-Length": size }), agent: false,
            timeout: 1800000,
        }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, seconds: (performance.now() - t0) / 1000, body: Buffer.concat(chunks).toString().slice(0, 500) }));
        });
        req.on("timeout", () => req.destroy(new Error("timeout")));
        req.on("error", (e) => resolve({ status: 0, seconds: (performance.now() - t0) / 1000, body: e.message }));
        fs.createReadStream(file).pipe(req);
    });
}

/** Downloads a proxied artifact, hashing it on the fly (nothing is written to disk). */
export function downloadArtifact(t: Target, artifactPath: string): Promise<{ status: number; seconds: number; bytes: number; sha256: string }> {
    const t0 = performance.now();
    return new Promise((resolve) => {
        const hash = crypto.createHash("sha256");
        let bytes = 0;
        const req = http.request({
            host: "127.0.0.1", port: t.port, method: "GET", path: `/api/2.0/mlflow-artifacts/artifacts/${artifactPath}`,
            headers: headers(t), agent: false, timeout: 1800000,
        }, (res) => {
            res.on("data", (c: Buffer) => { bytes += c.length; hash.update(c); });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, seconds: (performance.now() - t0) / 1000, bytes, sha256: hash.digest("hex") }));
        });
        req.on("timeout", () => req.destroy(new Error("timeout")));
        req.on("error", () => resolve({ status: 0, seconds: (performance.now() - t0) / 1000, bytes, sha256: "" }));
        req.end();
    });
}
