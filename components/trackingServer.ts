import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { DefaultPermission, Resources } from "./config";
import { EphemeralStorage, checksum, containerSecurityContext, emptyDir, labels, podSecurityContext, resourceRequirements, secretEnv, selectorLabels } from "./kube";
import {
    AUTH_CONFIG_DIR, AUTH_CONFIG_FILE, CONTAINER_PORT, METRICS_DIR, METRICS_PATH, METRICS_PORT, REQUEST_BOUNDS_DIR, REQUEST_BOUNDS_ITEMS, REQUEST_BOUNDS_SOURCE_DIR,
    RequestLimits, SERVICE_NAME, SERVICE_PORT, allowedHosts, authConfigIni, corsAllowedOrigins, databaseUri, requestBoundsEnv, serverArgs,
} from "./mlflowSettings";
import { SERVER_TMP_BYTES } from "./sizing";
import { SERVING_SECRET_KEYS, ServingUser } from "./modelServer";
import { DatabaseConnection, databaseCaMounts, databaseCaVolumes, libpqEnv, readFiles } from "./postgres";
import { S3Access, s3CredentialsSecret, s3Env, workloadServiceAccount } from "./s3Credentials";
import { SchemaRollout } from "./schemaRollout";
import { GATEWAY_API_VERSION, HttpRouteSettings, IngressSettings, SERVICE_MONITOR_API_VERSION, httpRouteSpec, publicEndpoint, serviceMonitorSpec } from "./publishing";
import { MLFLOW_IMAGE, MLFLOW_UID, MLFLOW_VERSION } from "./versions";

/**
 * How long Pulumi waits for the Deployment to roll out. The `-full` image is large; its first pull
 * on a fresh node can outlast the provider's 10-minute default.
 */
export const ROLLOUT_TIMEOUT_SECONDS = 20 * 60;
/**
 * How long the migration Job may run, image pull included: the pull (up to the rollout timeout), a
 * backup of both databases, then the migrations of a large store.
 */
export const MIGRATION_DEADLINE_SECONDS = 3 * 3600;
/** Pulumi waits for the Job a little longer than the Job itself may run, so Kubernetes ends it first. */
const MIGRATION_TIMEOUT = `${MIGRATION_DEADLINE_SECONDS + 5 * 60}s`;
/**
 * Ephemeral storage: the server spools proxied uploads to /tmp (an emptyDir of {@link TMP_SIZE})
 * before they go to S3; logs go to the node. The Job's containers write next to nothing.
 */
/**
 * Seconds a stopping server keeps accepting requests (its preStop hook) before SIGTERM, so that
 * requests routed to it while the endpoint removal propagates still succeed.
 */
export const PRE_STOP_SECONDS = 5;
/** Seconds after SIGTERM for requests in flight (an artifact upload) to finish before SIGKILL. */
const DRAIN_SECONDS = 25;
/** The server's /tmp: {@link SERVER_TMP_BYTES}, as a quantity. */
const TMP_SIZE = `${SERVER_TMP_BYTES / 2 ** 30}Gi`;
const SERVER_STORAGE: EphemeralStorage = { request: "512Mi", limit: "5Gi" };
const JOB_STORAGE: EphemeralStorage = { request: "64Mi", limit: "1Gi" };
/**
 * The multiprocess directory: each process keeps a 64 KiB file per metric type (counter, histogram,
 * gauge), grown as label sets are added; 16 workers, restarts of the container included, stay far
 * below this.
 */
const METRICS_DIR_SIZE = "64Mi";
/** The exporter beside the server: one Python process reading that directory on each scrape. */
export const METRICS_EXPORTER_RESOURCES: Resources = Object.freeze({
    cpuRequest: "10m", cpuLimit: "250m", memoryRequest: "48Mi", memoryLimit: "128Mi",
});
const METRICS_EXPORTER_STORAGE: EphemeralStorage = { request: "16Mi", limit: "64Mi" };

/** Keys of the Secret holding the server's own secrets. */
export const SERVER_SECRET_KEYS = Object.freeze({
    adminPassword: "admin-password",
    flaskSecretKey: "flask-secret-key",
    kekPassphrase: "kek-passphrase",
});
/** Directory of the scripts the server's pods run, and where they are mounted. */
export const SERVER_SCRIPTS_DIR = path.join(__dirname, "server-scripts");
const SCRIPTS_MOUNT = "/opt/mlflow/server";
/**
 * The metrics exporter's script, in a ConfigMap of its own: a change to it rolls the server's pods
 * only, never the migration Job or the CronJobs that mount the server's scripts.
 */
export const METRICS_EXPORTER_DIR = path.join(__dirname, "metrics-exporter");
const EXPORTER_MOUNT = "/opt/mlflow/metrics";
export { REQUEST_BOUNDS_SOURCE_DIR } from "./mlflowSettings";
/** ServiceAccount of the server's pods: the server identity's role admits it. */
export const SERVER_SERVICE_ACCOUNT = "mlflow-tracking-server";

/** Arguments of {@link MlflowTrackingServer}. */
export interface MlflowTrackingServerArgs {
    /** Namespace of every object; also part of the allowed Host names. */
    readonly namespace: pulumi.Input<string>;
    /** `s3://bucket/prefix` the server proxies artifacts to. */
    readonly artifactsDestination: pulumi.Input<string>;
    /** The IAM user's credentials and the bucket's region; they go into a Secret as they are. */
    readonly s3: S3Access;
    /** Where PostgreSQL is and which Secret holds its credentials. */
    readonly database: DatabaseConnection;
    /**
     * The database password, hashed into the pods' checksum so they roll when it changes;
     * undefined when another tool keeps the Secret (the pods then roll with `kubectl rollout restart`).
     */
    readonly databasePassword?: pulumi.Input<string>;
    /**
     * A backup taken by the migration Job before it changes the schema, so an upgrade can be
     * rolled back: init containers run first, with the volumes they mount.
     * @default undefined: no backup before migrations
     */
    readonly preMigrationBackup?: {
        readonly initContainers: k8s.types.input.core.v1.Container[];
        readonly volumes: k8s.types.input.core.v1.Volume[];
        /** The backup identity's ServiceAccount, which the Job's pod then runs as. */
        readonly serviceAccountName: pulumi.Input<string>;
    };
    /** Pods when not autoscaling; the minimum when autoscaling. */
    readonly replicas: number;
    /**
     * Upper bound of the HorizontalPodAutoscaler.
     * @default 0: no autoscaler
     */
    readonly maxReplicas?: number;
    /** Server worker processes per pod. */
    readonly workers: number;
    /** SQLAlchemy pool per worker. */
    readonly dbPool: { readonly size: number; readonly maxOverflow: number };
    /** What each worker admits: body sizes, large bodies at once, requests at once, body timeout. */
    readonly requestLimits: RequestLimits;
    /** CPU and memory of the server container (the migration Job reuses them). */
    readonly resources: Resources;
    /** Name of the admin user; its password is generated and never MLflow's public default. */
    readonly adminUsername: string;
    /** Permission of users on resources they were not granted. */
    readonly defaultPermission: DefaultPermission;
    /** Seconds each worker keeps verified credentials; 0 checks the password hash on every request. */
    readonly authCacheTtlSeconds: number;
    /**
     * Ingress for the UI and API, with the controller's annotations.
     * @default undefined: reach the server with `kubectl port-forward` or from inside the cluster
     */
    readonly ingress?: IngressSettings;
    /**
     * Instead of an Ingress, an HTTPRoute attached to a Gateway the cluster runs.
     * @default undefined: no HTTPRoute
     */
    readonly httpRoute?: HttpRouteSettings;
    /**
     * A ServiceMonitor (Prometheus Operator) for the pods' metrics exporter, through a headless
     * metrics Service; `labels` are what the Prometheus's `serviceMonitorSelector` matches.
     * @default undefined: no ServiceMonitor (clusters without its CRD need none), the pods' annotations only
     */
    readonly serviceMonitor?: { readonly labels: Readonly<Record<string, string>> };
    /**
     * Path under which the server serves the UI, the API and `/health` (`--static-prefix`); the
     * probes, the in-cluster URI, the Ingress's and the HTTPRoute's path follow it.
     * @default undefined: the root
     */
    readonly staticPrefix?: string;
    /**
     * Browser origins, besides the Ingress's own and localhost, allowed to make state-changing calls.
     * @default []
     */
    readonly corsAllowedOrigins?: readonly string[];
    /**
     * The model servers' MLflow users: created by the migration Job, their grants kept by a CronJob.
     * @default []: no model servers, no CronJob
     */
    readonly servingUsers?: readonly ServingUser[];
    /**
     * Garbage collection: a CronJob running `mlflow gc` on this schedule (UTC) against the server's
     * database and artifact store, as the server's S3 identity, for what was deleted more than
     * `olderThan` ago (MLflow's `--older-than`).
     * @default undefined: no CronJob
     */
    readonly gc?: { readonly schedule: string; readonly olderThan: string };
    /**
     * Other CronJobs that write to the databases (the scheduled backup), suspended with the server's
     * own while a migration runs.
     * @default []
     */
    readonly writerCronJobs?: readonly pulumi.Input<string>[];
    /**
     * Whether MLflow sends its usage telemetry (MLflow 3.x reports to its maintainers by default).
     * @default false: off, as on the model servers
     */
    readonly telemetry?: boolean;
}

/** The headless Service a ServiceMonitor scrapes the server's pods through. */
export const METRICS_SERVICE_NAME = "mlflow-metrics";

/** How long one garbage collection may run, image pull included. */
export const GC_DEADLINE_SECONDS = 3 * 3600;

/** Minutes between two runs of the CronJob that follows the served models' aliases into their experiments. */
export const SERVING_GRANTS_INTERVAL_MINUTES = 5;

/**
 * The MLflow tracking server: its Secrets, the schema migration Job (run to completion before
 * the Deployment rolls out), the Deployment with basic auth, proxied S3 artifacts and a
 * read-only root filesystem, the `mlflow-service` Service, and, as configured, a
 * PodDisruptionBudget, a HorizontalPodAutoscaler and an Ingress.
 */
export class MlflowTrackingServer extends pulumi.ComponentResource {
    /** Name of the Service (`mlflow-service`). */
    public readonly serviceName: pulumi.Output<string>;
    /** Port of the Service. */
    public readonly servicePort: number = SERVICE_PORT;
    /** In-cluster tracking URI. */
    public readonly internalUri: pulumi.Output<string>;
    /** The admin user's name. */
    public readonly adminUsername: string;
    /** The admin user's generated password (a Pulumi secret). */
    public readonly adminPassword: pulumi.Output<string>;
    /** Name of the Deployment. */
    public readonly deploymentName: pulumi.Output<string>;
    /** Labels that select the server's pods (for NetworkPolicies). */
    public readonly podSelector: Readonly<Record<string, string>>;
    /** Labels that select the migration Job's pods (for NetworkPolicies). */
    public readonly migrationPodSelector: Readonly<Record<string, string>>;
    /** Labels that select the serving grants CronJob's pods (for NetworkPolicies). */
    public readonly servingGrantsPodSelector: Readonly<Record<string, string>>;
    /** Labels that select the garbage collection CronJob's pods (for NetworkPolicies). */
    public readonly gcPodSelector: Readonly<Record<string, string>>;
    /** Labels that select the schema rollout's pods (for NetworkPolicies). */
    public readonly rolloutPodSelector: Readonly<Record<string, string>>;
    /** Port the server listens on inside its pods. */
    public readonly containerPort: number = CONTAINER_PORT;
    /** Port of the pods' metrics exporter, scraped by pod IP (for NetworkPolicies). */
    public readonly metricsPort: number = METRICS_PORT;

    constructor(name: string, args: MlflowTrackingServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:kubernetes:MlflowTrackingServer", name, {}, opts);
        const child = { parent: this };
        const component = "tracking-server";
        const meta = { namespace: args.namespace, labels: labels(name, component, MLFLOW_VERSION) };
        const selector = selectorLabels(name, component);
        this.podSelector = selector;
        this.migrationPodSelector = selectorLabels(name, "db-migration");
        this.servingGrantsPodSelector = selectorLabels(name, "serving-grants");
        this.gcPodSelector = selectorLabels(name, "artifact-gc");

        // --- Secrets -------------------------------------------------------------------------
        const s3Secret = s3CredentialsSecret(`${name}-s3-credentials`, meta, args.s3, child);
        const serviceAccount = workloadServiceAccount(`${name}-service-account`, SERVER_SERVICE_ACCOUNT, meta, args.s3, child);

        const adminPassword = new random.RandomPassword(`${name}-admin-password`, {
            length: 24, special: true, overrideSpecial: "-_.~!@#%^*+=", minLower: 2, minUpper: 2, minNumeric: 2, minSpecial: 1,
        }, child);
        // Flask signs sessions and CSRF tokens with it; every replica must share the same one.
        const flaskSecretKey = new random.RandomPassword(`${name}-flask-secret-key`, { length: 64, special: false }, child);
        // Wraps the keys that encrypt AI gateway secrets in the database. Unset, MLflow falls back to
        // a passphrase published in its source. Shared by every replica; see README for rotation.
        const kekPassphrase = new random.RandomPassword(`${name}-kek-passphrase`, { length: 64, special: false }, child);
        this.adminPassword = pulumi.secret(adminPassword.result);
        this.adminUsername = args.adminUsername;

        const serverSecret = new k8s.core.v1.Secret(`${name}-server`, {
            metadata: meta,
            type: "Opaque",
            stringData: {
                [SERVER_SECRET_KEYS.adminPassword]: this.adminPassword,
                [SERVER_SECRET_KEYS.flaskSecretKey]: pulumi.secret(flaskSecretKey.result),
                [SERVER_SECRET_KEYS.kekPassphrase]: pulumi.secret(kekPassphrase.result),
            },
        }, child);

        // --- Configuration -------------------------------------------------------------------
        const db = pulumi.output(args.database.host).apply((host) => ({
            tracking: databaseUri({ host, port: args.database.port, database: args.database.trackingDatabase }),
            auth: databaseUri({ host, port: args.database.port, database: args.database.authDatabase }),
        }));
        const authIni = db.apply((uris) => authConfigIni({
            databaseUri: uris.auth, defaultPermission: args.defaultPermission, cacheTtlSeconds: args.authCacheTtlSeconds,
        }));
        const authConfig = new k8s.core.v1.ConfigMap(`${name}-auth-config`, {
            metadata: meta,
            data: { [AUTH_CONFIG_FILE]: authIni },
        }, child);
        const scripts = new k8s.core.v1.ConfigMap(`${name}-scripts`, {
            metadata: meta,
            data: readFiles(SERVER_SCRIPTS_DIR),
        }, child);
        const exporterScript = new k8s.core.v1.ConfigMap(`${name}-metrics-exporter`, {
            metadata: meta,
            data: readFiles(METRICS_EXPORTER_DIR),
        }, child);

        const requestBounds = new k8s.core.v1.ConfigMap(`${name}-request-bounds`, {
            metadata: meta,
            data: readFiles(REQUEST_BOUNDS_SOURCE_DIR),
        }, child);

        const databaseEnv: k8s.types.input.core.v1.EnvVar[] = [
            // The URIs name host and port; libpq reads the login from these variables.
            ...libpqEnv(args.database, { host: false }),
            { name: "HOME", value: "/tmp" },
            { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
            // MLflow 3.x reports usage to its maintainers unless told not to: every process of the
            // server's image (server, migration, gc, grants) stays quiet unless mlflowTelemetry is on.
            ...(args.telemetry ? [] : [{ name: "MLFLOW_DISABLE_TELEMETRY", value: "true" }]),
        ];
        const serverEnv: k8s.types.input.core.v1.EnvVar[] = [
            ...databaseEnv,
            ...s3Env(s3Secret, args.s3, "MLFLOW_S3_ENDPOINT_URL"),
            { name: "MLFLOW_AUTH_CONFIG_PATH", value: `${AUTH_CONFIG_DIR}/${AUTH_CONFIG_FILE}` },
            { name: "MLFLOW_AUTH_ADMIN_USERNAME", value: args.adminUsername },
            secretEnv("MLFLOW_AUTH_ADMIN_PASSWORD", serverSecret.metadata.name, SERVER_SECRET_KEYS.adminPassword),
            secretEnv("MLFLOW_FLASK_SERVER_SECRET_KEY", serverSecret.metadata.name, SERVER_SECRET_KEYS.flaskSecretKey),
            secretEnv("MLFLOW_CRYPTO_KEK_PASSPHRASE", serverSecret.metadata.name, SERVER_SECRET_KEYS.kekPassphrase),
            // MLflow's job runner (GenAI judges, evaluations, prompt optimisation, online scoring, trace
            // archival) adds eight Python processes and about 1.4 GiB to every pod, and its periodic
            // tasks cannot be limited to one replica: off (docs/adr/0006).
            { name: "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", value: "false" },
            { name: "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", value: String(args.dbPool.size) },
            { name: "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", value: String(args.dbPool.maxOverflow) },
        ];

        const podSpecBase = {
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            securityContext: podSecurityContext(MLFLOW_UID),
        };
        const container = {
            image: MLFLOW_IMAGE,
            imagePullPolicy: "IfNotPresent",
            resources: resourceRequirements(args.resources, JOB_STORAGE),
            securityContext: containerSecurityContext(),
            workingDir: "/tmp",
        };
        const tmpVolume = emptyDir("tmp", TMP_SIZE);
        const tmpMount = { name: "tmp", mountPath: "/tmp" };
        const scriptsVolume = { name: "scripts", configMap: { name: scripts.metadata.name, defaultMode: 0o555 } };

        // The model servers' users: which, for which model, and their passwords by reference.
        const servingUsers = args.servingUsers ?? [];
        const servingEnv: k8s.types.input.core.v1.EnvVar[] = servingUsers.length === 0 ? [] : [
            {
                name: "SERVED_MODELS",
                value: JSON.stringify(servingUsers.map((u, i) => ({
                    user: u.user, model: u.registeredModel, ...u.reference, passwordEnv: `SERVING_PASSWORD_${i}`,
                }))),
            },
            ...servingUsers.map((u, i) => secretEnv(`SERVING_PASSWORD_${i}`, u.secretName, SERVING_SECRET_KEYS.password)),
        ];

        // --- Schema rollout --------------------------------------------------------------------
        // Before the migration: when this image changes a schema, every writer stops first
        // (schemaRollout.ts); after the new server runs, they start again.
        const deploymentName = `${name}-tracking-server`;
        const gcName = `${name}-gc`;
        const grantsName = `${name}-serving-grants`;
        const rollout = new SchemaRollout(`${name}-rollout`, {
            namespace: args.namespace,
            instance: name,
            deploymentName,
            cronJobNames: [...(args.gc ? [gcName] : []), ...(servingUsers.length > 0 ? [grantsName] : []), ...(args.writerCronJobs ?? [])],
            databaseUris: db,
            pod: {
                podSpec: podSpecBase,
                container: { ...container, resources: undefined },
                env: databaseEnv,
                volumes: [tmpVolume, scriptsVolume, ...databaseCaVolumes(args.database)],
                volumeMounts: [tmpMount, { name: "scripts", mountPath: SCRIPTS_MOUNT, readOnly: true }, ...databaseCaMounts(args.database)],
                script: `${SCRIPTS_MOUNT}/rollout.py`,
            },
        }, child);
        this.rolloutPodSelector = rollout.podSelector;

        // --- Schema migration ----------------------------------------------------------------
        // The server refuses a database at an older schema, and concurrent first starts of many
        // workers race on it: migrate once, to completion, before any server pod starts. A new
        // image, database, admin name or password (the Secret is replaced, so its name changes)
        // gives the Job a new spec, so Pulumi replaces it and it runs again.
        const migration = new k8s.batch.v1.Job(`${name}-migrate`, {
            metadata: {
                ...meta,
                labels: labels(name, "db-migration", MLFLOW_VERSION),
                // A Job that failed (database down, say) is replaced by the next update instead of
                // being waited on forever.
                annotations: { "pulumi.com/replaceUnready": "true" },
            },
            spec: {
                backoffLimit: 6,
                activeDeadlineSeconds: MIGRATION_DEADLINE_SECONDS,
                template: {
                    metadata: { labels: labels(name, "db-migration", MLFLOW_VERSION) },
                    spec: {
                        ...podSpecBase,
                        // The backup runs first, as the backup identity; the migration needs none.
                        serviceAccountName: args.preMigrationBackup?.serviceAccountName,
                        restartPolicy: "OnFailure",
                        initContainers: args.preMigrationBackup?.initContainers ?? [],
                        // Both schemas, then the admin user as the stack says, in one interpreter.
                        containers: [{
                            ...container,
                            name: "migrate",
                            command: ["python"],
                            args: db.apply((u) => [`${SCRIPTS_MOUNT}/migrate.py`, u.tracking, u.auth]),
                            env: [
                                ...databaseEnv,
                                { name: "MLFLOW_AUTH_ADMIN_USERNAME", value: args.adminUsername },
                                secretEnv("MLFLOW_AUTH_ADMIN_PASSWORD", serverSecret.metadata.name, SERVER_SECRET_KEYS.adminPassword),
                                ...servingEnv,
                            ],
                            volumeMounts: [tmpMount, { name: "scripts", mountPath: SCRIPTS_MOUNT, readOnly: true }, ...databaseCaMounts(args.database)],
                        }],
                        volumes: uniqueVolumes([tmpVolume, scriptsVolume, ...databaseCaVolumes(args.database), ...(args.preMigrationBackup?.volumes ?? [])]),
                    },
                },
            },
        }, { ...child, dependsOn: [rollout.quiesce], customTimeouts: { create: MIGRATION_TIMEOUT, update: MIGRATION_TIMEOUT } });

        /** The CronJobs of this component that write: resumed once they run the new image. */
        const writers: pulumi.Resource[] = [];

        // --- Serving grants --------------------------------------------------------------------
        // An alias may move to a version logged in another experiment, whose files the model's user
        // may not read yet: this follows it (serving.py), between two updates of the stack.
        if (servingUsers.length > 0) {
            const grantsLabels = labels(name, "serving-grants", MLFLOW_VERSION);
            writers.push(new k8s.batch.v1.CronJob(`${name}-serving-grants`, {
                metadata: { ...meta, labels: grantsLabels, name: grantsName },
                spec: {
                    schedule: `*/${SERVING_GRANTS_INTERVAL_MINUTES} * * * *`,
                    timeZone: "Etc/UTC",
                    concurrencyPolicy: "Forbid",
                    startingDeadlineSeconds: 120,
                    successfulJobsHistoryLimit: 1,
                    failedJobsHistoryLimit: 3,
                    jobTemplate: {
                        metadata: { labels: grantsLabels },
                        spec: {
                            backoffLimit: 1,
                            activeDeadlineSeconds: 600,
                            template: {
                                metadata: { labels: grantsLabels },
                                spec: {
                                    ...podSpecBase,
                                    restartPolicy: "Never",
                                    containers: [{
                                        ...container,
                                        name: "serving-grants",
                                        command: ["python"],
                                        args: db.apply((u) => [`${SCRIPTS_MOUNT}/serving.py`, u.tracking, u.auth]),
                                        env: [...databaseEnv, ...servingEnv],
                                        volumeMounts: [tmpMount, { name: "scripts", mountPath: SCRIPTS_MOUNT, readOnly: true }, ...databaseCaMounts(args.database)],
                                    }],
                                    volumes: [tmpVolume, scriptsVolume, ...databaseCaVolumes(args.database)],
                                },
                            },
                        },
                    },
                },
            }, { ...child, dependsOn: [migration] }));
        }

        // --- Server --------------------------------------------------------------------------
        // The host browsers use, through the Ingress or the HTTPRoute: the Host check and CORS admit it.
        const endpoint = publicEndpoint(args.ingress, args.httpRoute);
        const args_ = pulumi.all([db, args.artifactsDestination, args.namespace]).apply(([uris, destination, ns]) => serverArgs({
            backendStoreUri: uris.tracking,
            artifactsDestination: destination,
            workers: args.workers,
            allowedHosts: allowedHosts(ns, endpoint?.host),
            prometheusDir: METRICS_DIR,
            corsAllowedOrigins: corsAllowedOrigins(endpoint, args.corsAllowedOrigins ?? []),
            staticPrefix: args.staticPrefix,
            maxConcurrentRequests: args.requestLimits.maxConcurrentRequests,
        }));
        // Pods roll when anything they read changes, Secrets included (hashed, never exposed). The
        // values are the ones the program puts into the Secrets, not the Secrets' outputs: the
        // provider's outputs are the live objects, which have `data` and never `stringData`, so a
        // preview would see the hash as unknown and propose a rollout on every run.
        const configChecksum = pulumi.all([
            args.s3.accessKey?.id, args.s3.accessKey?.secret, args.s3.region, args.s3.role?.arn, this.adminPassword, flaskSecretKey.result,
            kekPassphrase.result, authIni, args_, readFiles(REQUEST_BOUNDS_SOURCE_DIR), JSON.stringify(args.requestLimits),
            args.database.secretName, args.databasePassword, s3Secret?.metadata.name, serverSecret.metadata.name,
        ]).apply((values) => checksum(...values));

        const httpGetHealth = { path: `${args.staticPrefix ?? ""}/health`, port: "http" };
        // prometheus_client reads the upper-case name; MLflow sets only the deprecated lower-case one.
        const metricsEnv = { name: "PROMETHEUS_MULTIPROC_DIR", value: METRICS_DIR };
        const deployment = new k8s.apps.v1.Deployment(`${name}-deployment`, {
            metadata: {
                ...meta,
                name: deploymentName,
                // A migration scales the Deployment to zero (schemaRollout.ts); the update that follows
                // sets the replicas again, over that change's field manager.
                annotations: { "pulumi.com/patchForce": "true" },
            },
            spec: {
                replicas: args.maxReplicas ? undefined : args.replicas,
                selector: { matchLabels: selector },
                strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
                template: {
                    metadata: {
                        labels: meta.labels,
                        annotations: {
                            "checksum/config": configChecksum,
                            // The conventional annotations of Prometheus's pod discovery: the exporter's
                            // port, which answers by pod IP without a login (README, "Monitoring"). Not
                            // with a ServiceMonitor: a Prometheus reading both would count every request twice.
                            ...(args.serviceMonitor ? {} : {
                                "prometheus.io/scrape": "true",
                                "prometheus.io/port": String(METRICS_PORT),
                                "prometheus.io/path": METRICS_PATH,
                            }),
                        },
                    },
                    spec: {
                        ...podSpecBase,
                        serviceAccountName: serviceAccount.metadata.name,
                        terminationGracePeriodSeconds: PRE_STOP_SECONDS + DRAIN_SECONDS,
                        // Spread replicas over nodes where possible, so one node going away never
                        // takes every server with it.
                        affinity: {
                            podAntiAffinity: {
                                preferredDuringSchedulingIgnoredDuringExecution: [{
                                    weight: 100,
                                    podAffinityTerm: { topologyKey: "kubernetes.io/hostname", labelSelector: { matchLabels: selector } },
                                }],
                            },
                        },
                        containers: [{
                            ...container,
                            resources: resourceRequirements(args.resources, SERVER_STORAGE),
                            name: "mlflow",
                            command: ["mlflow"],
                            args: args_,
                            ports: [{ name: "http", containerPort: CONTAINER_PORT, protocol: "TCP" }],
                            env: [
                                ...serverEnv, metricsEnv,
                                // The request bounds plugin and its limits (components/request-bounds).
                                { name: "PYTHONPATH", value: REQUEST_BOUNDS_DIR },
                                ...requestBoundsEnv(args.requestLimits),
                            ],
                            // /health answers without auth and skips the Host check.
                            startupProbe: { httpGet: httpGetHealth, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 60 },
                            readinessProbe: { httpGet: httpGetHealth, periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 },
                            // Liveness asks only whether the server still accepts connections: a
                            // server busy enough to answer /health slowly leaves the Service (readiness)
                            // instead of being restarted under load, which would only add to the load.
                            livenessProbe: { tcpSocket: { port: "http" }, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 3 },
                            // A deleted pod leaves the Service's endpoints while the kubelet stops it; until
                            // every node's proxy and the Ingress controller have caught up, requests still
                            // arrive. The server keeps accepting them for this long, then drains on SIGTERM.
                            lifecycle: { preStop: { exec: { command: ["sleep", String(PRE_STOP_SECONDS)] } } },
                            volumeMounts: [
                                tmpMount,
                                { name: "auth-config", mountPath: AUTH_CONFIG_DIR, readOnly: true },
                                { name: "metrics", mountPath: METRICS_DIR },
                                { name: "request-bounds", mountPath: REQUEST_BOUNDS_DIR, readOnly: true },
                                ...databaseCaMounts(args.database),
                            ],
                        }, {
                            // Sums the workers' counters on each scrape and serves them on a port of
                            // its own, without the Host check and login of the server's port. It
                            // reads the directory, holds no credential and reaches nothing.
                            ...container,
                            resources: resourceRequirements(METRICS_EXPORTER_RESOURCES, METRICS_EXPORTER_STORAGE),
                            name: "metrics",
                            workingDir: EXPORTER_MOUNT,
                            command: ["python"],
                            args: [`${EXPORTER_MOUNT}/metrics.py`, "--host", "0.0.0.0", "--port", String(METRICS_PORT)],
                            ports: [{ name: "metrics", containerPort: METRICS_PORT, protocol: "TCP" }],
                            env: [{ name: "PYTHONDONTWRITEBYTECODE", value: "1" }, metricsEnv],
                            // Ready once it listens, which it does within a second of starting: the
                            // server's pods are not held out of the Service by a slow scrape. A hung
                            // exporter (its port open, no answer) is restarted instead.
                            readinessProbe: { tcpSocket: { port: "metrics" }, periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 },
                            livenessProbe: { httpGet: { path: METRICS_PATH, port: "metrics" }, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 3 },
                            // Stops with the server: a last scrape while the endpoint goes still answers.
                            lifecycle: { preStop: { exec: { command: ["sleep", String(PRE_STOP_SECONDS)] } } },
                            volumeMounts: [
                                { name: "metrics", mountPath: METRICS_DIR, readOnly: true },
                                { name: "metrics-exporter", mountPath: EXPORTER_MOUNT, readOnly: true },
                            ],
                        }],
                        volumes: [
                            tmpVolume,
                            { name: "auth-config", configMap: { name: authConfig.metadata.name, defaultMode: 0o444 } },
                            emptyDir("metrics", METRICS_DIR_SIZE),
                            { name: "metrics-exporter", configMap: { name: exporterScript.metadata.name, defaultMode: 0o444 } },
                            { name: "request-bounds", configMap: { name: requestBounds.metadata.name, defaultMode: 0o444, items: [...REQUEST_BOUNDS_ITEMS] } },
                            ...databaseCaVolumes(args.database),
                        ],
                    },
                },
            },
        }, { ...child, dependsOn: [migration], customTimeouts: { create: `${ROLLOUT_TIMEOUT_SECONDS}s`, update: `${ROLLOUT_TIMEOUT_SECONDS}s` } });

        // --- Garbage collection ----------------------------------------------------------------
        // Deleted runs stay in the database and their artifacts in S3 until something purges them:
        // purge.py runs `mlflow gc` on the server's database, deleting the artifacts from the server's
        // artifact destination as the server's identity (its ServiceAccount, and in accessKey mode
        // its Secret), then the rows. It starts once the server has rolled out on the migrated schema.
        if (args.gc !== undefined) {
            const gc = args.gc;
            const gcLabels = labels(name, "artifact-gc", MLFLOW_VERSION);
            writers.push(new k8s.batch.v1.CronJob(`${name}-gc`, {
                metadata: { ...meta, labels: gcLabels, name: gcName },
                spec: {
                    schedule: gc.schedule,
                    timeZone: "Etc/UTC",
                    // Two at once would race to delete the same runs.
                    concurrencyPolicy: "Forbid",
                    // A missed slot (controller down) still runs within the hour, not days later.
                    startingDeadlineSeconds: 3600,
                    successfulJobsHistoryLimit: 3,
                    failedJobsHistoryLimit: 3,
                    jobTemplate: {
                        metadata: { labels: gcLabels },
                        spec: {
                            // gc is idempotent: a retry goes on where a failed attempt stopped.
                            backoffLimit: 2,
                            activeDeadlineSeconds: GC_DEADLINE_SECONDS,
                            template: {
                                metadata: { labels: gcLabels },
                                spec: {
                                    ...podSpecBase,
                                    serviceAccountName: serviceAccount.metadata.name,
                                    restartPolicy: "Never",
                                    containers: [{
                                        ...container,
                                        name: "gc",
                                        command: ["python"],
                                        args: pulumi.all([db, args.artifactsDestination]).apply(([u, destination]) =>
                                            [`${SCRIPTS_MOUNT}/purge.py`, u.tracking, destination, gc.olderThan]),
                                        env: [...databaseEnv, ...s3Env(s3Secret, args.s3, "MLFLOW_S3_ENDPOINT_URL")],
                                        volumeMounts: [tmpMount, { name: "scripts", mountPath: SCRIPTS_MOUNT, readOnly: true }, ...databaseCaMounts(args.database)],
                                    }],
                                    volumes: [tmpVolume, scriptsVolume, ...databaseCaVolumes(args.database)],
                                },
                            },
                        },
                    },
                },
            }, { ...child, dependsOn: [deployment] }));
        }
        rollout.resumeAfter(`${name}-rollout-resume`, [deployment, ...writers]);

        const service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: { ...meta, name: SERVICE_NAME },
            spec: {
                type: "ClusterIP",
                selector,
                ports: [{ name: "http", port: SERVICE_PORT, targetPort: "http", protocol: "TCP" }],
            },
        }, child);

        const minReplicas = args.replicas;
        if (Math.max(minReplicas, args.maxReplicas ?? 0) > 1) {
            new k8s.policy.v1.PodDisruptionBudget(`${name}-pdb`, {
                metadata: meta,
                spec: { maxUnavailable: 1, selector: { matchLabels: selector } },
            }, child);
        }
        if (args.maxReplicas) {
            new k8s.autoscaling.v2.HorizontalPodAutoscaler(`${name}-hpa`, {
                metadata: meta,
                spec: {
                    scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: deployment.metadata.name },
                    minReplicas,
                    maxReplicas: args.maxReplicas,
                    metrics: [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } } }],
                },
            }, child);
        }
        if (args.ingress) {
            const ing = args.ingress;
            new k8s.networking.v1.Ingress(`${name}-ingress`, {
                // Artifacts are proxied through the server: the controller's annotations lift its body
                // limit and lengthen its timeouts (nginx's unless ingressAnnotations says otherwise).
                metadata: { ...meta, annotations: { ...ing.annotations } },
                spec: {
                    ingressClassName: ing.className,
                    tls: ing.tlsSecretName ? [{ hosts: [ing.host], secretName: ing.tlsSecretName }] : undefined,
                    rules: [{
                        host: ing.host,
                        http: {
                            paths: [{
                                path: args.staticPrefix ?? "/",
                                pathType: "Prefix",
                                backend: { service: { name: service.metadata.name, port: { name: "http" } } },
                            }],
                        },
                    }],
                },
            }, child);
        }

        if (args.httpRoute) {
            new k8s.apiextensions.CustomResource(`${name}-route`, {
                apiVersion: GATEWAY_API_VERSION,
                kind: "HTTPRoute",
                metadata: meta,
                spec: httpRouteSpec(args.httpRoute, { name: SERVICE_NAME, port: SERVICE_PORT }, args.staticPrefix ?? "/"),
            }, { ...child, dependsOn: [service] });
        }
        if (args.serviceMonitor) {
            // A Service of its own, so the one users port-forward to keeps one port and the monitor
            // selects nothing else.
            const metricsComponent = `${component}-metrics`;
            const metricsService = new k8s.core.v1.Service(`${name}-metrics`, {
                metadata: { ...meta, name: METRICS_SERVICE_NAME, labels: labels(name, metricsComponent, MLFLOW_VERSION) },
                spec: {
                    clusterIP: "None",
                    selector,
                    ports: [{ name: "metrics", port: METRICS_PORT, targetPort: "metrics", protocol: "TCP" }],
                },
            }, child);
            new k8s.apiextensions.CustomResource(`${name}-metrics`, {
                apiVersion: SERVICE_MONITOR_API_VERSION,
                kind: "ServiceMonitor",
                metadata: { ...meta, labels: { ...args.serviceMonitor.labels, ...labels(name, metricsComponent, MLFLOW_VERSION) } },
                spec: serviceMonitorSpec(selectorLabels(name, metricsComponent), "metrics", METRICS_PATH),
            }, { ...child, dependsOn: [metricsService] });
        }

        this.serviceName = service.metadata.name;
        this.deploymentName = deployment.metadata.name;
        this.internalUri = pulumi.interpolate`http://${service.metadata.name}.${args.namespace}.svc.cluster.local:${SERVICE_PORT}${args.staticPrefix ?? ""}`;
        this.registerOutputs({
            serviceName: this.serviceName,
            internalUri: this.internalUri,
            adminUsername: this.adminUsername,
            adminPassword: this.adminPassword,
        });
    }
}

/** Volumes by name, the first of each name kept: the backup's init containers bring some of the Job's own. */
function uniqueVolumes(volumes: k8s.types.input.core.v1.Volume[]): k8s.types.input.core.v1.Volume[] {
    const seen = new Set<unknown>();
    return volumes.filter((v) => {
        const first = !seen.has(v.name);
        seen.add(v.name);
        return first;
    });
}
