import * as fs from "fs";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { Resources, VolumeRetention } from "./config";
import { containerSecurityContext, emptyDir, labels, podSecurityContext, resourceRequirements, selectorLabels } from "./kube";
import { POSTGRES_IMAGE, POSTGRES_UID, POSTGRES_VERSION } from "./versions";

/** Port PostgreSQL listens on. */
export const POSTGRES_PORT = 5432;
/** Database holding MLflow's tracking metadata (experiments, runs, models). */
export const TRACKING_DATABASE = "mlflow";
/** Database holding MLflow's basic-auth users and permissions. */
export const AUTH_DATABASE = "mlflow_auth";
/** Login role that owns both MLflow databases; the `postgres` superuser is kept for operators. */
export const APP_ROLE = "mlflow";
/** Keys of the credentials Secret. */
export const SECRET_KEYS = Object.freeze({
    username: "username",
    password: "password",
    superuserPassword: "postgres-password",
});
/** Directory of the init files the component ships, run once on an empty data directory. */
export const INIT_DIR = path.join(__dirname, "postgres-init");
const DATA_MOUNT = "/var/lib/postgresql/data";

/** Arguments of {@link Postgres}. */
export interface PostgresArgs {
    /** Namespace of every object. */
    readonly namespace: pulumi.Input<string>;
    /** Size of the data volume, e.g. `8Gi`. */
    readonly storageSize: string;
    /**
     * StorageClass of the data volume.
     * @default the cluster's default StorageClass
     */
    readonly storageClass?: string;
    /**
     * Whether the volume claim outlives the StatefulSet.
     * @default "Retain": deleting the StatefulSet must not delete the data by accident.
     */
    readonly volumeRetention?: VolumeRetention;
    /** PostgreSQL `max_connections`. */
    readonly maxConnections: number;
    /** CPU and memory. */
    readonly resources: Resources;
    /**
     * Protect the StatefulSet from deletion and keep it if it leaves the program.
     * @default false
     */
    readonly protect?: boolean;
}

/**
 * PostgreSQL for MLflow's metadata: generated credentials in a Secret, the official image pinned
 * by tag, a StatefulSet with a persistent volume under the `restricted` Pod Security profile,
 * and a headless plus a ClusterIP Service. Two databases (tracking and auth) and their owner role
 * are created on first initialisation by the shipped init files.
 */
export class Postgres extends pulumi.ComponentResource {
    /** In-cluster host name of the ClusterIP Service. */
    public readonly host: pulumi.Output<string>;
    /** TCP port. */
    public readonly port: number = POSTGRES_PORT;
    /** Tracking metadata database. */
    public readonly trackingDatabase: string = TRACKING_DATABASE;
    /** Basic-auth database. */
    public readonly authDatabase: string = AUTH_DATABASE;
    /** Name of the Secret with the credentials (keys in {@link SECRET_KEYS}). */
    public readonly secretName: pulumi.Output<string>;
    /** The application role's password (a Pulumi secret). */
    public readonly password: pulumi.Output<string>;
    /** Name of the StatefulSet. */
    public readonly statefulSetName: pulumi.Output<string>;
    /** Labels that select PostgreSQL's pods (for NetworkPolicies). */
    public readonly podSelector: Readonly<Record<string, string>>;

    constructor(name: string, args: PostgresArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:kubernetes:Postgres", name, {}, opts);
        const child = { parent: this };
        const component = "postgres";
        const meta = { namespace: args.namespace, labels: labels(name, component, POSTGRES_VERSION) };
        const selector = selectorLabels(name, component);
        this.podSelector = selector;

        // The password is written into the data volume on first start, so it must never change
        // by accident: no keepers, and a character set that needs no quoting anywhere.
        const passwordSpec = { length: 32, special: true, overrideSpecial: "-_.~", minLower: 2, minUpper: 2, minNumeric: 2 };
        const appPassword = new random.RandomPassword(`${name}-password`, passwordSpec, child);
        const superuserPassword = new random.RandomPassword(`${name}-superuser-password`, passwordSpec, child);
        this.password = pulumi.secret(appPassword.result);

        const secret = new k8s.core.v1.Secret(`${name}-credentials`, {
            metadata: meta,
            type: "Opaque",
            stringData: {
                [SECRET_KEYS.username]: APP_ROLE,
                [SECRET_KEYS.password]: this.password,
                [SECRET_KEYS.superuserPassword]: pulumi.secret(superuserPassword.result),
            },
        }, child);

        const initFiles = new k8s.core.v1.ConfigMap(`${name}-init`, {
            metadata: meta,
            data: readInitFiles(),
        }, child);

        const headless = new k8s.core.v1.Service(`${name}-headless`, {
            metadata: { ...meta, name: `${name}-headless` },
            spec: {
                clusterIP: "None",
                publishNotReadyAddresses: true,
                selector,
                ports: [{ name: "postgres", port: POSTGRES_PORT, targetPort: "postgres" }],
            },
        }, child);

        const service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: { ...meta, name },
            spec: {
                type: "ClusterIP",
                selector,
                ports: [{ name: "postgres", port: POSTGRES_PORT, targetPort: "postgres" }],
            },
        }, child);

        const secretEnv = (envName: string, key: string): k8s.types.input.core.v1.EnvVar => ({
            name: envName,
            valueFrom: { secretKeyRef: { name: secret.metadata.name, key } },
        });
        const isReady = (host: string): string[] =>
            ["pg_isready", "--host", host, "--port", String(POSTGRES_PORT), "--username", APP_ROLE, "--dbname", TRACKING_DATABASE];

        const statefulSet = new k8s.apps.v1.StatefulSet(`${name}-statefulset`, {
            metadata: { ...meta, name },
            spec: {
                serviceName: headless.metadata.name,
                replicas: 1,
                selector: { matchLabels: selector },
                persistentVolumeClaimRetentionPolicy: {
                    whenDeleted: args.volumeRetention ?? "Retain",
                    whenScaled: "Retain",
                },
                template: {
                    metadata: {
                        labels: meta.labels,
                        annotations: { "kubectl.kubernetes.io/default-container": "postgres" },
                    },
                    spec: {
                        automountServiceAccountToken: false,
                        enableServiceLinks: false,
                        terminationGracePeriodSeconds: 60,
                        securityContext: podSecurityContext(POSTGRES_UID),
                        containers: [{
                            name: "postgres",
                            image: POSTGRES_IMAGE,
                            imagePullPolicy: "IfNotPresent",
                            command: ["docker-entrypoint.sh"],
                            args: ["postgres", "-c", `max_connections=${args.maxConnections}`],
                            ports: [{ name: "postgres", containerPort: POSTGRES_PORT, protocol: "TCP" }],
                            env: [
                                // A subdirectory: initdb refuses a volume root that holds lost+found.
                                { name: "PGDATA", value: `${DATA_MOUNT}/pgdata` },
                                { name: "POSTGRES_USER", value: "postgres" },
                                secretEnv("POSTGRES_PASSWORD", SECRET_KEYS.superuserPassword),
                                secretEnv("MLFLOW_DB_USER", SECRET_KEYS.username),
                                secretEnv("MLFLOW_DB_PASSWORD", SECRET_KEYS.password),
                                { name: "MLFLOW_TRACKING_DB", value: TRACKING_DATABASE },
                                { name: "MLFLOW_AUTH_DB", value: AUTH_DATABASE },
                            ],
                            resources: resourceRequirements(args.resources),
                            securityContext: containerSecurityContext(),
                            // Until the first start finishes initialising, the server listens on its
                            // socket only, so the TCP check also waits out the init scripts.
                            startupProbe: {
                                exec: { command: isReady("127.0.0.1") },
                                periodSeconds: 5,
                                timeoutSeconds: 5,
                                failureThreshold: 60,
                            },
                            readinessProbe: {
                                exec: { command: isReady("127.0.0.1") },
                                periodSeconds: 10,
                                timeoutSeconds: 5,
                                failureThreshold: 3,
                            },
                            // Liveness asks the local socket and tolerates a minute of trouble: a busy
                            // server should be taken out of the Service, not restarted.
                            livenessProbe: {
                                exec: { command: isReady("/var/run/postgresql") },
                                periodSeconds: 20,
                                timeoutSeconds: 5,
                                failureThreshold: 6,
                            },
                            volumeMounts: [
                                { name: "data", mountPath: DATA_MOUNT },
                                { name: "run", mountPath: "/var/run/postgresql" },
                                { name: "tmp", mountPath: "/tmp" },
                                { name: "init", mountPath: "/docker-entrypoint-initdb.d", readOnly: true },
                            ],
                        }],
                        volumes: [
                            emptyDir("run", "16Mi"),
                            emptyDir("tmp", "256Mi"),
                            { name: "init", configMap: { name: initFiles.metadata.name, defaultMode: 0o444 } },
                        ],
                    },
                },
                volumeClaimTemplates: [{
                    metadata: { name: "data", labels: meta.labels },
                    spec: {
                        accessModes: ["ReadWriteOnce"],
                        storageClassName: args.storageClass,
                        resources: { requests: { storage: args.storageSize } },
                    },
                }],
            },
        }, { ...child, protect: args.protect ?? false, retainOnDelete: args.protect ?? false });

        // Derived from the StatefulSet too, so whoever connects to this host (the migration Job)
        // waits until the database is ready, without having to know about the StatefulSet.
        this.host = pulumi.all([service.metadata.name, service.metadata.namespace, statefulSet.metadata.name])
            .apply(([svc, ns]) => `${svc}.${ns}.svc.cluster.local`);
        this.secretName = secret.metadata.name;
        this.statefulSetName = statefulSet.metadata.name;

        this.registerOutputs({
            host: this.host,
            port: this.port,
            trackingDatabase: this.trackingDatabase,
            authDatabase: this.authDatabase,
            secretName: this.secretName,
        });
    }
}

/** The shipped init files, keyed by file name (the ConfigMap's data). */
export function readInitFiles(): Record<string, string> {
    const files: Record<string, string> = {};
    for (const f of fs.readdirSync(INIT_DIR).sort()) {
        files[f] = fs.readFileSync(path.join(INIT_DIR, f), "utf8");
    }
    return files;
}
