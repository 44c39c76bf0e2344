/**
 * MLflow on Kubernetes: config in, components, outputs.
 *
 *   config ──► DataGuard (refuses changes that would replace or strand data)
 *          ──► ArtifactStore (S3 bucket, IAM users, access keys)  [AWS]
 *          ──► Namespace (Pod Security: restricted)               [Kubernetes]
 *          ──► Postgres (credentials, volume claim, StatefulSet)  [Kubernetes]
 *              or ExternalDatabase (login Secret, CA; over TLS)
 *          ──► DatabaseBackup (backup CronJob, restore template)  [Kubernetes]
 *          ──► MlflowTrackingServer (S3 Secret, schema rollout    [Kubernetes]
 *              (writers stopped when the schema changes),
 *              migration Job with a backup first, Deployment,
 *              mlflow-service,
 *              an Ingress or an HTTPRoute, a ServiceMonitor,
 *              with gcSchedule the garbage collection CronJob)
 *          ──► ModelServer per servedModels entry (its MLflow     [Kubernetes]
 *              user, a Deployment serving the model, a Service)
 *          ──► NetworkPolicies (default deny; only the flows       [Kubernetes]
 *              the components need)
 */
import * as pulumi from "@pulumi/pulumi";
import { ArtifactStore } from "./components/artifactStore";
import { loadConfig, loadDatabasePassword } from "./components/config";
import { DataGuard } from "./components/dataGuard";
import { ExternalDatabase } from "./components/externalDatabase";
import { BACKUP_SERVICE_ACCOUNT, DatabaseBackup } from "./components/databaseBackup";
import { NetworkPolicies } from "./components/networkPolicies";
import { createNamespace, createProviders } from "./components/platform";
import { Postgres, SECRET_KEYS } from "./components/postgres";
import { POSTGRES_MAJOR } from "./components/versions";
import { s3AccessOf } from "./components/s3Credentials";
import { ModelServer, ServingCredentials } from "./components/modelServer";
import { podOverridesTransformation } from "./components/podOverrides";
import { publicEndpoint, publicUrl } from "./components/publishing";
import { MlflowTrackingServer, SERVER_SERVICE_ACCOUNT } from "./components/trackingServer";

const config = loadConfig();
const stack = pulumi.getStack();
const providers = createProviders("mlflow", config);

// Everything that holds data waits for the guard, which fails preview and update alike when a
// change would replace or strand it.
// An external database holds the metadata outside the cluster: nothing of the data depends on the
// cluster-side settings then.
const inCluster = config.database.mode === "inCluster";
const guard = new DataGuard("mlflow-data-guard", {
    databaseMode: config.database.mode,
    kubeContext: inCluster ? config.kubeContext : "",
    namespace: inCluster ? config.namespace : "",
    postgresStorageClass: inCluster ? config.postgres.storageClass ?? "" : "",
    postgresStorageSize: inCluster ? config.postgres.storageSize : "",
    postgresMajor: inCluster ? POSTGRES_MAJOR : "",
    awsRegion: config.aws.region,
    awsEndpoint: config.aws.endpoint ?? "",
    bucketPrefix: config.artifacts.bucketPrefix,
    artifactPrefix: config.artifacts.artifactPrefix,
    backupPrefix: config.backup.prefix,
});

const artifacts = new ArtifactStore("mlflow-artifacts", {
    bucketPrefix: config.artifacts.bucketPrefix,
    artifactPrefix: config.artifacts.artifactPrefix,
    forceDestroy: config.artifacts.forceDestroy,
    kmsKeyArn: config.artifacts.kmsKeyArn,
    region: config.aws.region,
    noncurrentVersionExpirationDays: config.artifacts.noncurrentVersionExpirationDays,
    backupPrefix: config.backup.prefix,
    backupRetentionDays: config.backup.retentionDays,
    protect: config.protectData,
    bucketDependsOn: [guard],
    credentials: config.aws.credentials,
    workloads: {
        server: { namespace: config.namespace, serviceAccount: SERVER_SERVICE_ACCOUNT },
        backup: { namespace: config.namespace, serviceAccount: BACKUP_SERVICE_ACCOUNT },
    },
    tags: { "mlflow-k8s:stack": stack },
}, { providers: { aws: providers.aws } });

// The namespace holds the database volume: it is kept whenever the volume is.
const keepVolume = config.protectData || config.postgres.volumeRetention === "Retain";
const namespace = createNamespace("mlflow-namespace", config.namespace, providers.kubernetes,
    { dependsOn: [guard], protect: config.protectData, retainOnDelete: keepVolume });
// The escape hatches (extra env, pull secrets, a mirror, placement, pod metadata) reach every pod
// any component makes through one transformation.
const k8sOpts = { providers: { kubernetes: providers.kubernetes }, dependsOn: [namespace], transformations: [podOverridesTransformation(config.pods)] };

const external = config.database.mode === "external" ? config.database : undefined;
const postgres = external !== undefined ? undefined : new Postgres("mlflow-postgres", {
    namespace: namespace.metadata.name,
    claimDependsOn: [guard],
    storageSize: config.postgres.storageSize,
    storageClass: config.postgres.storageClass,
    volumeRetention: config.postgres.volumeRetention,
    maxConnections: config.postgres.maxConnections,
    resources: config.postgres.resources,
    protect: config.protectData,
}, k8sOpts);
const externalDatabase = external === undefined ? undefined : new ExternalDatabase("mlflow-database", {
    namespace: namespace.metadata.name,
    database: external,
    password: external.credentials.source === "config" ? loadDatabasePassword() : undefined,
}, k8sOpts);
const database = (postgres ?? externalDatabase)!;

const backup = new DatabaseBackup("mlflow-db-backup", {
    namespace: namespace.metadata.name,
    database: database.connection,
    // An external database's operators create its databases; a restore never needs a superuser there.
    superuserPasswordKey: postgres === undefined ? undefined : SECRET_KEYS.superuserPassword,
    schedule: config.backup.schedule,
    destination: artifacts.backupUri,
    s3: s3AccessOf(artifacts.backupIdentity, config.aws.credentials, config.aws.region, config.aws.endpoint),
    kmsKeyArn: config.artifacts.kmsKeyArn,
    scratchSize: config.postgres.storageSize,
}, { ...k8sOpts, dependsOn: [namespace, database] });

// Each served model's MLflow user: its password first, so the migration Job can create the user.
const servingCredentials = config.servedModels.map((m) => new ServingCredentials(`mlflow-model-${m.name}`, {
    namespace: namespace.metadata.name, model: m,
}, k8sOpts));
if (config.servedModels.length > 0 && config.mlflow.defaultPermission !== "NO_PERMISSIONS") {
    pulumi.log.warn(`mlflowDefaultPermission is ${config.mlflow.defaultPermission}: the model servers' users (like every user) may read `
        + "every experiment and model, not only their own. Set it to NO_PERMISSIONS for least privilege (README, \"Serving models\").");
}

const server = new MlflowTrackingServer("mlflow", {
    namespace: namespace.metadata.name,
    artifactsDestination: artifacts.artifactUri,
    s3: s3AccessOf(artifacts.serverIdentity, config.aws.credentials, config.aws.region, config.aws.endpoint),
    database: database.connection,
    databasePassword: database.password,
    preMigrationBackup: { initContainers: backup.preMigrationBackup(), volumes: backup.volumes, serviceAccountName: backup.serviceAccountName },
    replicas: config.mlflow.replicas,
    maxReplicas: config.mlflow.maxReplicas,
    workers: config.mlflow.workers,
    dbPool: { size: config.mlflow.dbPoolSize, maxOverflow: config.mlflow.dbMaxOverflow },
    requestLimits: config.mlflow.requestLimits,
    resources: config.mlflow.resources,
    adminUsername: config.mlflow.adminUsername,
    defaultPermission: config.mlflow.defaultPermission,
    authCacheTtlSeconds: config.mlflow.authCacheTtlSeconds,
    ingress: config.mlflow.ingress,
    httpRoute: config.mlflow.httpRoute,
    serviceMonitor: config.monitoring.serviceMonitor,
    staticPrefix: config.mlflow.staticPrefix,
    corsAllowedOrigins: config.mlflow.corsAllowedOrigins,
    servingUsers: servingCredentials.map((c) => c.user),
    gc: config.gc.schedule === undefined ? undefined : { schedule: config.gc.schedule, olderThan: config.gc.olderThan },
    writerCronJobs: [backup.cronJobName],
    telemetry: config.mlflow.telemetry,
}, { ...k8sOpts, dependsOn: [namespace, database] });

// The model servers download their model through the tracking server: they start once it serves.
const modelServers = config.servedModels.map((m, i) => new ModelServer(`mlflow-model-${m.name}`, {
    namespace: namespace.metadata.name,
    model: m,
    trackingUri: server.internalUri,
    credentials: servingCredentials[i]!,
}, { ...k8sOpts, dependsOn: [namespace, server] }));

new NetworkPolicies("mlflow-network", {
    namespace: namespace.metadata.name,
    database: postgres !== undefined
        ? { podSelector: postgres.podSelector, port: postgres.port }
        : { cidrs: external!.egressCidrs, port: external!.port },
    trackingServer: { podSelector: server.podSelector, port: server.containerPort, metricsPort: server.metricsPort },
    migration: { podSelector: server.migrationPodSelector },
    schemaRollout: { podSelector: server.rolloutPodSelector, apiServer: config.network.apiServer },
    backup: { podSelector: backup.backupPodSelector },
    restore: { podSelector: backup.restorePodSelector },
    servingGrants: config.servedModels.length > 0 ? { podSelector: server.servingGrantsPodSelector } : undefined,
    gc: config.gc.schedule === undefined ? undefined : { podSelector: server.gcPodSelector },
    modelServers: config.servedModels.map((m, i) => ({ name: m.name, podSelector: modelServers[i]!.podSelector, port: modelServers[i]!.containerPort })),
    s3Endpoint: config.aws.endpoint,
    ingressControllerNamespace: config.mlflow.ingress || config.mlflow.httpRoute ? config.network.ingressControllerNamespace : undefined,
    sourceRanges: config.network.sourceRanges,
    nodeLocalDnsAddress: config.network.nodeLocalDnsAddress,
    podIdentityAgent: config.aws.credentials.mode === "podIdentity",
}, k8sOpts);

const localPort = 8080;
export const kubeContext = config.kubeContext;
export const namespaceName = namespace.metadata.name;
export const serviceName = server.serviceName;
export const portForwardCommand = pulumi.interpolate`kubectl --context ${config.kubeContext} -n ${namespace.metadata.name} port-forward service/${server.serviceName} ${localPort}:${server.servicePort}`;
export const localUrl = `http://localhost:${localPort}${config.mlflow.staticPrefix ?? ""}`;
export const internalTrackingUri = server.internalUri;
/** The URL through the Ingress or the HTTPRoute; empty when there is neither. */
export const ingressUrl = publicUrl(publicEndpoint(config.mlflow.ingress, config.mlflow.httpRoute), config.mlflow.staticPrefix);
export const adminUsername = server.adminUsername;
export const adminPassword = server.adminPassword;
export const bucketName = artifacts.bucketName;
export const artifactUri = artifacts.artifactUri;
/** The server's IAM user (accessKey mode) or role (podIdentity, irsa); the other one is empty. */
export const iamUserName = artifacts.serverIdentity.userName;
export const iamRoleArn = artifacts.serverIdentity.roleArn;
/** The in-cluster Service's name, or the external database's host. */
export const postgresHost = pulumi.output(database.host);
export const backupUri = artifacts.backupUri;
export const backupStatusCommand = pulumi.interpolate`kubectl --context ${config.kubeContext} -n ${namespace.metadata.name} get cronjob ${backup.cronJobName} -o jsonpath='{.status.lastSuccessfulTime}'`;
export const restoreCommand = `npm run restore -- --stack ${stack}`;
/**
 * What the schema rollout and the migration did on the last update (the quiesce, migration and resume
 * Jobs' last lines): after a failed `pulumi up`, the reason.
 */
export const upgradeLogsCommand = pulumi.interpolate`kubectl --context ${config.kubeContext} -n ${namespace.metadata.name} logs -l 'app.kubernetes.io/name in (schema-rollout,db-migration)' --all-containers --prefix --tail=20`;
/** Per served model: its in-cluster scoring URL and a port-forward command to reach it from a laptop. */
export const modelEndpoints = pulumi.all(config.servedModels.map((m, i) => pulumi.all([modelServers[i]!.invocationsUrl, modelServers[i]!.serviceName])
    .apply(([url, service]) => [m.name, {
        model: m.modelUri,
        invocationsUrl: url,
        portForwardCommand: `kubectl --context ${config.kubeContext} -n ${config.namespace} port-forward service/${service} 8081:80`,
    }] as const))).apply((entries) => Object.fromEntries(entries));
