/**
 * How the MLflow tracking server is invoked, as pure functions: the command line, the
 * database URIs, the allowed Host headers and the basic-auth configuration file. The unit
 * tests check them and the contract tests run exactly what they produce.
 */
import * as path from "path";

/** Port the server listens on inside the pod. */
export const CONTAINER_PORT = 5000;
/** Port of the Service, as in the original `kubectl port-forward service/mlflow-service 8080:80`. */
export const SERVICE_PORT = 80;
/** Name of the Service; kept from the original exercise so its commands keep working. */
export const SERVICE_NAME = "mlflow-service";
/** Where the basic-auth configuration file is mounted. */
export const AUTH_CONFIG_DIR = "/etc/mlflow/auth";
export const AUTH_CONFIG_FILE = "basic_auth.ini";
/** Users whose verified credentials each worker keeps (MLflow's default). */
export const AUTH_CACHE_MAX_SIZE = 10000;
/**
 * uvicorn's keep-alive, above the 60 s idle timeout of common load balancers and ingress
 * controllers, so a proxy never reuses a connection the server has just closed (HTTP 502).
 */
export const KEEP_ALIVE_SECONDS = 75;
/**
 * Port of the metrics exporter beside the server. Metrics get a port of their own because the
 * server's port checks the Host header (a scraper connects by pod IP, which must stay refused
 * there) and asks for a login on every path but `/health`.
 */
export const METRICS_PORT = 9090;
/** Path the exporter answers on (any path works; this is the one the annotations name). */
export const METRICS_PATH = "/metrics";
/**
 * The workers' shared Prometheus directory (`--expose-prometheus`, `PROMETHEUS_MULTIPROC_DIR`): an
 * emptyDir, since the root filesystem is read-only and every worker writes its own files there.
 */
export const METRICS_DIR = "/var/lib/mlflow/prometheus";

/** Where the server finds PostgreSQL. Credentials are not part of it: see {@link databaseUri}. */
export interface DatabaseEndpoint {
    readonly host: string;
    readonly port: number;
    readonly database: string;
}

/**
 * SQLAlchemy URI of a database, without user or password. libpq takes those from `PGUSER` and
 * `PGPASSWORD`, so a password never sits in a URI (where special characters would need
 * encoding) nor on a command line (where `ps` would show it). The driver is named explicitly:
 * the image carries both psycopg2 and psycopg 3, and `postgresql://` alone picks psycopg2 only
 * by SQLAlchemy's current default.
 */
export function databaseUri(db: DatabaseEndpoint): string {
    return `postgresql+psycopg2://${db.host}:${db.port}/${db.database}`;
}

/**
 * Host headers the server accepts (MLflow's DNS-rebinding protection, `--allowed-hosts`): every
 * in-cluster name of the Service with and without its port, localhost for
 * `kubectl port-forward`, and the Ingress host. The probes' `/health` is exempt from the check.
 */
export function allowedHosts(namespace: string, ingressHost?: string): string[] {
    const names = [
        SERVICE_NAME,
        `${SERVICE_NAME}.${namespace}`,
        `${SERVICE_NAME}.${namespace}.svc`,
        `${SERVICE_NAME}.${namespace}.svc.cluster.local`,
    ];
    const hosts = names.flatMap((n) => [n, `${n}:${SERVICE_PORT}`]);
    // Any local port: `kubectl port-forward service/mlflow-service 8080:80` sends Host: localhost:8080.
    hosts.push("localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*");
    if (ingressHost !== undefined) {
        hosts.push(ingressHost, `${ingressHost}:*`);
    }
    return hosts;
}

/**
 * Browser origins allowed to make state-changing API calls (`--cors-allowed-origins`): MLflow
 * refuses a POST, PUT, PATCH or DELETE whose `Origin` is not localhost or listed, so a UI served
 * through the Ingress needs its own origin here. Then any extra origins from config.
 */
export function corsAllowedOrigins(ingress: { host: string; tls: boolean } | undefined, extra: readonly string[]): string[] {
    const origins = ingress === undefined ? [] : [`${ingress.tls ? "https" : "http"}://${ingress.host}`];
    return [...new Set([...origins, ...extra])];
}

/**
 * The `mlflow.app` plugin the server runs (components/request-bounds): MLflow's basic-auth app
 * behind the request bounds. Its own name, not `basic-auth`: a pod without the plugin then fails to
 * start naming it, instead of serving unbounded.
 */
export const BOUNDED_APP_NAME = "bounded-basic-auth";
/** Where the request bounds plugin is mounted; on the server's PYTHONPATH. */
export const REQUEST_BOUNDS_DIR = "/opt/mlflow/request-bounds";
/** The plugin's distribution directory inside it: where `importlib.metadata` finds the entry point. */
export const REQUEST_BOUNDS_DIST_INFO = "mlflow_k8s_request_bounds-1.0.dist-info";
/**
 * The request bounds plugin (an `mlflow.app` entry point and its module; the model servers use its
 * module only), in a ConfigMap mounted on PYTHONPATH: its distribution metadata under the dist-info
 * directory `importlib.metadata` looks for, the module beside it.
 */
export const REQUEST_BOUNDS_SOURCE_DIR = path.join(__dirname, "request-bounds");
export const REQUEST_BOUNDS_ITEMS: ReadonlyArray<{ key: string; path: string }> = [
    { key: "request_bounds.py", path: "request_bounds.py" },
    { key: "METADATA", path: `${REQUEST_BOUNDS_DIST_INFO}/METADATA` },
    { key: "entry_points.txt", path: `${REQUEST_BOUNDS_DIST_INFO}/entry_points.txt` },
];

/**
 * The request bounds of each server worker (components/request-bounds/request_bounds.py), each from
 * the stack config key named beside it.
 */
export interface RequestLimits {
    /** Largest API body, in bytes (`mlflowMaxRequestBodySize`): 413 beyond, before it is read. */
    readonly maxBodyBytes: number;
    /** Largest proxied artifact upload, in bytes (`mlflowMaxUploadSize`): 413 beyond. */
    readonly maxUploadBytes: number;
    /** Bytes of large API bodies one worker reads at once (`mlflowRequestBodyBudget`): 503 beyond. */
    readonly bodyBudgetBytes: number;
    /** Requests one worker serves at once (`mlflowMaxConcurrentRequests`): 503 beyond. */
    readonly maxConcurrentRequests: number;
    /** Seconds an API body may take to arrive, and an upload may pause (`mlflowRequestBodyTimeoutSeconds`): 408 beyond. */
    readonly bodyTimeoutSeconds: number;
}

/**
 * Connections uvicorn keeps open per worker, idle keep-alive ones included, as a multiple of the
 * requests the bounds serve at once: beyond it uvicorn itself answers a plain-text 503, so a flood
 * of connections (slow headers, which uvicorn has no timeout for) costs at most this many sockets.
 */
export const CONNECTIONS_PER_CONCURRENT_REQUEST = 4;

/** The environment the request bounds plugin reads its limits from. */
export function requestBoundsEnv(l: RequestLimits): Array<{ name: string; value: string }> {
    return [
        { name: "REQUEST_BOUNDS_MAX_BODY_BYTES", value: String(l.maxBodyBytes) },
        { name: "REQUEST_BOUNDS_MAX_UPLOAD_BYTES", value: String(l.maxUploadBytes) },
        { name: "REQUEST_BOUNDS_BODY_BUDGET_BYTES", value: String(l.bodyBudgetBytes) },
        { name: "REQUEST_BOUNDS_MAX_CONCURRENT", value: String(l.maxConcurrentRequests) },
        { name: "REQUEST_BOUNDS_BODY_TIMEOUT_SECONDS", value: String(l.bodyTimeoutSeconds) },
    ];
}

/** Arguments of {@link serverArgs}. */
export interface ServerOptions {
    readonly backendStoreUri: string;
    readonly artifactsDestination: string;
    readonly workers: number;
    readonly allowedHosts: readonly string[];
    /** Origins besides localhost allowed to write; none leaves MLflow's default (localhost only). */
    readonly corsAllowedOrigins?: readonly string[];
    /**
     * Directory the workers count requests in (`--expose-prometheus`); must be writable and shared by
     * every worker of the pod.
     * @default undefined: no metrics
     */
    readonly prometheusDir?: string;
    /**
     * Path every route is served under (`--static-prefix`), so the server can share a host.
     * @default undefined: the root
     */
    readonly staticPrefix?: string;
    /** Requests per worker the bounds admit at once; uvicorn's connection cap follows from it. */
    readonly maxConcurrentRequests: number;
}

/**
 * `mlflow server` arguments. Artifacts are proxied (`--serve-artifacts` with
 * `--artifacts-destination`), so clients need no AWS credentials; basic auth is on, behind the
 * request bounds; the default uvicorn server is kept because the Host-header check exists only there.
 */
export function serverArgs(o: ServerOptions): string[] {
    return [
        "server",
        "--host", "0.0.0.0",
        "--port", String(CONTAINER_PORT),
        "--workers", String(o.workers),
        "--backend-store-uri", o.backendStoreUri,
        "--serve-artifacts",
        "--artifacts-destination", o.artifactsDestination,
        // MLflow's basic-auth app behind the request bounds (BOUNDED_APP_NAME).
        "--app-name", BOUNDED_APP_NAME,
        "--allowed-hosts", o.allowedHosts.join(","),
        ...((o.corsAllowedOrigins ?? []).length > 0 ? ["--cors-allowed-origins", o.corsAllowedOrigins!.join(",")] : []),
        ...(o.prometheusDir !== undefined ? ["--expose-prometheus", o.prometheusDir] : []),
        ...(o.staticPrefix !== undefined ? ["--static-prefix", o.staticPrefix] : []),
        "--uvicorn-opts", `--timeout-keep-alive ${KEEP_ALIVE_SECONDS} --limit-concurrency ${o.maxConcurrentRequests * CONNECTIONS_PER_CONCURRENT_REQUEST}`,
    ];
}

/**
 * The basic-auth configuration file. It holds no secret: the admin credentials reach the server
 * through `MLFLOW_AUTH_ADMIN_USERNAME`/`MLFLOW_AUTH_ADMIN_PASSWORD` (read by MLflow since 3.x in
 * preference to the file), and the database password through `PGPASSWORD`.
 */
export function authConfigIni(o: { databaseUri: string; defaultPermission: string; cacheTtlSeconds: number }): string {
    for (const [k, v] of Object.entries({ databaseUri: o.databaseUri, defaultPermission: o.defaultPermission })) {
        // configparser would treat '%' as interpolation and a newline as a new key.
        if (/[%\n\r]/.test(v)) {
            throw new Error(`auth config ${k} must not contain '%' or a line break: ${JSON.stringify(v)}`);
        }
    }
    return [
        "[mlflow]",
        `default_permission = ${o.defaultPermission}`,
        `database_uri = ${o.databaseUri}`,
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
        // Verified credentials are kept per worker for this long: a password hash (scrypt, about 70 ms
        // of CPU) is then checked once per user and worker instead of twice per request. A changed or
        // deleted password keeps working on the other workers for at most this long. 0 turns it off.
        `auth_cache_ttl_seconds = ${o.cacheTtlSeconds}`,
        `auth_cache_max_size = ${AUTH_CACHE_MAX_SIZE}`,
        "",
    ].join("\n");
}
