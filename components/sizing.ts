/**
 * Sizing rules of the tracking server, from measurements of the real server (MLflow 3.17.2, job
 * execution off, the rendered command and environment; docs/benchmarks.md has the runs). Config
 * validation applies them, so a stack cannot ask for a container that the kernel would kill.
 */

/**
 * PSS of the server's process tree, in MiB: the `mlflow server` CLI parent, the uvicorn supervisor and
 * the multiprocessing resource tracker (`base`), plus one interpreter per worker, idle and at the peak
 * of concurrent clients sending `log_batch` (`perWorkerIdle`, `perWorkerPeak`). Measured on fresh
 * servers, idle: 372 MiB with 1 worker, 578 with 2, 943 with 4; at 32 clients 439, 668, 1042. A worker
 * that has also served a data scientist's session (models logged and loaded) grows to 230-270 MiB: 714
 * MiB idle and 760 MiB peak with 2 workers in the contract tests. At 64 clients (`npm run bench`, 2
 * workers, most of a worker's 40 threads busy) the peak was 804 and 1,151 MiB in two repetitions:
 * (1151 - 208) / 2 = 472 per worker, rounded up to 480.
 */
export const SERVER_MEMORY_MIB = Object.freeze({ base: 208, perWorkerIdle: 184, perWorkerPeak: 480 });

/** Share of the memory limit kept free above the measured peak: allocator fragmentation, large requests. */
export const MEMORY_HEADROOM = 0.25;

/**
 * MiB of a worker's PSS per MiB of API body it reads: MLflow buffers the body, copies it into the
 * WSGI environ, parses the JSON into Python objects and then into protobuf messages. Measured with
 * the rendered minikube server, before the request bounds: one 58 MB (55.3 MiB) `log_batch` took the
 * tree from 640 to 1,474 MiB (834 MiB, x15.1), two at once from 716 to 2,301 MiB (x14.3 each).
 * Rounded up to 16.
 */
export const BODY_MEMORY_FACTOR = 16;

/**
 * Bodies up to this size do not count against a worker's body budget (the request bounds'
 * SMALL_BODY_BYTES): their cost is inside `perWorkerPeak`, measured with 64 clients.
 */
export const SMALL_BODY_BYTES = 64 * 1024;

/**
 * Expected PSS of a server pod with `workers` workers, idle and at peak load: the measured peak of
 * many clients plus, per worker, the large bodies its budget admits at once, at {@link BODY_MEMORY_FACTOR}.
 */
export function serverMemoryMiB(workers: number, bodyBudgetBytes = 0): { idle: number; peak: number } {
    const bodies = (bodyBudgetBytes / 2 ** 20) * BODY_MEMORY_FACTOR;
    return {
        idle: SERVER_MEMORY_MIB.base + workers * SERVER_MEMORY_MIB.perWorkerIdle,
        peak: Math.ceil(SERVER_MEMORY_MIB.base + workers * (SERVER_MEMORY_MIB.perWorkerPeak + bodies)),
    };
}

/** The smallest memory limit, in MiB, that holds the peak with {@link MEMORY_HEADROOM} to spare. */
export function minimumServerMemoryLimitMiB(workers: number, bodyBudgetBytes = 0): number {
    return Math.ceil(serverMemoryMiB(workers, bodyBudgetBytes).peak / (1 - MEMORY_HEADROOM));
}

/**
 * SQLAlchemy engines of one server worker, each with its own pool of `pool size + max overflow`
 * connections: tracking, model registry, auth, and jobs (the last only when a job endpoint is
 * called). MLflow sizes them all from the same two variables.
 */
export const DB_ENGINES_PER_WORKER = 4;

/**
 * How many requests one worker serves at once, at most: MLflow runs its Flask app through anyio's
 * default thread limiter, 40 threads. uvicorn does not spread keep-alive connections evenly (one
 * worker held 31 of 32 clients in the benchmark), so any worker may have to serve all of them.
 */
export const WORKER_THREADS = 40;

/**
 * The pool size that can never run dry. A `log_batch` holds two connections of the tracking pool at
 * once; with at most {@link WORKER_THREADS} requests in flight, a pool of one more connection always
 * leaves a second connection for one of them, so every request finishes. Below it, requests can all
 * hold one connection and wait for another until the pool times out (HTTP 400, nothing logged).
 */
export const SAFE_POOL_CAPACITY = WORKER_THREADS + 1;

/**
 * Connections one worker can hold: its engines' full pools, but never more than two per request in
 * flight plus the connections the pools keep open between requests (overflow ones are closed).
 */
export function connectionsPerWorker(poolSize: number, maxOverflow: number, concurrency: number = WORKER_THREADS): number {
    const inFlight = Math.min(concurrency, WORKER_THREADS);
    return Math.min(DB_ENGINES_PER_WORKER * (poolSize + maxOverflow), 2 * inFlight + DB_ENGINES_PER_WORKER * poolSize);
}

/** The pool size a derived sizing keeps open per engine when the budget allows (MLflow's default). */
export const DEFAULT_POOL_SIZE = 5;

/** Pools of one worker and how many requests it may serve at once so that they never run dry. */
export interface DerivedPools {
    readonly poolSize: number;
    readonly maxOverflow: number;
    /** Requests one worker serves at once (the request bounds refuse more with a retried 503). */
    readonly concurrency: number;
    /** Connections one worker may hold: {@link connectionsPerWorker} of the above. */
    readonly connectionsPerWorker: number;
}

/**
 * Pools derived from the connection budget when the pool keys are not set: `perWorker` connections
 * (PostgreSQL's allowance divided over every replica's workers) hold at most two per request in
 * flight plus the pools kept open, so a worker serves `concurrency` requests at once with pool
 * size + overflow of one more (never dry, see {@link SAFE_POOL_CAPACITY}). The full 40 requests
 * with pools of 5 when the budget allows; otherwise pools of 1, which leave the most connections to
 * requests in flight. Undefined when not even one request per worker fits.
 */
export function derivePools(perWorker: number, maxConcurrent: number): DerivedPools | undefined {
    const wanted = Math.min(maxConcurrent, WORKER_THREADS);
    const poolSize = Math.max(1, Math.min(DEFAULT_POOL_SIZE, Math.floor((perWorker - 2 * wanted) / DB_ENGINES_PER_WORKER)));
    const concurrency = Math.min(wanted, Math.floor((perWorker - DB_ENGINES_PER_WORKER * poolSize) / 2));
    if (concurrency < 1) {
        return undefined;
    }
    const maxOverflow = Math.max(0, concurrency + 1 - poolSize);
    return { poolSize, maxOverflow, concurrency, connectionsPerWorker: connectionsPerWorker(poolSize, maxOverflow, concurrency) };
}

/**
 * Connections the servers may open at most: every replica's workers. PostgreSQL must allow them, and
 * keep some for the migration Job, backups and an operator.
 */
export function serverConnectionBudget(o: { replicas: number; workers: number; poolSize: number; maxOverflow: number; concurrency?: number }): number {
    return o.replicas * o.workers * connectionsPerWorker(o.poolSize, o.maxOverflow, o.concurrency);
}

/** Connections of PostgreSQL kept for the migration Job, backups and an operator's psql. */
export const RESERVED_CONNECTIONS = 10;

/**
 * PSS of PostgreSQL's process tree, in MiB: the postmaster and its background processes, and each
 * backend. Measured in the contract tests: 51 MiB idle; 161 MiB with 68 backends under 32 clients,
 * 1.6 MiB a backend, rounded up to 2.5 (work_mem for sorts comes on top of an idle backend).
 */
export const POSTGRES_MEMORY_MIB = Object.freeze({ base: 64, perConnection: 2.5 });

/** The smallest PostgreSQL memory limit, in MiB, that holds every allowed connection with headroom. */
export function minimumPostgresMemoryLimitMiB(maxConnections: number): number {
    return Math.ceil((POSTGRES_MEMORY_MIB.base + maxConnections * POSTGRES_MEMORY_MIB.perConnection) / (1 - MEMORY_HEADROOM));
}

/**
 * Size of the server's /tmp (an emptyDir), where MLflow spools each proxied upload before it goes
 * to S3: no single upload may be larger (`mlflowMaxUploadSize`).
 */
export const SERVER_TMP_BYTES = 4 * 2 ** 30;
