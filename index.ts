/**
 * MLflow on Kubernetes: config in, components, outputs.
 *
 *   config ──► ArtifactStore (S3 bucket, IAM user, access key)   [AWS]
 *          ──► Namespace (Pod Security: restricted)              [Kubernetes]
 *          ──► Postgres (credentials Secret, StatefulSet)        [Kubernetes]
 *          ──► MlflowTrackingServer (S3 Secret, migration Job,   [Kubernetes]
 *              Deployment, mlflow-service)
 *          ──► NetworkPolicies (default deny; only the flows      [Kubernetes]
 *              the components need)
 */
import * as pulumi from "@pulumi/pulumi";
import { ArtifactStore } from "./components/artifactStore";
import { loadConfig } from "./components/config";
import { DEFAULT_INGRESS_CONTROLLER_NAMESPACE, NetworkPolicies } from "./components/networkPolicies";
import { createNamespace, createProviders } from "./components/platform";
import { Postgres, SECRET_KEYS } from "./components/postgres";
import { MlflowTrackingServer } from "./components/trackingServer";

const config = loadConfig();
const stack = pulumi.getStack();
const providers = createProviders("mlflow", config);

const artifacts = new ArtifactStore("mlflow-artifacts", {
    bucketPrefix: config.artifacts.bucketPrefix,
    artifactPrefix: config.artifacts.artifactPrefix,
    forceDestroy: config.artifacts.forceDestroy,
    kmsKeyArn: config.artifacts.kmsKeyArn,
    noncurrentVersionExpirationDays: config.artifacts.noncurrentVersionExpirationDays,
    protect: config.protectData,
    tags: { "mlflow-k8s:stack": stack },
}, { providers: { aws: providers.aws } });

const namespace = createNamespace("mlflow-namespace", config.namespace, providers.kubernetes);
const k8sOpts = { providers: { kubernetes: providers.kubernetes }, dependsOn: [namespace] };

const postgres = new Postgres("mlflow-postgres", {
    namespace: namespace.metadata.name,
    storageSize: config.postgres.storageSize,
    storageClass: config.postgres.storageClass,
    volumeRetention: config.postgres.volumeRetention,
    maxConnections: config.postgres.maxConnections,
    resources: config.postgres.resources,
    protect: config.protectData,
}, k8sOpts);

const server = new MlflowTrackingServer("mlflow", {
    namespace: namespace.metadata.name,
    artifactsDestination: artifacts.artifactUri,
    s3: {
        accessKeyId: artifacts.accessKeyId,
        secretAccessKey: artifacts.secretAccessKey,
        region: config.aws.region,
        endpoint: config.aws.endpoint,
    },
    database: {
        host: postgres.host,
        port: postgres.port,
        trackingDatabase: postgres.trackingDatabase,
        authDatabase: postgres.authDatabase,
        secretName: postgres.secretName,
        usernameKey: SECRET_KEYS.username,
        passwordKey: SECRET_KEYS.password,
    },
    replicas: config.mlflow.replicas,
    maxReplicas: config.mlflow.maxReplicas,
    workers: config.mlflow.workers,
    dbPool: { size: config.mlflow.dbPoolSize, maxOverflow: config.mlflow.dbMaxOverflow },
    resources: config.mlflow.resources,
    adminUsername: config.mlflow.adminUsername,
    defaultPermission: config.mlflow.defaultPermission,
    ingress: config.mlflow.ingress,
}, { ...k8sOpts, dependsOn: [namespace, postgres] });

new NetworkPolicies("mlflow-network", {
    namespace: namespace.metadata.name,
    postgres: { podSelector: postgres.podSelector, port: postgres.port },
    trackingServer: { podSelector: server.podSelector, port: server.containerPort },
    migration: { podSelector: server.migrationPodSelector },
    s3Endpoint: config.aws.endpoint,
    ingressControllerNamespace: config.mlflow.ingress ? DEFAULT_INGRESS_CONTROLLER_NAMESPACE : undefined,
}, k8sOpts);

const localPort = 8080;
export const kubeContext = config.kubeContext;
export const namespaceName = namespace.metadata.name;
export const serviceName = server.serviceName;
export const portForwardCommand = pulumi.interpolate`kubectl --context ${config.kubeContext} -n ${namespace.metadata.name} port-forward service/${server.serviceName} ${localPort}:${server.servicePort}`;
export const localUrl = `http://localhost:${localPort}`;
export const internalTrackingUri = server.internalUri;
export const ingressUrl = config.mlflow.ingress
    ? `${config.mlflow.ingress.tlsSecretName ? "https" : "http"}://${config.mlflow.ingress.host}`
    : undefined;
export const adminUsername = server.adminUsername;
export const adminPassword = server.adminPassword;
export const bucketName = artifacts.bucketName;
export const artifactUri = artifacts.artifactUri;
export const iamUserName = artifacts.userName;
export const postgresHost = postgres.host;
