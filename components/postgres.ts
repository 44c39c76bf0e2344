import * as fs from "fs";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { Resources, VolumeRetention } from "./config";
import { EphemeralStorage, checksum, containerSecurityContext, emptyDir, labels, podSecurityContext, resourceRequirements, secretEnv, selectorLabels } from "./kube";
import { POSTGRES_IMAGE, POSTGRES_UID, POSTGRES_VERSION } from "./versions";

/** Port PostgreSQL listens on. */
export const POSTGRES_PORT = 5432;
/** Database holding MLflow's tracking metadata (experiments, runs, models). */
export const TRACKING_DATABASE = "mlflow";
/** Database holding MLflow's basic-auth users and permissions. */
export const AUTH_DATABASE = "mlflow_auth";
/** Login role that owns both MLflow databases; the `postgres` superuser is kept for operators. */
export const APP_ROLE = "mlflow";
/** The superuser the official image creates; only operators' tools (restore) use it. */
export const SUPERUSER = "postgres";
/** Keys of the credentials Secret. */
export const SECRET_KEYS = Object.freeze({
    username: "username",
    password: "password",
    superuserPassword: "postgres-password",
});
/** Directory of the init files the component ships, run once on an empty data directory. */
export const INIT_DIR = path.join(__dirname, "postgres-init");
/** Directory of the scripts the pod runs on every start. */
export const SCRIPTS_DIR = path.join(__dirname, "postgres-scripts");
/** Where those scripts are mounted. */
const SCRIPTS_MOUNT = "/opt/mlflow/postgres";
const DATA_MOUNT = "/var/lib/postgresql/data";
/**
 * The data is on the claim; ephemeral storage holds the socket directory (16Mi), /tmp (256Mi: sorts
 * and temp files spill to the data directory, not here) and the logs.
 */
const EPHEMERAL: EphemeralStorage = { request: "64Mi", limit: "512Mi" };

/** Where a client finds the database and the Secret holding its login. */
export interface DatabaseConnection {
    readonly host: pulumi.Input<string>;
    readonly port: number;
    readonly trackingDatabase: string;
    readonly authDatabase: string;
    /** Secret with the application role's login ({@link SECRET_KEYS}). */
    readonly secretName: pulumi.Input<string>;
    readonly usernameKey: string;
    readonly passwordKey: string;
    /** TLS to an external database; undefined for the in-cluster one, reached over the pod network. */
    readonly tls?: DatabaseTls;
}

/** How a client encrypts its connections and checks the server. */
export interface DatabaseTls {
    /** libpq `sslmode`. */
    readonly sslMode: string;
    /** ConfigMap holding the CA certificate under {@link DATABASE_CA_FILE}; undefined with `require`. */
    readonly caConfigMapName?: pulumi.Input<string>;
}

/** Where database clients find the CA that signed the server's certificate. */
export const DATABASE_CA_DIR = "/etc/mlflow/database-ca";
/** The CA file's name in its ConfigMap and in {@link DATABASE_CA_DIR}. */
export const DATABASE_CA_FILE = "ca.crt";
const DATABASE_CA_VOLUME = "database-ca";

/**
 * The libpq environment of a client: host and port, the login from the Secret, so the password
 * never appears in a URI (where special characters would need encoding) nor on a command line
 * (where `ps` would show it), and the TLS settings of an external database. psql, pg_dump and
 * psycopg2 (MLflow's driver) all read them.
 */
export function libpqEnv(db: DatabaseConnection, options: { host?: boolean } = {}): k8s.types.input.core.v1.EnvVar[] {
    return [
        ...(options.host === false ? [] : [{ name: "PGHOST", value: db.host }, { name: "PGPORT", value: String(db.port) }]),
        secretEnv("PGUSER", db.secretName, db.usernameKey),
        secretEnv("PGPASSWORD", db.secretName, db.passwordKey),
        { name: "PGCONNECT_TIMEOUT", value: "10" },
        ...(db.tls === undefined ? [] : [{ name: "PGSSLMODE", value: db.tls.sslMode }]),
        ...(db.tls?.caConfigMapName === undefined ? [] : [{ name: "PGSSLROOTCERT", value: `${DATABASE_CA_DIR}/${DATABASE_CA_FILE}` }]),
    ];
}

/** The volume a database client's pod needs for the CA (none without one). */
export function databaseCaVolumes(db: DatabaseConnection): k8s.types.input.core.v1.Volume[] {
    const name = db.tls?.caConfigMapName;
    return name === undefined ? [] : [{ name: DATABASE_CA_VOLUME, configMap: { name, defaultMode: 0o444 } }];
}

/** The mount of {@link databaseCaVolumes} in each client container. */
export function databaseCaMounts(db: DatabaseConnection): k8s.types.input.core.v1.VolumeMount[] {
    return db.tls?.caConfigMapName === undefined ? [] : [{ name: DATABASE_CA_VOLUME, mountPath: DATABASE_CA_DIR, readOnly: true }];
}

/** Arguments of {@link Postgres}. */
export interface PostgresArgs {
    /** Namespace of every object. */
    readonly namespace: pulumi.Input<string>;
    /** Size of the data volume, e.g. `8Gi`. Growing it expands the volume in place. */
    readonly storageSize: string;
    /**
     * StorageClass of the data volume.
     * @default the cluster's default StorageClass
     */
    readonly storageClass?: string;
    /**
     * What `pulumi destroy` does with the volume claim. `Retain` leaves it in the cluster, where the
     * next `pulumi up` of the same stack adopts it (the claim's name is fixed).
     * @default "Retain": deleting the stack must not delete the data by accident.
     */
    readonly volumeRetention?: VolumeRetention;
    /** PostgreSQL `max_connections`. */
    readonly maxConnections: number;
    /** CPU and memory. */
    readonly resources: Resources;
    /**
     * Protect the volume claim from deletion and keep it if it leaves the program.
     * @default false
     */
    readonly protect?: boolean;
    /** Resources the volume claim must wait for (the data guard). */
    readonly claimDependsOn?: pulumi.Input<pulumi.Resource>[];
}

/**
 * PostgreSQL for MLflow's metadata: generated credentials in a Secret, the official image pinned
 * by tag, a StatefulSet of one pod under the `restricted` Pod Security profile, and a headless plus
 * a ClusterIP Service. Two databases (tracking and auth) and their owner role are created on first
 * initialisation by the shipped init files.
 *
 * The data volume is a PersistentVolumeClaim of its own, not a `volumeClaimTemplates` entry: the
 * Kubernetes provider replaces a StatefulSet whenever its claim templates change, and replacing
 * it would take the claim along. A standalone claim changes in place (a larger size is a volume
 * expansion) and nothing version-dependent is part of its identity (docs/adr/0004).
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
    /** Name of the data volume claim. */
    public readonly claimName: pulumi.Output<string>;
    /** How clients reach the databases and log in. */
    public readonly connection: DatabaseConnection;
    /** Labels that select PostgreSQL's pods (for NetworkPolicies). */
    public readonly podSelector: Readonly<Record<string, string>>;

    constructor(name: string, args: PostgresArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:kubernetes:Postgres", name, {}, opts);
        const child = { parent: this };
        const component = "postgres";
        const meta = { namespace: args.namespace, labels: labels(name, component, POSTGRES_VERSION) };
        const selector = selectorLabels(name, component);
        const protect = args.protect ?? false;
        this.podSelector = selector;

        // Stable (no keepers) and needing no quoting anywhere. The data directory learns each
        // password again at every start (scripts/sync-passwords.sh), so a replaced one takes over.
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
        const scripts = new k8s.core.v1.ConfigMap(`${name}-scripts`, {
            metadata: meta,
            data: readFiles(SCRIPTS_DIR),
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

        const fromSecret = (envName: string, key: string) => secretEnv(envName, secret.metadata.name, key);
        const env: k8s.types.input.core.v1.EnvVar[] = [
            // A subdirectory: initdb refuses a volume root that holds lost+found.
            { name: "PGDATA", value: `${DATA_MOUNT}/pgdata` },
            { name: "POSTGRES_USER", value: SUPERUSER },
            fromSecret("POSTGRES_PASSWORD", SECRET_KEYS.superuserPassword),
            fromSecret("MLFLOW_DB_USER", SECRET_KEYS.username),
            fromSecret("MLFLOW_DB_PASSWORD", SECRET_KEYS.password),
            { name: "MLFLOW_TRACKING_DB", value: TRACKING_DATABASE },
            { name: "MLFLOW_AUTH_DB", value: AUTH_DATABASE },
        ];
        const dataMount = { name: "data", mountPath: DATA_MOUNT };
        const runMount = { name: "run", mountPath: "/var/run/postgresql" };
        const tmpMount = { name: "tmp", mountPath: "/tmp" };
        const scriptsMount = { name: "scripts", mountPath: SCRIPTS_MOUNT, readOnly: true };
        const isReady = (host: string): string[] =>
            ["pg_isready", "--host", host, "--port", String(POSTGRES_PORT), "--username", APP_ROLE, "--dbname", TRACKING_DATABASE];

        // The name a claim template would have given the pod's claim (`<template>-<statefulset>-0`),
        // so a stack deployed with a claim template finds its data again. No version label: the
        // claim outlives every upgrade.
        const claim = new k8s.core.v1.PersistentVolumeClaim(`${name}-data`, {
            metadata: { namespace: args.namespace, name: `data-${name}-0`, labels: selectorLabels(name, component) },
            spec: {
                accessModes: ["ReadWriteOnce"],
                storageClassName: args.storageClass,
                resources: { requests: { storage: args.storageSize } },
            },
        }, {
            ...child,
            dependsOn: args.claimDependsOn,
            protect,
            retainOnDelete: protect || (args.volumeRetention ?? "Retain") === "Retain",
        });

        const statefulSet = new k8s.apps.v1.StatefulSet(`${name}-statefulset`, {
            metadata: { ...meta, name },
            spec: {
                serviceName: headless.metadata.name,
                replicas: 1,
                selector: { matchLabels: selector },
                template: {
                    metadata: {
                        labels: meta.labels,
                        annotations: {
                            "kubectl.kubernetes.io/default-container": "postgres",
                            // A new password or script restarts the pod, which syncs the password.
                            "checksum/config": pulumi.all([appPassword.result, superuserPassword.result])
                                .apply((passwords) => checksum(passwords, readInitFiles(), readFiles(SCRIPTS_DIR))),
                        },
                    },
                    spec: {
                        automountServiceAccountToken: false,
                        enableServiceLinks: false,
                        terminationGracePeriodSeconds: 60,
                        securityContext: podSecurityContext(POSTGRES_UID),
                        initContainers: [{
                            name: "sync-passwords",
                            image: POSTGRES_IMAGE,
                            imagePullPolicy: "IfNotPresent",
                            command: ["bash", `${SCRIPTS_MOUNT}/sync-passwords.sh`],
                            env,
                            resources: resourceRequirements(args.resources, EPHEMERAL),
                            securityContext: containerSecurityContext(),
                            volumeMounts: [dataMount, runMount, tmpMount, scriptsMount],
                        }],
                        containers: [{
                            name: "postgres",
                            image: POSTGRES_IMAGE,
                            imagePullPolicy: "IfNotPresent",
                            command: ["docker-entrypoint.sh"],
                            args: ["postgres", "-c", `max_connections=${args.maxConnections}`],
                            ports: [{ name: "postgres", containerPort: POSTGRES_PORT, protocol: "TCP" }],
                            env,
                            resources: resourceRequirements(args.resources, EPHEMERAL),
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
                                dataMount, runMount, tmpMount,
                                { name: "init", mountPath: "/docker-entrypoint-initdb.d", readOnly: true },
                            ],
                        }],
                        volumes: [
                            { name: "data", persistentVolumeClaim: { claimName: claim.metadata.name } },
                            emptyDir("run", "16Mi"),
                            emptyDir("tmp", "256Mi"),
                            { name: "init", configMap: { name: initFiles.metadata.name, defaultMode: 0o444 } },
                            { name: "scripts", configMap: { name: scripts.metadata.name, defaultMode: 0o555 } },
                        ],
                    },
                },
            },
        }, child);

        // Derived from the StatefulSet too, so whoever connects to this host (the migration Job)
        // waits until the database is ready, without having to know about the StatefulSet.
        this.host = pulumi.all([service.metadata.name, service.metadata.namespace, statefulSet.metadata.name])
            .apply(([svc, ns]) => `${svc}.${ns}.svc.cluster.local`);
        this.secretName = secret.metadata.name;
        this.statefulSetName = statefulSet.metadata.name;
        this.claimName = claim.metadata.name;
        this.connection = {
            host: this.host, port: POSTGRES_PORT, trackingDatabase: TRACKING_DATABASE, authDatabase: AUTH_DATABASE,
            secretName: this.secretName, usernameKey: SECRET_KEYS.username, passwordKey: SECRET_KEYS.password,
        };

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
    return readFiles(INIT_DIR);
}

/** Every file of a directory the components ship, keyed by file name (a ConfigMap's data). */
export function readFiles(dir: string): Record<string, string> {
    const files: Record<string, string> = {};
    for (const f of fs.readdirSync(dir).sort()) {
        files[f] = fs.readFileSync(path.join(dir, f), "utf8");
    }
    return files;
}
