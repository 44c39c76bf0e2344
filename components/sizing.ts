/**
 * Sizing rules of the tracking server, from measurements of the real server (MLflow 3.17.2, job
 * execution off, the rendered command and environment; docs/benchmarks.md has the runs). Config
 * validation applies them, so a stack cannot ask for a container that the kernel would kill.
 */

/**
 * PSS of the server's process tree, in MiB: the `mlflow server` CLI parent, the uvicorn supervisor and
 * the multiprocessing resource tracker (`base`), plus one interpreter per worker, idle and at the peak
 * of 32 concurrent clients sending `log_batch` (`perWorkerIdle`, `perWorkerPeak`). Measured on fresh
 * servers, idle: 372 MiB with 1 worker, 578 with 2, 943 with 4; peak 439, 668, 1042. A worker that has
 * also served a data scientist's session (models logged and loaded) grows to 230-270 MiB: 714 MiB idle
 * and 760 MiB peak with 2 workers in the contract tests. `perWorkerPeak` covers that, rounded up.
 */
export const SERVER_MEMORY_MIB = Object.freeze({ base: 208, perWorkerIdle: 184, perWorkerPeak: 300 });

/** Share of the memory limit kept free above the measured peak: allocator fragmentation, large requests. */
export const MEMORY_HEADROOM = 0.25;

/** Expected PSS of a server pod with `workers` workers, idle and at peak load. */
export function serverMemoryMiB(workers: number): { idle: number; peak: number } {
    return {
        idle: SERVER_MEMORY_MIB.base + workers * SERVER_MEMORY_MIB.perWorkerIdle,
        peak: SERVER_MEMORY_MIB.base + workers * SERVER_MEMORY_MIB.perWorkerPeak,
    };
}

/** The smallest memory limit, in MiB, that holds the peak with {@link MEMORY_HEADROOM} to spare. */
export function minimumServerMemoryLimitMiB(workers: number): number {
    return Math.ceil(serverMemoryMiB(workers).peak / (1 - MEMORY_HEADROOM));
}

/**
 * SQLAlchemy engines of one server worker, each with its own pool of `pool size + max overflow`
 * connections: tracking, model registry, auth, and jobs (the last only when a job endpoint is
 * called). MLflow sizes them all from the same two variables.
 */
export const DB_ENGINES_PER_WORKER = 4;

/**
 * Connections the servers may open at most: every replica's workers, every engine's full pool.
 * PostgreSQL must allow them, and keep some for the migration Job, backups and an operator.
 */
export function serverConnectionBudget(o: { replicas: number; workers: number; poolSize: number; maxOverflow: number }): number {
    return o.replicas * o.workers * DB_ENGINES_PER_WORKER * (o.poolSize + o.maxOverflow);
}

/** Connections of PostgreSQL kept for the migration Job, backups and an operator's psql. */
export const RESERVED_CONNECTIONS = 10;

/**
 * How many requests one worker serves at once, at most: MLflow runs its Flask app through
 * anyio's default thread limiter (40 threads). A `log_batch` holds two connections of the tracking
 * pool at the same time, so a pool of `pool size + max overflow` connections cannot run dry while
 * fewer requests than that are in flight in the worker (each can get its second connection);
 * at or above it, requests can all hold one and wait for another until the pool times out.
 */
export const WORKER_THREADS = 40;
