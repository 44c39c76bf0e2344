/**
 * The replacement guard: no change of a config key or of a pinned version may replace or delete
 * what holds data (the database volume, its namespace, the bucket), unless the data guard refuses
 * that change before anything is touched. The program runs once per change; the replace-only
 * fields of the data holders are diffed against the providers' tables (test/support/replaceOnly.ts).
 */
import { expect } from "chai";
import { PROJECT, STRUCTURED_KEYS } from "../components/config";
import { dataIdentityProblems } from "../components/dataGuard";
import * as versions from "../components/versions";
import { ProgramRun, RunOptions, projectSchema, runProgram, stackRun } from "./harness";
import { Replacement, dataReplacements, holdsData, replaceOnlyPaths } from "./support/replaceOnly";

type Change = Readonly<Record<string, string | number | boolean>>;

/**
 * Values each config key is changed to, one key at a time from the minikube stack, across its
 * allowed range (both ends where it has them). Keys that only make sense together change together.
 */
/** What an external database needs with it (its password passes as a secret, as the CLI would). */
const EXTERNAL_DB: Change = {
    databaseMode: "external", databaseHost: "10.0.40.7", databaseUsername: "mlflow_app", databasePassword: "replacement-spec-only",
    databaseSslMode: "require", databaseMaxConnections: 400,
};
const TEST_CA = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";

/**
 * Changes of the keys that exist for an external database, each judged from a stack already on
 * one ({@link EXTERNAL_DB}): moving there from the in-cluster database is `databaseMode`'s change.
 */
export const EXTERNAL_CONFIG_CHANGES: Readonly<Record<string, readonly Change[]>> = {
    databaseHost: [{ databaseHost: "mlflow.cluster-abc123.eu-west-1.rds.amazonaws.com", databaseEgressCidrs: "10.0.32.0/20" }],
    databasePort: [{ databasePort: 1 }, { databasePort: 65535 }],
    databaseName: [{ databaseName: "tracking" }],
    databaseAuthName: [{ databaseAuthName: "users" }],
    databaseUsername: [{ databaseUsername: "other_role" }],
    databasePassword: [{ databasePassword: "another-replacement-spec-value" }],
    databaseExistingSecret: [{ databaseUsername: "", databasePassword: "", databaseExistingSecret: "rds-login" }],
    databaseSslMode: [{ databaseSslMode: "verify-ca", databaseCaCertificate: TEST_CA }],
    databaseCaCertificate: [{ databaseSslMode: "verify-full", databaseCaCertificate: TEST_CA }],
    databaseEgressCidrs: [{ databaseEgressCidrs: "10.0.0.0/8,fd00::/8" }],
    databaseMaxConnections: [{ databaseMaxConnections: 100000 }],
};

export const CONFIG_CHANGES: Readonly<Record<string, readonly Change[]>> = {
    databaseMode: [EXTERNAL_DB],
    // Read but unused by the in-cluster database.
    databasePort: [{ databasePort: 6432 }],
    databaseName: [{ databaseName: "tracking" }],
    databaseSslMode: [{ databaseSslMode: "require" }],
    kubeContext: [{ kubeContext: "other-cluster" }],
    kubeconfig: [{ kubeconfig: "/home/operator/.kube/other-config" }],
    awsCredentials: [{ awsCredentials: "podIdentity", eksClusterName: "dev" }],
    awsAccessKeyGeneration: [{ awsAccessKeyGeneration: 2 }],
    eksClusterName: [{ awsCredentials: "podIdentity", eksClusterName: "other-cluster" }],
    eksOidcProviderArn: [{ awsCredentials: "irsa", eksOidcProviderArn: "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE" }],
    namespace: [{ namespace: "mlflow-prod" }],
    awsRegion: [{ awsRegion: "eu-west-3" }],
    awsEndpoint: [{ awsEndpoint: "http://127.0.0.1:5000" }, { awsEndpoint: "https://minio.example.com" }],
    bucketPrefix: [{ bucketPrefix: "mlflow-renamed-" }],
    artifactPrefix: [{ artifactPrefix: "artifacts" }, { artifactPrefix: "teams/data-science" }],
    bucketForceDestroy: [{ bucketForceDestroy: false }],
    bucketKmsKeyArn: [{ bucketKmsKeyArn: "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab" }],
    noncurrentVersionExpirationDays: [{ noncurrentVersionExpirationDays: 1 }, { noncurrentVersionExpirationDays: 3650 }],
    protectData: [{ protectData: true }],
    postgresStorageSize: [{ postgresStorageSize: "1Gi" }, { postgresStorageSize: "500Gi" }],
    postgresStorageClass: [{ postgresStorageClass: "fast-ssd" }],
    postgresVolumeRetention: [{ postgresVolumeRetention: "Retain" }],
    postgresMaxConnections: [{ postgresMaxConnections: 210 }, { postgresMaxConnections: 10000, postgresMemoryLimit: "48Gi" }],
    postgresCpuRequest: [{ postgresCpuRequest: "1m" }, { postgresCpuRequest: "1" }],
    postgresCpuLimit: [{ postgresCpuLimit: "16" }],
    postgresMemoryRequest: [{ postgresMemoryRequest: "64Mi" }, { postgresMemoryRequest: "1Gi" }],
    postgresMemoryLimit: [{ postgresMemoryLimit: "64Gi" }],
    mlflowReplicas: [{ mlflowReplicas: 4, postgresMaxConnections: 810, postgresMemoryLimit: "3Gi" }],
    mlflowMaxReplicas: [{ mlflowMaxReplicas: 4, postgresMaxConnections: 810, postgresMemoryLimit: "3Gi" }],
    mlflowWorkers: [{ mlflowWorkers: 1 }, { mlflowWorkers: 4, mlflowCpuLimit: "4", mlflowMemoryLimit: "3Gi", postgresMaxConnections: 410, postgresMemoryLimit: "2Gi" }],
    mlflowDbPoolSize: [{ mlflowDbPoolSize: 1, mlflowDbMaxOverflow: 36 }, { mlflowDbPoolSize: 20, mlflowDbMaxOverflow: 36, postgresMaxConnections: 330, postgresMemoryLimit: "2Gi" }],
    mlflowDbMaxOverflow: [{ mlflowDbPoolSize: 5, mlflowDbMaxOverflow: 0 }, { mlflowDbPoolSize: 5, mlflowDbMaxOverflow: 100 }],
    mlflowCpuRequest: [{ mlflowCpuRequest: "1m" }],
    mlflowCpuLimit: [{ mlflowCpuLimit: "16" }],
    mlflowMemoryRequest: [{ mlflowMemoryRequest: "1Mi" }],
    mlflowMemoryLimit: [{ mlflowMemoryLimit: "64Gi" }],
    mlflowAdminUsername: [{ mlflowAdminUsername: "platform-admin" }],
    mlflowDefaultPermission: [{ mlflowDefaultPermission: "NO_PERMISSIONS" }, { mlflowDefaultPermission: "MANAGE" }],
    mlflowAuthCacheTtlSeconds: [{ mlflowAuthCacheTtlSeconds: 0 }, { mlflowAuthCacheTtlSeconds: 300 }],
    mlflowTelemetry: [{ mlflowTelemetry: true }],
    mlflowMaxRequestBodySize: [{ mlflowMaxRequestBodySize: "64Ki" }],
    mlflowMaxUploadSize: [{ mlflowMaxUploadSize: "1Mi" }, { mlflowMaxUploadSize: "4Gi" }],
    mlflowRequestBodyBudget: [{ mlflowRequestBodyBudget: "64Ki", mlflowMaxRequestBodySize: "64Ki" }],
    mlflowMaxConcurrentRequests: [{ mlflowMaxConcurrentRequests: 1 }, { mlflowMaxConcurrentRequests: 1000 }],
    mlflowRequestBodyTimeoutSeconds: [{ mlflowRequestBodyTimeoutSeconds: 1 }, { mlflowRequestBodyTimeoutSeconds: 3600 }],
    ingressHost: [{ ingressHost: "mlflow.example.com" }],
    ingressClassName: [{ ingressHost: "mlflow.example.com", ingressClassName: "nginx" }],
    ingressTlsSecretName: [{ ingressHost: "mlflow.example.com", ingressTlsSecretName: "mlflow-tls" }],
    backupSchedule: [{ backupSchedule: "@hourly" }, { backupSchedule: "0 0 1 1 *" }],
    backupRetentionDays: [{ backupRetentionDays: 1 }, { backupRetentionDays: 3650 }],
    backupPrefix: [{ backupPrefix: "db-backups" }],
    gcSchedule: [{ gcSchedule: "@daily" }, { gcSchedule: "*/15 * * * *" }],
    gcOlderThan: [{ gcSchedule: "@daily", gcOlderThan: "1h" }, { gcSchedule: "@daily", gcOlderThan: "3650d" }],
    corsAllowedOrigins: [{ corsAllowedOrigins: "https://notebooks.example.com,http://localhost:3000" }],
    ingressControllerNamespace: [{ ingressHost: "mlflow.example.com", ingressControllerNamespace: "traefik" }],
    ingressSourceRanges: [{ ingressSourceRanges: "10.0.0.0/16,fd00::/8" }],
    nodeLocalDnsAddress: [{ nodeLocalDnsAddress: "" }, { nodeLocalDnsAddress: "169.254.25.10" }],
    // Where the schema rollout's Jobs reach the API server: their NetworkPolicy only.
    kubeApiServerCidrs: [{ kubeApiServerCidrs: "192.168.49.2/32" }, { kubeApiServerCidrs: "10.0.0.0/8,fd00::/8" }],
    kubeApiServerPort: [{ kubeApiServerPort: 1 }, { kubeApiServerPort: 65535 }],
    servedModels: [
        { servedModels: JSON.stringify([{ name: "iris", model: "models:/iris@champion" }]) },
        { servedModels: JSON.stringify([{ name: "iris", model: "models:/iris/7", minReplicas: 2, maxReplicas: 5 }, { name: "churn", model: "models:/churn@prod" }]) },
    ],
    // Publishing through a Gateway instead of an Ingress, the Ingress's annotations, a ServiceMonitor.
    ingressAnnotations: [
        { ingressHost: "mlflow.example.com", ingressAnnotations: JSON.stringify({ "traefik.ingress.kubernetes.io/router.entrypoints": "websecure" }) },
        { ingressHost: "mlflow.example.com", ingressAnnotations: "{}" },
    ],
    gatewayName: [{ ingressHost: "mlflow.example.com", gatewayName: "shared" }],
    gatewayNamespace: [{ ingressHost: "mlflow.example.com", gatewayName: "shared", gatewayNamespace: "gateway-system" }],
    gatewaySectionName: [{ ingressHost: "mlflow.example.com", gatewayName: "shared", gatewaySectionName: "https" }],
    gatewayScheme: [{ ingressHost: "mlflow.example.com", gatewayName: "shared", gatewayScheme: "http" }],
    gatewayRequestTimeout: [{ ingressHost: "mlflow.example.com", gatewayName: "shared", gatewayRequestTimeout: "0s" }],
    serviceMonitor: [{ serviceMonitor: true }],
    mlflowStaticPrefix: [{ mlflowStaticPrefix: "/mlflow" }, { ingressHost: "mlflow.example.com", mlflowStaticPrefix: "/tools/mlflow" }],
    serviceMonitorLabels: [{ serviceMonitor: true, serviceMonitorLabels: JSON.stringify({ release: "kube-prometheus-stack" }) }],
    // The escape hatches change every pod template, PostgreSQL's included: a rolling update, never a new claim.
    extraEnv: [
        { extraEnv: JSON.stringify([{ name: "HTTPS_PROXY", value: "http://proxy.example.com:3128" }]) },
        { extraEnv: JSON.stringify([{ name: "SENTRY_DSN", secretName: "observability", secretKey: "dsn" }]) },
    ],
    imagePullSecrets: [{ imagePullSecrets: "registry-credentials,mirror-credentials" }],
    imageMirrors: [
        { imageMirrors: JSON.stringify({ "ghcr.io": "registry.example.com/ghcr", "docker.io": "registry.example.com/dockerhub" }) },
        { imageMirrors: JSON.stringify({ "docker.io": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub" }) },
    ],
    nodeSelector: [{ nodeSelector: JSON.stringify({ "node.example.com/pool": "ml" }) }],
    tolerations: [{ tolerations: JSON.stringify([{ key: "dedicated", operator: "Equal", value: "ml", effect: "NoSchedule" }]) }],
    topologySpreadConstraints: [{ topologySpreadConstraints: JSON.stringify([{ maxSkew: 1, topologyKey: "kubernetes.io/hostname", whenUnsatisfiable: "DoNotSchedule" }]) }],
    podAnnotations: [{ podAnnotations: JSON.stringify({ "example.com/team": "ml-platform" }) }],
    podLabels: [{ podLabels: JSON.stringify({ team: "ml-platform", "cost-center": "4711" }) }],
};

/** Bumps of the pinned versions in components/versions.ts, each with the values derived from it. */
export const VERSION_BUMPS: Readonly<Record<string, ReadonlyArray<Readonly<Record<string, string>>>>> = {
    MLFLOW_VERSION: [
        { MLFLOW_VERSION: "3.17.3", MLFLOW_IMAGE: "ghcr.io/mlflow/mlflow:v3.17.3-full" },
        { MLFLOW_VERSION: "3.18.0", MLFLOW_IMAGE: "ghcr.io/mlflow/mlflow:v3.18.0-full" },
        { MLFLOW_VERSION: "4.0.0", MLFLOW_IMAGE: "ghcr.io/mlflow/mlflow:v4.0.0-full" },
    ],
    POSTGRES_VERSION: [
        { POSTGRES_VERSION: "17.7", POSTGRES_IMAGE: "docker.io/library/postgres:17.7-bookworm" },
        { POSTGRES_VERSION: "18.1", POSTGRES_MAJOR: "18", POSTGRES_IMAGE: "docker.io/library/postgres:18.1-bookworm" },
    ],
};

/** One tried change and what came of it. */
interface Outcome {
    readonly change: string;
    readonly replaced: readonly Replacement[];
    readonly refusedBy: readonly string[];
}

const describeReplacements = (replaced: readonly Replacement[]) =>
    replaced.map((r) => `${r.type} ${r.resource}: ${r.fields.join(", ")}`).join("; ");

/**
 * Runs the program with a change and judges it: every data holder keeps its replace-only fields,
 * or the data guard (fed the baseline's and the change's settings) refuses the change.
 */
async function judge(base: ProgramRun, label: string, overrides: Change, options: RunOptions = {}): Promise<Outcome> {
    const run = await runProgram("minikube", overrides, options);
    const replaced = dataReplacements(base, run);
    const guard = (r: ProgramRun) => r.resources.find((x) => x.type === "pulumi-nodejs:dynamic:DataGuard");
    const [before, after] = [guard(base), guard(run)];
    const refusedBy = before && after ? dataIdentityProblems(before.inputs, after.inputs) : [];
    return { change: label, replaced, refusedBy };
}

const outcomes: Outcome[] = [];

describe("replacement guard: no config or version change replaces what holds data", function () {
    this.timeout(120000);
    let base: ProgramRun;
    before(async () => {
        base = await stackRun("minikube");
    });
    after(() => {
        if (outcomes.length > 0) {
            const refused = outcomes.filter((o) => o.refusedBy.length > 0).length;
            console.log(`      ${outcomes.length} changes tried: ${outcomes.length - refused} keep every data holder, ${refused} refused by the data guard`);
        }
    });

    it("knows what holds data in this program: the database volume claim, its namespace, the bucket", () => {
        expect(base.resources.filter(holdsData).map((r) => r.type).sort()).to.deep.equal([
            "aws:s3/bucket:Bucket", "kubernetes:core/v1:Namespace", "kubernetes:core/v1:PersistentVolumeClaim",
        ]);
        expect(replaceOnlyPaths("kubernetes:core/v1:PersistentVolumeClaim")).to.include("spec.storageClassName");
    });

    it("has a change for every config key and a bump for every pinned version", () => {
        const keys = new Set([...Object.keys(CONFIG_CHANGES), ...Object.keys(EXTERNAL_CONFIG_CHANGES)]);
        expect([...keys].sort()).to.deep.equal([...Object.keys(projectSchema()), ...STRUCTURED_KEYS].sort());
        const pinned = Object.keys(versions).filter((k) => k.endsWith("_VERSION"));
        expect(Object.keys(VERSION_BUMPS).sort()).to.deep.equal(pinned.sort());
    });

    for (const [key, changes] of Object.entries(CONFIG_CHANGES)) {
        for (const change of changes) {
            const label = Object.entries(change).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
            it(`${label}: keeps the data holders, or is refused naming ${key}`, async () => {
                const outcome = await judge(base, label, change);
                outcomes.push(outcome);
                if (outcome.replaced.length > 0) {
                    expect(outcome.refusedBy.join("\n"), `replaces ${describeReplacements(outcome.replaced)}, and nothing refuses it`)
                        .to.include(`${PROJECT}:${key}`);
                }
            });
        }
    }

    describe("on an external database", () => {
        let externalBase: ProgramRun;
        before(async () => {
            externalBase = await runProgram("minikube", EXTERNAL_DB);
        });
        for (const [key, changes] of Object.entries(EXTERNAL_CONFIG_CHANGES)) {
            for (const change of changes) {
                const label = Object.entries(change).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
                it(`${label}: keeps the data holders, or is refused naming ${key}`, async () => {
                    const outcome = await judge(externalBase, `external: ${label}`, { ...EXTERNAL_DB, ...change });
                    outcomes.push(outcome);
                    // The data is outside the cluster and the bucket stays: nothing to replace, nothing to refuse.
                    expect(outcome.replaced, describeReplacements(outcome.replaced)).to.deep.equal([]);
                    expect(outcome.refusedBy).to.deep.equal([]);
                });
            }
        }
    });

    for (const [name, bumps] of Object.entries(VERSION_BUMPS)) {
        for (const bump of bumps) {
            const label = Object.entries(bump).map(([k, v]) => `${k}=${v}`).join(", ");
            it(`${label}: keeps the data holders, or is refused`, async () => {
                const outcome = await judge(base, label, {}, { versions: bump });
                outcomes.push(outcome);
                if (outcome.replaced.length > 0) {
                    expect(outcome.refusedBy, `${name}: replaces ${describeReplacements(outcome.replaced)}, and nothing refuses it`).to.not.be.empty;
                }
            });
        }
    }

    it("is refused exactly where data would be lost or stranded, and only there", () => {
        const refused = outcomes.filter((o) => o.refusedBy.length > 0).map((o) => o.change);
        expect(refused).to.have.members([
            'kubeContext="other-cluster"', 'namespace="mlflow-prod"', 'awsRegion="eu-west-3"',
            'awsEndpoint="http://127.0.0.1:5000"', 'awsEndpoint="https://minio.example.com"', 'bucketPrefix="mlflow-renamed-"',
            'artifactPrefix="artifacts"', 'artifactPrefix="teams/data-science"', 'postgresStorageSize="1Gi"',
            'postgresStorageClass="fast-ssd"', 'backupPrefix="db-backups"',
            Object.entries(EXTERNAL_DB).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", "),
            "POSTGRES_VERSION=18.1, POSTGRES_MAJOR=18, POSTGRES_IMAGE=docker.io/library/postgres:18.1-bookworm",
        ]);
    });

    describe("catches a replacement on a broken program", () => {
        it("flags a claim whose storage class changes, and a data holder that disappears", async () => {
            const broken = structuredClone(base.resources.find((r) => r.type === "kubernetes:core/v1:PersistentVolumeClaim")!) as any;
            broken.inputs.spec.storageClassName = "other";
            const others = base.resources.filter((r) => r.type !== "kubernetes:core/v1:PersistentVolumeClaim");
            expect(dataReplacements(base, { resources: [...others, broken] })).to.deep.equal([
                { resource: broken.name, type: broken.type, fields: ["spec.storageClassName"] },
            ]);
            expect(dataReplacements(base, { resources: others })[0]!.fields).to.deep.equal(["deleted"]);
        });

        it("flags a StatefulSet with a claim template whose size changes (the program before its volume was standalone)", () => {
            const sts = (size: string) => ({
                ...base.resources.find((r) => r.type === "kubernetes:apps/v1:StatefulSet")!,
                inputs: { metadata: { name: "db", namespace: "mlflow" }, spec: { volumeClaimTemplates: [{ spec: { resources: { requests: { storage: size } } } }] } },
            });
            expect(dataReplacements({ resources: [sts("2Gi")] }, { resources: [sts("4Gi")] })[0]!.fields).to.deep.equal(["spec.volumeClaimTemplates"]);
        });

        it("flags every Kubernetes data holder when the provider's cluster identity changes", async () => {
            const run = await runProgram("minikube", { kubeContext: "elsewhere" });
            const fields = dataReplacements(base, run).filter((r) => r.type.startsWith("kubernetes:")).map((r) => r.fields);
            expect(fields).to.have.length(2);
            for (const f of fields) {
                expect(f).to.include("provider.clusterIdentifier");
            }
        });
    });
});
