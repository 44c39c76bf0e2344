import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { containerSecurityContext, emptyDir, labels, podSecurityContext, selectorLabels } from "./kube";
import { DatabaseConnection, SUPERUSER, databaseCaMounts, databaseCaVolumes, libpqEnv, readFiles } from "./postgres";
import { S3Access, s3CredentialsSecret, s3Env, workloadServiceAccount } from "./s3Credentials";
import { MLFLOW_IMAGE, MLFLOW_UID, MLFLOW_VERSION, POSTGRES_IMAGE } from "./versions";

/** Directory of the backup and restore scripts the component ships. */
export const BACKUP_SCRIPTS_DIR = path.join(__dirname, "backup-scripts");
/** Where they are mounted. */
const SCRIPTS_MOUNT = "/opt/mlflow/backup";
/** Where dumps are written before upload, and fetched before restore. */
const SCRATCH_MOUNT = "/backup";
/** ServiceAccount of the backup, restore and migration pods: the backup identity's role admits it. */
export const BACKUP_SERVICE_ACCOUNT = "mlflow-db-backup";

/**
 * Why a backup was taken, written into its manifest: the schedule, or the migration Job before
 * it changes the schema.
 */
export type BackupReason = "scheduled" | "pre-migration";

/**
 * Requests and limits of the backup containers: pg_dump streams table by table, boto3 uploads
 * 64 MiB parts, so neither grows with the database. The dumps live on the scratch emptyDir, which
 * counts against the pod's ephemeral storage: the PostgreSQL-side container's limit covers it.
 */
function resources(scratchSize: string) {
    return {
        pg: {
            requests: { cpu: "100m", memory: "64Mi", "ephemeral-storage": "64Mi" },
            limits: { cpu: "1", memory: "256Mi", "ephemeral-storage": scratchSize },
        },
        s3: {
            requests: { cpu: "100m", memory: "192Mi", "ephemeral-storage": "16Mi" },
            limits: { cpu: "1", memory: "512Mi", "ephemeral-storage": "256Mi" },
        },
    };
}

/** Arguments of {@link DatabaseBackup}. */
export interface DatabaseBackupArgs {
    /** Namespace of every object. */
    readonly namespace: pulumi.Input<string>;
    /** The databases to back up and how to log in. */
    readonly database: DatabaseConnection;
    /**
     * Key of the superuser password in the database's Secret, with which restores create missing
     * databases; undefined for an external database, whose databases must exist.
     */
    readonly superuserPasswordKey?: string;
    /** Cron schedule, in UTC, of the scheduled backups. */
    readonly schedule: string;
    /** `s3://bucket/prefix` the backups go to. */
    readonly destination: pulumi.Input<string>;
    /** The backup identity's access key (it may write and read under the prefix, never delete). */
    readonly s3: S3Access;
    /**
     * KMS key the uploads are encrypted with.
     * @default undefined: SSE-S3 (AES256)
     */
    readonly kmsKeyArn?: string;
    /** Size limit of the scratch volume holding the dumps (the database's volume size is ample). */
    readonly scratchSize: string;
}

/**
 * Backups of MLflow's two databases to S3, and the means to restore one:
 *
 * - a CronJob that dumps both databases with pg_dump (custom format, the server's PostgreSQL
 *   image, so always the server's major version) and uploads the dumps with their SHA-256 and a
 *   manifest, written last, to `s3://<bucket>/<backupPrefix>/<UTC timestamp>/`;
 * - the same two steps as init containers for the migration Job ({@link preMigrationBackup}), so a
 *   schema upgrade can always be rolled back;
 * - a suspended CronJob that is never scheduled: the template of restore Jobs, which
 *   `npm run restore` (scripts/restore.ts) creates from it with the backup to restore.
 *
 * The pods use their own IAM identity, which can write and read backups but delete nothing and
 * reach no artifact, through their own ServiceAccount. Old backups expire by the bucket's
 * lifecycle rule.
 */
export class DatabaseBackup extends pulumi.ComponentResource {
    /** Name of the scheduled backup CronJob. */
    public readonly cronJobName: pulumi.Output<string>;
    /** Name of the suspended restore CronJob, the template of restore Jobs. */
    public readonly restoreCronJobName: pulumi.Output<string>;
    /** Labels that select the backup pods (for NetworkPolicies). */
    public readonly backupPodSelector: Readonly<Record<string, string>>;
    /** Labels that select the restore pods (for NetworkPolicies). */
    public readonly restorePodSelector: Readonly<Record<string, string>>;
    /** Volumes the backup containers mount; a pod that runs {@link preMigrationBackup} needs them. */
    public readonly volumes: k8s.types.input.core.v1.Volume[];
    /** ServiceAccount a pod that runs {@link preMigrationBackup} must run as (its identity's role admits it). */
    public readonly serviceAccountName: pulumi.Output<string>;

    private readonly containers: (reason: BackupReason) => k8s.types.input.core.v1.Container[];

    constructor(name: string, args: DatabaseBackupArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:kubernetes:DatabaseBackup", name, {}, opts);
        const child = { parent: this };
        const meta = (component: string) => ({ namespace: args.namespace, labels: labels(name, component, MLFLOW_VERSION) });
        this.backupPodSelector = selectorLabels(name, "db-backup");
        this.restorePodSelector = selectorLabels(name, "db-restore");

        const credentials = s3CredentialsSecret(`${name}-s3-credentials`, meta("db-backup"), args.s3, child);
        const serviceAccount = workloadServiceAccount(`${name}-service-account`, BACKUP_SERVICE_ACCOUNT, meta("db-backup"), args.s3, child);
        this.serviceAccountName = serviceAccount.metadata.name;
        const scripts = new k8s.core.v1.ConfigMap(`${name}-scripts`, {
            metadata: meta("db-backup"),
            data: readFiles(BACKUP_SCRIPTS_DIR),
        }, child);
        this.volumes = [
            emptyDir("backup-scratch", args.scratchSize),
            emptyDir("backup-tmp", "64Mi"),
            { name: "backup-scripts", configMap: { name: scripts.metadata.name, defaultMode: 0o555 } },
            ...databaseCaVolumes(args.database),
        ];
        const mounts = [
            { name: "backup-scratch", mountPath: SCRATCH_MOUNT },
            { name: "backup-tmp", mountPath: "/tmp" },
            { name: "backup-scripts", mountPath: SCRIPTS_MOUNT, readOnly: true },
        ];
        const destination = pulumi.output(args.destination).apply(parseS3Uri);
        const sizes = resources(args.scratchSize);
        const common: k8s.types.input.core.v1.EnvVar[] = [
            { name: "BACKUP_DIR", value: `${SCRATCH_MOUNT}/dump` },
            { name: "BACKUP_DATABASES", value: [args.database.trackingDatabase, args.database.authDatabase].join(" ") },
            { name: "HOME", value: "/tmp" },
        ];
        const pgContainer = (containerName: string, command: string, extraEnv: k8s.types.input.core.v1.EnvVar[] = []) => ({
            name: containerName,
            image: POSTGRES_IMAGE,
            imagePullPolicy: "IfNotPresent",
            command: ["bash", `${SCRIPTS_MOUNT}/pg.sh`, command],
            env: [...libpqEnv(args.database), ...common, ...extraEnv],
            resources: sizes.pg,
            // The pod's user: the clients need no account of the image's (PGUSER names the role).
            securityContext: containerSecurityContext(),
            volumeMounts: [...mounts, ...databaseCaMounts(args.database)],
        });
        const s3Container = (containerName: string, command: string, extraEnv: k8s.types.input.core.v1.EnvVar[]) => ({
            name: containerName,
            image: MLFLOW_IMAGE,
            imagePullPolicy: "IfNotPresent",
            command: ["python", `${SCRIPTS_MOUNT}/s3.py`, command],
            env: [
                ...s3Env(credentials, args.s3, "AWS_ENDPOINT_URL_S3"),
                { name: "BACKUP_BUCKET", value: destination.bucket },
                { name: "BACKUP_PREFIX", value: destination.prefix },
                { name: "BACKUP_SSE", value: args.kmsKeyArn === undefined ? "AES256" : "aws:kms" },
                ...(args.kmsKeyArn === undefined ? [] : [{ name: "BACKUP_KMS_KEY_ID", value: args.kmsKeyArn }]),
                ...common,
                { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
                ...extraEnv,
            ],
            resources: sizes.s3,
            securityContext: containerSecurityContext(),
            volumeMounts: mounts,
        });
        this.containers = (reason) => [
            pgContainer("backup-dump", "dump"),
            s3Container("backup-upload", "upload", [{ name: "BACKUP_REASON", value: reason }]),
        ];

        const podSpec = (initContainers: k8s.types.input.core.v1.Container[], containers: k8s.types.input.core.v1.Container[]) => ({
            restartPolicy: "Never",
            serviceAccountName: this.serviceAccountName,
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            securityContext: podSecurityContext(MLFLOW_UID),
            initContainers,
            containers,
            volumes: this.volumes,
        });
        const jobTemplate = (component: string, backoffLimit: number, spec: ReturnType<typeof podSpec>) => ({
            metadata: { labels: labels(name, component, MLFLOW_VERSION) },
            spec: {
                backoffLimit,
                // Long enough for a large database, and well past the image pull timeout.
                activeDeadlineSeconds: 3 * 3600,
                // Every Job reads the Secrets and scripts as they are when it starts: no checksum needed.
                template: { metadata: { labels: labels(name, component, MLFLOW_VERSION) }, spec },
            },
        });

        const backup = new k8s.batch.v1.CronJob(`${name}-cronjob`, {
            metadata: { ...meta("db-backup"), name },
            spec: {
                schedule: args.schedule,
                timeZone: "Etc/UTC",
                // Two dumps at once would only slow each other down.
                concurrencyPolicy: "Forbid",
                // A missed slot (controller down) still runs within the hour, not days later.
                startingDeadlineSeconds: 3600,
                successfulJobsHistoryLimit: 3,
                failedJobsHistoryLimit: 3,
                jobTemplate: jobTemplate("db-backup", 2, podSpec(...splitLast(this.containers("scheduled")))),
            },
        }, child);

        const restore = new k8s.batch.v1.CronJob(`${name}-restore`, {
            metadata: {
                ...meta("db-restore"),
                name: `${name}-restore`,
                annotations: { "mlflow-k8s/purpose": "Template of restore Jobs: never scheduled. Run `npm run restore -- --stack <stack>`." },
            },
            spec: {
                // Suspended for good: the schedule is required by the API, never used.
                suspend: true,
                schedule: "0 0 1 1 *",
                startingDeadlineSeconds: 60,
                timeZone: "Etc/UTC",
                concurrencyPolicy: "Forbid",
                successfulJobsHistoryLimit: 1,
                failedJobsHistoryLimit: 1,
                // A failed restore is looked at, not retried over a half-restored database.
                jobTemplate: jobTemplate("db-restore", 0, podSpec(
                    [s3Container("fetch", "fetch", [{ name: "BACKUP_ID", value: "latest" }])],
                    [pgContainer("restore", "restore", [
                        { name: "RESTORE_FORCE", value: "false" },
                        ...(args.superuserPasswordKey === undefined ? [] : [
                            { name: "POSTGRES_USER", value: SUPERUSER },
                            { name: "POSTGRES_PASSWORD", valueFrom: { secretKeyRef: { name: args.database.secretName, key: args.superuserPasswordKey } } },
                        ]),
                    ])],
                )),
            },
        }, child);

        this.cronJobName = backup.metadata.name;
        this.restoreCronJobName = restore.metadata.name;
        this.registerOutputs({ cronJobName: this.cronJobName, restoreCronJobName: this.restoreCronJobName });
    }

    /**
     * The init containers that take a backup (reason `pre-migration`) before a pod's own
     * containers run; the pod must mount {@link volumes} too.
     */
    preMigrationBackup(): k8s.types.input.core.v1.Container[] {
        return this.containers("pre-migration");
    }
}

/** A pod's steps as init containers and the last, main container. */
function splitLast<T>(steps: T[]): [T[], T[]] {
    return [steps.slice(0, -1), steps.slice(-1)];
}

/** Bucket and key prefix of an `s3://bucket/prefix` URI. */
export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
    const m = /^s3:\/\/([^/]+)\/(.+?)\/?$/.exec(uri);
    if (m === null) {
        throw new Error(`not an s3://bucket/prefix URI: ${uri}`);
    }
    return { bucket: m[1]!, prefix: m[2]! };
}
