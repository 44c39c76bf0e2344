/**
 * Stack configuration: read every key once, validate it, and hand the program one typed,
 * readonly object. Nothing here creates a resource, so a bad value fails the update before
 * anything exists in the cloud or the cluster.
 *
 * Defaults live in `Pulumi.yaml` (the project config schema), not here: the Pulumi CLI applies
 * them, and the test harness loads the same file, so there is exactly one place to change one.
 */
import * as net from "net";
import * as pulumi from "@pulumi/pulumi";
// The same rule the policy pack holds every container to.
import { isPinnedImage } from "../policy/checks/podSecurity";
import type { RequestLimits } from "./mlflowSettings";
import { ANNOTATION_KEY_RULE, type PodOverrides, isQualifiedName, parseLabelMap, parsePodOverrides, stringMap, structuredValue } from "./podOverrides";
import {
    BODY_MEMORY_FACTOR, DB_ENGINES_PER_WORKER, MEMORY_HEADROOM, SERVER_TMP_BYTES, POSTGRES_MEMORY_MIB, RESERVED_CONNECTIONS, WORKER_THREADS, connectionsPerWorker, derivePools, minimumPostgresMemoryLimitMiB,
    minimumServerMemoryLimitMiB, serverConnectionBudget, serverMemoryMiB,
} from "./sizing";

/** The project name, which is also the namespace of every config key (`mlflow-k8s:<key>`). */
export const PROJECT = "mlflow-k8s";

/** Permissions MLflow's basic-auth app understands for users without an explicit grant. */
export const DEFAULT_PERMISSIONS = ["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"] as const;
export type DefaultPermission = (typeof DEFAULT_PERMISSIONS)[number];

/** How the server and the backups get AWS credentials. */
export const AWS_CREDENTIAL_MODES = ["accessKey", "podIdentity", "irsa"] as const;
export type AwsCredentialMode = (typeof AWS_CREDENTIAL_MODES)[number];

/** Where the metadata store lives: a PostgreSQL the stack runs, or one a team already runs (RDS, say). */
export const DATABASE_MODES = ["inCluster", "external"] as const;
export type DatabaseMode = (typeof DATABASE_MODES)[number];

/**
 * libpq `sslmode`s allowed for an external database: always encrypted; `verify-full` (the default)
 * also checks the server's certificate against the CA and its name against the host.
 */
export const DATABASE_SSL_MODES = ["require", "verify-ca", "verify-full"] as const;
export type DatabaseSslMode = (typeof DATABASE_SSL_MODES)[number];

/** Keys of an existing Secret (`databaseExistingSecret`) holding the external database's login. */
export const EXTERNAL_SECRET_KEYS = Object.freeze({ username: "username", password: "password" });

/** The external database's login: from config (the password set with `--secret`), or an existing Secret. */
export type ExternalCredentials =
    | { readonly source: "config"; readonly username: string }
    | { readonly source: "existingSecret"; readonly secretName: string };

/** A PostgreSQL outside the cluster. */
export interface ExternalDatabase {
    readonly mode: "external";
    readonly host: string;
    readonly port: number;
    readonly trackingDatabase: string;
    readonly authDatabase: string;
    readonly credentials: ExternalCredentials;
    readonly sslMode: DatabaseSslMode;
    /** PEM of the CA that signed the server's certificate; required for verify-ca and verify-full. */
    readonly caCertificate?: string;
    /** Addresses the NetworkPolicies admit egress to, on `port`. */
    readonly egressCidrs: readonly string[];
    /** The server's max_connections, which the connection budget must fit under. */
    readonly maxConnections: number;
}

/** One registered model served over HTTP (`servedModels`). */
export interface ServedModel {
    /** DNS-safe name of the endpoint: its Deployment, Service and MLflow user derive from it. */
    readonly name: string;
    /** `models:/<name>@<alias>` or `models:/<name>/<version>`. */
    readonly modelUri: string;
    /** The registered model's name, from {@link modelUri}. */
    readonly registeredModel: string;
    /** The alias or the version, from {@link modelUri}. */
    readonly reference: { readonly alias: string } | { readonly version: number };
    readonly minReplicas: number;
    /** Upper bound of the autoscaler; 0: no autoscaler, `minReplicas` pods. */
    readonly maxReplicas: number;
    readonly workers: number;
    readonly resources: Resources;
    /** An image with the model's libraries; undefined: the tracking server's MLflow image. */
    readonly image?: string;
    /** Largest `/invocations` body, in bytes (`maxRequestBodySize`): 413 beyond, before it is read. */
    readonly maxRequestBodyBytes: number;
}

/** What an entry of `servedModels` may leave out. */
export const SERVED_MODEL_DEFAULTS = Object.freeze({
    minReplicas: 1, maxReplicas: 0, workers: 1, cpuRequest: "250m", cpuLimit: "1", memoryRequest: "512Mi", memoryLimit: "1Gi",
    maxRequestBodySize: "16Mi",
});

/** Range of a served model's `maxRequestBodySize`. */
export const SCORING_BODY_RANGE = Object.freeze({ min: 64 * 2 ** 10, max: 2 ** 30 });

/** Gateway API's Duration (GEP-2257), as HTTPRoute timeouts take it. */
const GATEWAY_DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;

/** The scheme a Gateway's listener serves the host on: it makes the browser origin CORS admits. */
export const GATEWAY_SCHEMES = ["https", "http"] as const;

/**
 * The Ingress annotations when `ingressAnnotations` is unset: ingress-nginx's, since artifacts are
 * proxied through the server (no body limit, transfers of up to ten minutes each way).
 */
export const NGINX_INGRESS_ANNOTATIONS: Readonly<Record<string, string>> = Object.freeze({
    "nginx.ingress.kubernetes.io/proxy-body-size": "0",
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "600",
});

/** What `pulumi destroy` does with PostgreSQL's volume claim (and the namespace that holds it). */
export const VOLUME_RETENTION = ["Delete", "Retain"] as const;
export type VolumeRetention = (typeof VOLUME_RETENTION)[number];

/** CPU and memory for one container. Values are Kubernetes quantities. */
export interface Resources {
    readonly cpuRequest: string;
    readonly cpuLimit: string;
    readonly memoryRequest: string;
    readonly memoryLimit: string;
}

/** The validated stack configuration. */
export interface StackConfig {
    /** kubeconfig context to deploy to; never the ambient current-context. */
    readonly kubeContext: string;
    /** Path to a kubeconfig file; undefined uses `KUBECONFIG` or `~/.kube/config`. */
    readonly kubeconfig?: string;
    /** Namespace the stack owns. */
    readonly namespace: string;
    readonly aws: {
        readonly region: string;
        /** Endpoint override for S3-compatible emulators (S3, IAM and STS, path-style). */
        readonly endpoint?: string;
        /**
         * `accessKey`: an IAM user and access key per identity, in a Secret. `podIdentity`: IAM roles
         * bound to the pods' ServiceAccounts by EKS Pod Identity. `irsa`: IAM roles assumed with the
         * ServiceAccounts' tokens through the cluster's OIDC provider.
         */
        readonly credentials:
            | { readonly mode: "accessKey"; readonly keyGeneration: number }
            | { readonly mode: "podIdentity"; readonly clusterName: string }
            | { readonly mode: "irsa"; readonly oidcProviderArn: string };
    };
    readonly artifacts: {
        /** Prefix of the generated bucket name. */
        readonly bucketPrefix: string;
        /** Key prefix in the bucket under which MLflow stores artifacts. */
        readonly artifactPrefix: string;
        /** Delete the bucket with its objects on `pulumi destroy`. */
        readonly forceDestroy: boolean;
        /** KMS key for SSE-KMS; undefined means SSE-S3. */
        readonly kmsKeyArn?: string;
        /** Days after which noncurrent object versions expire. */
        readonly noncurrentVersionExpirationDays: number;
    };
    readonly backup: {
        /** Cron schedule (UTC) of the database backup CronJob. */
        readonly schedule: string;
        /** Days a backup is kept before the bucket's lifecycle rule expires it. */
        readonly retentionDays: number;
        /** Key prefix in the bucket under which backups are written; disjoint from the artifact prefix. */
        readonly prefix: string;
    };
    /**
     * Garbage collection (`mlflow gc`) of what users deleted: runs, experiments and logged models, their
     * rows and their artifacts, once deleted for longer than `olderThan`.
     */
    readonly gc: {
        /** Cron schedule (UTC) of the CronJob; undefined: no CronJob. */
        readonly schedule?: string;
        /** MLflow's `--older-than` (`30d`, `12h`, `1d12h`): how long a deleted record stays restorable. */
        readonly olderThan: string;
    };
    /** Protect everything that holds data (namespace, database volume, bucket with its backups) against deletion. */
    readonly protectData: boolean;
    /** The in-cluster PostgreSQL (the `postgres*` keys) or an external one. */
    readonly database: { readonly mode: "inCluster" } | ExternalDatabase;
    /** Registered models served beside the tracking server. */
    readonly servedModels: readonly ServedModel[];
    readonly postgres: {
        readonly storageSize: string;
        /** Storage class of the data volume; undefined uses the cluster default. */
        readonly storageClass?: string;
        readonly volumeRetention: VolumeRetention;
        readonly maxConnections: number;
        readonly resources: Resources;
    };
    readonly mlflow: {
        readonly replicas: number;
        /** Upper bound for the HorizontalPodAutoscaler; 0 disables autoscaling. */
        readonly maxReplicas: number;
        readonly workers: number;
        readonly dbPoolSize: number;
        readonly dbMaxOverflow: number;
        /** What one worker admits (`mlflowMaxRequestBodySize` and the other request bound keys). */
        readonly requestLimits: RequestLimits;
        readonly resources: Resources;
        readonly adminUsername: string;
        readonly defaultPermission: DefaultPermission;
        /** Seconds each server worker keeps verified credentials (0: verify every request). */
        readonly authCacheTtlSeconds: number;
        /** An Ingress publishing the server at `host` (`ingressHost` without `gatewayName`). */
        readonly ingress?: {
            readonly host: string;
            readonly className?: string;
            readonly tlsSecretName?: string;
            /** The controller's annotations (`ingressAnnotations`; nginx's by default). */
            readonly annotations: Readonly<Record<string, string>>;
        };
        /** An HTTPRoute attached to a Gateway the cluster runs (`ingressHost` with `gatewayName`). */
        readonly httpRoute?: {
            readonly host: string;
            readonly gateway: { readonly name: string; readonly namespace?: string; readonly sectionName?: string };
            /** Whether the Gateway's listener terminates TLS for `host` (`gatewayScheme`). */
            readonly https: boolean;
            /** Gateway API duration a request may take end to end (`gatewayRequestTimeout`); `0s`: no limit. */
            readonly requestTimeout: string;
        };
        /** Browser origins allowed to make state-changing API calls besides the Ingress's own. */
        readonly corsAllowedOrigins: readonly string[];
        /** Path under which the server serves the UI and API (`--static-prefix`); undefined: the root. */
        readonly staticPrefix?: string;
        /** Whether MLflow sends its usage telemetry (`mlflowTelemetry`). */
        readonly telemetry: boolean;
    };
    /** A ServiceMonitor for Prometheus Operator (`serviceMonitor`), with the labels its Prometheus selects. */
    readonly monitoring: { readonly serviceMonitor?: { readonly labels: Readonly<Record<string, string>> } };
    /** Escape hatches applied to every pod (extra env, pull secrets, a mirror, placement, annotations and labels). */
    readonly pods: PodOverrides;
    readonly network: {
        /** Namespace of the ingress controller admitted to the server when there is an Ingress. */
        readonly ingressControllerNamespace: string;
        /** CIDRs admitted to the server's port from outside the cluster (load balancers targeting pods). */
        readonly sourceRanges: readonly string[];
        /** Address of NodeLocal DNSCache on every node, admitted for DNS; undefined when not used. */
        readonly nodeLocalDnsAddress?: string;
        /** Where the schema rollout's pods reach the Kubernetes API server (after the Service's address translation). */
        readonly apiServer: { readonly cidrs: readonly string[]; readonly port: number };
    };
}

/** Raised when one or more config values are invalid. Lists every problem, not just the first. */
export class ConfigError extends Error {
    constructor(readonly problems: readonly string[]) {
        super(`invalid stack configuration:\n  - ${problems.join("\n  - ")}`);
        this.name = "ConfigError";
    }
}

/** Reads a raw config value by key (without the project prefix); undefined when unset. */
export type ConfigReader = (key: string) => string | undefined;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Kubernetes resource.Quantity: a signed decimal number with an optional binary (Ki..Ei),
// decimal (n, u, m, k, M, G, T, P, E) or exponent suffix.
const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;
const AWS_REGION = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$/;
const OIDC_PROVIDER_ARN = /^arn:aws[a-z-]*:iam::\d{12}:oidc-provider\/[a-z0-9.-]+(\/[A-Za-z0-9._-]+)*$/;
// A key, not an alias: IAM permissions name the key itself, which an alias ARN does not match.
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;
// S3 keys may hold almost anything, but MLflow builds URIs from this prefix and the IAM
// policy matches it with wildcards: keep to characters that need no escaping in either.
const ARTIFACT_PREFIX = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;
// Unquoted PostgreSQL identifiers: what a database or role name can be without quoting anywhere.
const DATABASE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const ROLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const PEM_CERTIFICATES = /^(-----BEGIN CERTIFICATE-----[\sA-Za-z0-9+/=]+-----END CERTIFICATE-----\s*)+$/;
// A URL path MLflow prepends to every route; segments need no escaping in a URL, a probe or a route.
const STATIC_PREFIX = /^(\/[A-Za-z0-9._~-]+)+$/;
// MLflow user names end up in URLs and in the auth database; keep them simple.
const USERNAME = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;

/** Longest prefix `aws.s3.Bucket` accepts: 63 characters minus its 26-character random suffix. */
export const MAX_BUCKET_PREFIX_LENGTH = 37;

/** Parses one Kubernetes quantity into base units (cores or bytes); NaN when it is not one. */
export function parseQuantity(value: string): number {
    const m = QUANTITY.exec(value);
    if (!m) {
        return Number.NaN;
    }
    const suffix = m[3] ?? "";
    const number = Number.parseFloat(value.slice(0, value.length - suffix.length));
    const factors: Record<string, number> = {
        "": 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
        Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
    };
    const factor = factors[suffix];
    return factor === undefined ? number * 10 ** Number(suffix.slice(1)) : number * factor;
}

/** Problems with an S3 bucket name prefix, as S3's naming rules would report them. */
export function bucketPrefixProblems(prefix: string): string[] {
    const problems: string[] = [];
    if (prefix.length < 3 || prefix.length > MAX_BUCKET_PREFIX_LENGTH) {
        problems.push(`must be 3 to ${MAX_BUCKET_PREFIX_LENGTH} characters long`);
    }
    if (!/^[a-z0-9][a-z0-9-]*$/.test(prefix)) {
        problems.push("may hold only lowercase letters, digits and hyphens, starting with a letter or digit");
    }
    if (/^(xn--|sthree-|amzn-s3-demo-)/.test(prefix)) {
        problems.push("must not start with a prefix S3 reserves (xn--, sthree-, amzn-s3-demo-)");
    }
    if (/--/.test(prefix) && !/^xn--/.test(prefix)) {
        // Not an S3 rule, but a double hyphen is almost always a typo in a name template.
        problems.push("must not contain two hyphens in a row");
    }
    return problems;
}

/**
 * Validates raw config values into a {@link StackConfig}. Pure: pass any reader (the tests pass
 * a plain object). Throws {@link ConfigError} naming every bad key, its value and what is allowed.
 */
export function parseConfig(read: ConfigReader, isSecret: (key: string) => boolean = () => true): StackConfig {
    const problems: string[] = [];
    const fail = (key: string, value: unknown, allowed: string): void => {
        problems.push(`${PROJECT}:${key} = ${JSON.stringify(value)} is invalid: ${allowed}`);
    };

    const raw = (key: string): string | undefined => {
        const v = read(key);
        return v === undefined ? undefined : v.trim();
    };
    const required = (key: string, allowed: string): string => {
        const v = raw(key);
        if (v === undefined || v === "") {
            problems.push(`${PROJECT}:${key} is required: ${allowed} (set it with \`pulumi config set ${key} <value>\`)`);
            return "";
        }
        return v;
    };
    const optional = (key: string): string | undefined => {
        const v = raw(key);
        return v === undefined || v === "" ? undefined : v;
    };
    const list = (key: string): string[] => (optional(key) ?? "").split(",").map((x) => x.trim()).filter((x) => x !== "");
    const string = (key: string, allowed: string, valid: (v: string) => boolean): string => {
        const v = required(key, allowed);
        if (v !== "" && !valid(v)) {
            fail(key, v, allowed);
        }
        return v;
    };
    const integer = (key: string, min: number, max: number): number => {
        const allowed = `an integer from ${min} to ${max}`;
        const v = required(key, allowed);
        const n = Number(v);
        if (v !== "" && (!/^[+-]?\d+$/.test(v) || n < min || n > max)) {
            fail(key, v, allowed);
        }
        return n;
    };
    const boolean = (key: string): boolean => {
        const v = required(key, "true or false");
        if (v !== "" && v !== "true" && v !== "false") {
            fail(key, v, "true or false");
        }
        return v === "true";
    };
    const oneOf = <T extends string>(key: string, values: readonly T[]): T => {
        const allowed = `one of ${values.join(", ")}`;
        return string(key, allowed, (v) => (values as readonly string[]).includes(v)) as T;
    };
    const quantity = (key: string, kind: "cpu" | "memory"): string => {
        const allowed = kind === "cpu"
            ? "a positive Kubernetes CPU quantity such as 250m or 1"
            : "a positive Kubernetes memory quantity such as 512Mi or 2Gi";
        return string(key, allowed, (v) => parseQuantity(v) > 0);
    };
    const resources = (prefix: string): Resources => {
        const r = {
            cpuRequest: quantity(`${prefix}CpuRequest`, "cpu"),
            cpuLimit: quantity(`${prefix}CpuLimit`, "cpu"),
            memoryRequest: quantity(`${prefix}MemoryRequest`, "memory"),
            memoryLimit: quantity(`${prefix}MemoryLimit`, "memory"),
        };
        for (const kind of ["Cpu", "Memory"] as const) {
            const request = r[kind === "Cpu" ? "cpuRequest" : "memoryRequest"];
            const limit = r[kind === "Cpu" ? "cpuLimit" : "memoryLimit"];
            if (parseQuantity(request) > parseQuantity(limit)) {
                fail(`${prefix}${kind}Request`, request, `must not exceed ${PROJECT}:${prefix}${kind}Limit (${limit})`);
            }
        }
        return r;
    };

    const kubeContext = required("kubeContext", "the kubeconfig context to deploy to, e.g. minikube");
    const kubeconfig = optional("kubeconfig");
    const namespace = string("namespace", "a DNS-1123 label: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit",
        (v) => v.length <= 63 && DNS1123_LABEL.test(v));

    const region = string("awsRegion", "an AWS region code such as us-east-1 or eu-west-3", (v) => AWS_REGION.test(v));
    const endpoint = optional("awsEndpoint");
    if (endpoint !== undefined && !isHttpUrl(endpoint)) {
        fail("awsEndpoint", endpoint, "empty (real AWS) or an http(s) URL such as http://localhost:5000");
    }
    const credentialMode = oneOf("awsCredentials", AWS_CREDENTIAL_MODES);
    const keyGeneration = integer("awsAccessKeyGeneration", 1, 1000000);
    const clusterName = optional("eksClusterName");
    const oidcProviderArn = optional("eksOidcProviderArn");
    if (clusterName !== undefined && !/^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$/.test(clusterName)) {
        fail("eksClusterName", clusterName, "an EKS cluster name: up to 100 letters, digits, '-' or '_', starting with a letter or digit");
    }
    if (oidcProviderArn !== undefined && !OIDC_PROVIDER_ARN.test(oidcProviderArn)) {
        fail("eksOidcProviderArn", oidcProviderArn,
            "the ARN of the cluster's IAM OIDC provider, such as arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/<id> (aws eks describe-cluster ... identity.oidc.issuer)");
    }
    if (credentialMode === "podIdentity" && clusterName === undefined) {
        fail("eksClusterName", "", `required with ${PROJECT}:awsCredentials podIdentity: the EKS cluster the Pod Identity associations are made in`);
    }
    if (credentialMode === "irsa" && oidcProviderArn === undefined) {
        fail("eksOidcProviderArn", "", `required with ${PROJECT}:awsCredentials irsa: the cluster's IAM OIDC provider the roles trust`);
    }
    if (credentialMode !== "podIdentity" && clusterName !== undefined) {
        fail("eksClusterName", clusterName, `only with ${PROJECT}:awsCredentials podIdentity (it is ${credentialMode})`);
    }
    if (credentialMode !== "irsa" && oidcProviderArn !== undefined) {
        fail("eksOidcProviderArn", oidcProviderArn, `only with ${PROJECT}:awsCredentials irsa (it is ${credentialMode})`);
    }
    if (credentialMode !== "accessKey" && keyGeneration !== 1) {
        fail("awsAccessKeyGeneration", keyGeneration, `1: there are no access keys to rotate with ${PROJECT}:awsCredentials ${credentialMode}`);
    }
    const credentials = credentialMode === "podIdentity" ? { mode: credentialMode, clusterName: clusterName ?? "" }
        : credentialMode === "irsa" ? { mode: credentialMode, oidcProviderArn: oidcProviderArn ?? "" }
        : { mode: "accessKey" as const, keyGeneration };

    const bucketPrefix = required("bucketPrefix", "an S3 bucket name prefix such as mlflow-artifacts-");
    if (bucketPrefix !== "") {
        for (const p of bucketPrefixProblems(bucketPrefix)) {
            fail("bucketPrefix", bucketPrefix, p);
        }
    }
    const artifactPrefix = string("artifactPrefix",
        "path segments of letters, digits, '.', '_' or '-' separated by '/', with no leading or trailing '/'",
        (v) => v.length <= 256 && ARTIFACT_PREFIX.test(v));
    const forceDestroy = boolean("bucketForceDestroy");
    const kmsKeyArn = optional("bucketKmsKeyArn");
    if (kmsKeyArn !== undefined && !KMS_KEY_ARN.test(kmsKeyArn)) {
        fail("bucketKmsKeyArn", kmsKeyArn, "empty (SSE-S3) or a KMS key ARN such as arn:aws:kms:<region>:<account>:key/<id>; an alias ARN cannot scope the identities' kms: permissions");
    }
    if (kmsKeyArn !== undefined && KMS_KEY_ARN.test(kmsKeyArn) && kmsKeyArn.split(":")[3] !== region) {
        fail("bucketKmsKeyArn", kmsKeyArn, `a key in the bucket's region ${PROJECT}:awsRegion (${region}): S3 encrypts only with keys of its own region`);
    }
    const noncurrentVersionExpirationDays = integer("noncurrentVersionExpirationDays", 1, 3650);
    const protectData = boolean("protectData");

    const backupSchedule = string("backupSchedule",
        "a cron schedule of five fields (minute hour day-of-month month day-of-week, in UTC) such as \"30 2 * * *\", or @hourly, @daily, @weekly, @monthly",
        (v) => cronProblems(v).length === 0);
    const backupRetentionDays = integer("backupRetentionDays", 1, 3650);
    const backupPrefix = string("backupPrefix",
        "path segments of letters, digits, '.', '_' or '-' separated by '/', with no leading or trailing '/'",
        (v) => v.length <= 256 && ARTIFACT_PREFIX.test(v));
    if (artifactPrefix !== "" && backupPrefix !== "" && prefixesOverlap(artifactPrefix, backupPrefix)) {
        fail("backupPrefix", backupPrefix,
            `must not be ${PROJECT}:artifactPrefix (${artifactPrefix}), inside it or around it: the server's identity may never reach the backups`);
    }

    const gcSchedule = optional("gcSchedule");
    if (gcSchedule !== undefined && cronProblems(gcSchedule).length > 0) {
        fail("gcSchedule", gcSchedule,
            "empty (no garbage collection) or a cron schedule of five fields (minute hour day-of-month month day-of-week, in UTC) such as \"30 3 * * *\", or @hourly, @daily, @weekly, @monthly");
    }
    const gcOlderThan = string("gcOlderThan",
        `a duration in MLflow's #d#h#m#s format of at least ${MIN_GC_OLDER_THAN_SECONDS / 3600} hour, such as 30d, 12h or 1d12h: how long a deleted run stays restorable before gc removes it`,
        (v) => olderThanSeconds(v) >= MIN_GC_OLDER_THAN_SECONDS);

    const storageSize = quantity("postgresStorageSize", "memory");
    const storageClass = optional("postgresStorageClass");
    if (storageClass !== undefined && !(storageClass.length <= 253 && DNS1123_SUBDOMAIN.test(storageClass))) {
        fail("postgresStorageClass", storageClass, "empty (cluster default) or a StorageClass name (DNS-1123 subdomain)");
    }
    const volumeRetention = oneOf("postgresVolumeRetention", VOLUME_RETENTION);
    const maxConnections = integer("postgresMaxConnections", 20, 10000);
    const postgresResources = resources("postgres");

    const database = parseDatabase({ raw, optional, required, integer, oneOf, list, fail }, isSecret);

    const servedModels = parseServedModels(raw("servedModels"), fail);
    const pods = parsePodOverrides(raw, fail, isSecret);
    const serviceMonitor = boolean("serviceMonitor");
    const serviceMonitorLabels = parseLabelMap("serviceMonitorLabels", raw("serviceMonitorLabels"), fail);
    if (!serviceMonitor && Object.keys(serviceMonitorLabels).length > 0) {
        fail("serviceMonitorLabels", serviceMonitorLabels, `only with ${PROJECT}:serviceMonitor true: they label the ServiceMonitor`);
    }

    const replicas = integer("mlflowReplicas", 1, 100);
    const maxReplicas = integer("mlflowMaxReplicas", 0, 100);
    if (maxReplicas !== 0 && maxReplicas < replicas) {
        fail("mlflowMaxReplicas", maxReplicas, `0 (no autoscaling) or at least ${PROJECT}:mlflowReplicas (${replicas})`);
    }
    const workers = integer("mlflowWorkers", 1, 32);
    // 0 and -1 (the defaults): derived from the connection budget, below.
    let dbPoolSize = integer("mlflowDbPoolSize", 0, 100);
    let dbMaxOverflow = integer("mlflowDbMaxOverflow", -1, 100);
    const derivedPools = dbPoolSize === 0 && dbMaxOverflow === -1;
    if (!derivedPools && (dbPoolSize === 0 || dbMaxOverflow === -1)) {
        const [key, value, other] = dbPoolSize === 0 ? ["mlflowDbPoolSize", dbPoolSize, "mlflowDbMaxOverflow"] : ["mlflowDbMaxOverflow", dbMaxOverflow, "mlflowDbPoolSize"];
        fail(key, value, `set as well, since ${PROJECT}:${other} is set (or leave both unset: pools derived from the connection budget)`);
    }
    const mlflowResources = resources("mlflow");
    let requestLimits = parseRequestLimits({ string, integer, fail });
    const adminUsername = string("mlflowAdminUsername", "a user name of letters, digits, '.', '_' or '-', starting with a letter, at most 64 characters",
        (v) => USERNAME.test(v));
    const defaultPermission = oneOf("mlflowDefaultPermission", DEFAULT_PERMISSIONS);
    const authCacheTtlSeconds = integer("mlflowAuthCacheTtlSeconds", 0, 300);
    const staticPrefix = optional("mlflowStaticPrefix");
    if (staticPrefix !== undefined && !(staticPrefix.length <= 128 && STATIC_PREFIX.test(staticPrefix))) {
        fail("mlflowStaticPrefix", staticPrefix, "empty (the root) or a path of segments of letters, digits, '.', '_', '~' or '-', starting with '/' and not ending with one, such as /mlflow");
    }

    const ingressHost = optional("ingressHost");
    if (ingressHost !== undefined && !(ingressHost.length <= 253 && DNS1123_SUBDOMAIN.test(ingressHost) && ingressHost.includes("."))) {
        fail("ingressHost", ingressHost, "empty (no Ingress) or a fully qualified DNS name such as mlflow.example.com");
    }
    const ingressClassName = optional("ingressClassName");
    if (ingressClassName !== undefined && !DNS1123_SUBDOMAIN.test(ingressClassName)) {
        fail("ingressClassName", ingressClassName, "empty (cluster default) or an IngressClass name (DNS-1123 subdomain)");
    }
    const tlsSecretName = optional("ingressTlsSecretName");
    if (tlsSecretName !== undefined && !DNS1123_SUBDOMAIN.test(tlsSecretName)) {
        fail("ingressTlsSecretName", tlsSecretName, "empty (no TLS) or a Secret name (DNS-1123 subdomain)");
    }
    if (ingressHost === undefined && (ingressClassName !== undefined || tlsSecretName !== undefined)) {
        fail("ingressHost", "", `required when ${PROJECT}:ingressClassName or ${PROJECT}:ingressTlsSecretName is set`);
    }
    const ingressAnnotations = parseIngressAnnotations(raw("ingressAnnotations"), fail);
    if (ingressHost === undefined && raw("ingressAnnotations") !== undefined) {
        fail("ingressAnnotations", ingressAnnotations, `unset without ${PROJECT}:ingressHost: there is no Ingress to annotate`);
    }
    const gatewayName = optional("gatewayName");
    if (gatewayName !== undefined && !(gatewayName.length <= 253 && DNS1123_SUBDOMAIN.test(gatewayName))) {
        fail("gatewayName", gatewayName, "empty (an Ingress, or nothing) or the name of a Gateway (DNS-1123 subdomain)");
    }
    const gatewayNamespace = optional("gatewayNamespace");
    if (gatewayNamespace !== undefined && !(gatewayNamespace.length <= 63 && DNS1123_LABEL.test(gatewayNamespace))) {
        fail("gatewayNamespace", gatewayNamespace, "empty (the stack's namespace) or the Gateway's namespace (DNS-1123 label)");
    }
    const gatewaySectionName = optional("gatewaySectionName");
    if (gatewaySectionName !== undefined && !(gatewaySectionName.length <= 253 && DNS1123_SUBDOMAIN.test(gatewaySectionName))) {
        fail("gatewaySectionName", gatewaySectionName, "empty (every listener of the Gateway that admits the route) or a listener's name");
    }
    const gatewayScheme = oneOf("gatewayScheme", GATEWAY_SCHEMES);
    const gatewayRequestTimeout = string("gatewayRequestTimeout",
        "a Gateway API duration (1 to 4 numbers of up to 5 digits with h, m, s or ms, such as 1h, 30m or 1h30m), 0s for no limit",
        (v) => GATEWAY_DURATION.test(v));
    if (gatewayName === undefined) {
        for (const [key, value] of [["gatewayNamespace", gatewayNamespace], ["gatewaySectionName", gatewaySectionName]] as const) {
            if (value !== undefined) {
                fail(key, value, `only with ${PROJECT}:gatewayName, the Gateway it qualifies`);
            }
        }
    } else {
        if (ingressHost === undefined) {
            fail("ingressHost", "", `required with ${PROJECT}:gatewayName: the host name the HTTPRoute serves`);
        }
        for (const [key, value] of [["ingressClassName", ingressClassName], ["ingressTlsSecretName", tlsSecretName]] as const) {
            if (value !== undefined) {
                fail(key, value, `empty with ${PROJECT}:gatewayName: the Gateway's listeners choose the controller and hold the certificate`);
            }
        }
        if (raw("ingressAnnotations") !== undefined) {
            fail("ingressAnnotations", ingressAnnotations, `unset with ${PROJECT}:gatewayName: an HTTPRoute carries its timeouts in its spec, not in annotations`);
        }
    }

    const corsAllowedOrigins = list("corsAllowedOrigins");
    for (const origin of corsAllowedOrigins) {
        if (!isOrigin(origin)) {
            fail("corsAllowedOrigins", origin, "a comma-separated list of origins (scheme://host[:port], no path), such as https://notebooks.example.com; '*' is not allowed");
        }
    }
    const ingressControllerNamespace = string("ingressControllerNamespace", "the DNS-1123 label of the ingress controller's namespace, such as ingress-nginx",
        (v) => v.length <= 63 && DNS1123_LABEL.test(v));
    const sourceRanges = list("ingressSourceRanges");
    for (const cidr of sourceRanges) {
        if (!isCidr(cidr)) {
            fail("ingressSourceRanges", cidr, "a comma-separated list of CIDRs, such as 10.0.0.0/16 or fd00::/8");
        }
    }
    const nodeLocalDnsAddress = optional("nodeLocalDnsAddress");
    if (nodeLocalDnsAddress !== undefined && !isCidr(`${nodeLocalDnsAddress}/32`) && !isCidr(`${nodeLocalDnsAddress}/128`)) {
        fail("nodeLocalDnsAddress", nodeLocalDnsAddress, "empty (no NodeLocal DNSCache) or an IP address such as 169.254.20.10");
    }
    const apiServerCidrs = list("kubeApiServerCidrs");
    if (apiServerCidrs.length === 0) {
        fail("kubeApiServerCidrs", "", "at least one CIDR: the API server's addresses (kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes), or 0.0.0.0/0,::/0");
    }
    for (const cidr of apiServerCidrs) {
        if (!isCidr(cidr)) {
            fail("kubeApiServerCidrs", cidr, "a comma-separated list of CIDRs, such as 192.168.49.2/32 or 0.0.0.0/0,::/0");
        }
    }
    const apiServerPort = integer("kubeApiServerPort", 1, 65535);
    const telemetry = boolean("mlflowTelemetry");

    if (problems.length === 0) {
        // Every worker of every replica holds one pool per SQLAlchemy engine; together they must fit
        // under max_connections, keeping room for the migration Job, backups and an operator.
        const peakReplicas = Math.max(replicas, maxReplicas);
        const [limitKey, limit] = database.mode === "external"
            ? ["databaseMaxConnections", database.maxConnections] : ["postgresMaxConnections", maxConnections];
        const allowance = limit - RESERVED_CONNECTIONS;
        if (derivedPools) {
            // The pools every worker can have within the budget, and the requests it may then serve at once.
            const pools = derivePools(Math.floor(allowance / (peakReplicas * workers)), requestLimits.maxConcurrentRequests);
            if (pools === undefined) {
                fail(limitKey, limit,
                    `at least ${RESERVED_CONNECTIONS + peakReplicas * workers * (DB_ENGINES_PER_WORKER + 2)} for replicas (${peakReplicas}) x workers (${workers}): ` +
                    `each worker needs a pool of 1 per engine (${DB_ENGINES_PER_WORKER}) and 2 connections for one request, plus ${RESERVED_CONNECTIONS} reserved; ` +
                    `raise max connections or lower ${PROJECT}:mlflowReplicas, mlflowMaxReplicas or mlflowWorkers`);
            } else {
                dbPoolSize = pools.poolSize;
                dbMaxOverflow = pools.maxOverflow;
                // Beyond the worker's threads, requests wait without a connection: the limit drops only below them.
                if (pools.concurrency < WORKER_THREADS) {
                    requestLimits = { ...requestLimits, maxConcurrentRequests: Math.min(requestLimits.maxConcurrentRequests, pools.concurrency) };
                }
            }
        } else {
            const budget = serverConnectionBudget({ replicas: peakReplicas, workers, poolSize: dbPoolSize, maxOverflow: dbMaxOverflow, concurrency: requestLimits.maxConcurrentRequests });
            if (budget > allowance) {
                fail("mlflowDbPoolSize", dbPoolSize,
                    `replicas (${peakReplicas}) x workers (${workers}) x ${connectionsPerWorker(dbPoolSize, dbMaxOverflow, requestLimits.maxConcurrentRequests)} connections per worker ` +
                    `(${DB_ENGINES_PER_WORKER} engines of pool ${dbPoolSize} + overflow ${dbMaxOverflow}, at most 2 per request in flight) = ${budget} ` +
                    `exceeds ${PROJECT}:${limitKey} (${limit}) minus ${RESERVED_CONNECTIONS} reserved; lower the pool or raise max connections, ` +
                    `or leave mlflowDbPoolSize and mlflowDbMaxOverflow unset to derive them from the budget`);
            }
        }
        const postgresMinimum = minimumPostgresMemoryLimitMiB(maxConnections);
        if (database.mode === "inCluster" && parseQuantity(postgresResources.memoryLimit) < postgresMinimum * 2 ** 20) {
            fail("postgresMemoryLimit", postgresResources.memoryLimit,
                `at least ${postgresMinimum}Mi for ${PROJECT}:postgresMaxConnections ${maxConnections}: ${POSTGRES_MEMORY_MIB.base}Mi plus ` +
                `${POSTGRES_MEMORY_MIB.perConnection}Mi a connection, measured, plus ${MEMORY_HEADROOM * 100}% headroom (components/sizing.ts)`);
        }
        // Workers are CPU-bound processes: more than the CPU limit's cores only add memory.
        const cores = Math.max(1, Math.ceil(parseQuantity(mlflowResources.cpuLimit)));
        if (workers > cores) {
            fail("mlflowWorkers", workers, `at most ${cores}, the cores of ${PROJECT}:mlflowCpuLimit (${mlflowResources.cpuLimit}); raise the CPU limit for more workers`);
        }
        const budget_ = requestLimits.bodyBudgetBytes;
        const minimum = minimumServerMemoryLimitMiB(workers, budget_);
        if (parseQuantity(mlflowResources.memoryLimit) < minimum * 2 ** 20) {
            fail("mlflowMemoryLimit", mlflowResources.memoryLimit,
                `at least ${minimum}Mi for ${workers} worker(s) each reading up to ${PROJECT}:mlflowRequestBodyBudget (${mib(budget_)}) of large bodies at once: ` +
                `measured peak ${serverMemoryMiB(workers, budget_).peak}Mi (${BODY_MEMORY_FACTOR}x the budget per worker included) plus ${MEMORY_HEADROOM * 100}% headroom ` +
                `(components/sizing.ts); raise the limit or lower mlflowRequestBodyBudget or mlflowWorkers`);
        }
    }

    if (problems.length > 0) {
        throw new ConfigError(problems);
    }
    return deepFreeze({
        kubeContext,
        kubeconfig,
        namespace,
        aws: { region, endpoint, credentials },
        artifacts: { bucketPrefix, artifactPrefix, forceDestroy, kmsKeyArn, noncurrentVersionExpirationDays },
        backup: { schedule: backupSchedule, retentionDays: backupRetentionDays, prefix: backupPrefix },
        gc: { schedule: gcSchedule, olderThan: gcOlderThan },
        protectData,
        database,
        servedModels,
        postgres: { storageSize, storageClass, volumeRetention, maxConnections, resources: postgresResources },
        mlflow: {
            replicas, maxReplicas, workers, dbPoolSize, dbMaxOverflow, requestLimits, resources: mlflowResources,
            adminUsername, defaultPermission, authCacheTtlSeconds,
            ingress: ingressHost === undefined || gatewayName !== undefined ? undefined
                : { host: ingressHost, className: ingressClassName, tlsSecretName, annotations: ingressAnnotations },
            httpRoute: ingressHost === undefined || gatewayName === undefined ? undefined : {
                host: ingressHost,
                gateway: { name: gatewayName, namespace: gatewayNamespace, sectionName: gatewaySectionName },
                https: gatewayScheme === "https",
                requestTimeout: gatewayRequestTimeout,
            },
            corsAllowedOrigins,
            staticPrefix,
            telemetry,
        },
        monitoring: { serviceMonitor: serviceMonitor ? { labels: serviceMonitorLabels } : undefined },
        pods,
        network: { ingressControllerNamespace, sourceRanges, nodeLocalDnsAddress, apiServer: { cidrs: apiServerCidrs, port: apiServerPort } },
    });
}

/** Bytes as the shortest of KiB or MiB, for messages. */
function mib(bytes: number): string {
    return bytes % 2 ** 20 === 0 ? `${bytes / 2 ** 20}Mi` : `${bytes / 2 ** 10}Ki`;
}

/** Ranges of the request bound keys. */
export const REQUEST_LIMIT_RANGES = Object.freeze({
    maxBodyBytes: { min: 64 * 2 ** 10, max: 256 * 2 ** 20 },
    maxUploadBytes: { min: 2 ** 20, max: SERVER_TMP_BYTES },
    bodyBudgetBytes: { max: 2 ** 30 },
    maxConcurrentRequests: { min: 1, max: 1000 },
    bodyTimeoutSeconds: { min: 1, max: 3600 },
});

/**
 * The request bounds of each server worker (components/request-bounds): sizes as Kubernetes
 * quantities, checked against their ranges and each other.
 */
function parseRequestLimits(p: {
    string: (key: string, allowed: string, valid: (v: string) => boolean) => string;
    integer: (key: string, min: number, max: number) => number;
    fail: (key: string, value: unknown, allowed: string) => void;
}): RequestLimits {
    const r = REQUEST_LIMIT_RANGES;
    const size = (key: string, min: number, max: number, what: string): number => {
        const v = p.string(key, `a Kubernetes quantity from ${mib(min)} to ${mib(max)}, such as ${mib(Math.max(min, 2 ** 21))}: ${what}`,
            (x) => QUANTITY.test(x) && parseQuantity(x) >= min && parseQuantity(x) <= max);
        return QUANTITY.test(v) ? Math.floor(parseQuantity(v)) : 0;
    };
    const maxBodyBytes = size("mlflowMaxRequestBodySize", r.maxBodyBytes.min, r.maxBodyBytes.max,
        "the largest API request body a worker reads (413 beyond, before it is read)");
    const maxUploadBytes = size("mlflowMaxUploadSize", r.maxUploadBytes.min, r.maxUploadBytes.max,
        "the largest artifact upload through the server (413 beyond), at most the server's /tmp that spools it");
    const bodyBudgetBytes = size("mlflowRequestBodyBudget", r.maxBodyBytes.min, r.bodyBudgetBytes.max,
        "bytes of large API bodies one worker reads at once (503, retried, beyond)");
    if (maxBodyBytes > 0 && bodyBudgetBytes > 0 && bodyBudgetBytes < maxBodyBytes) {
        p.fail("mlflowRequestBodyBudget", mib(bodyBudgetBytes),
            `at least ${PROJECT}:mlflowMaxRequestBodySize (${mib(maxBodyBytes)}): a body the budget cannot hold would never be served`);
    }
    const maxConcurrentRequests = p.integer("mlflowMaxConcurrentRequests", r.maxConcurrentRequests.min, r.maxConcurrentRequests.max);
    const bodyTimeoutSeconds = p.integer("mlflowRequestBodyTimeoutSeconds", r.bodyTimeoutSeconds.min, r.bodyTimeoutSeconds.max);
    return { maxBodyBytes, maxUploadBytes, bodyBudgetBytes, maxConcurrentRequests, bodyTimeoutSeconds };
}

/**
 * `ingressAnnotations`: a map of annotation keys to strings; unset gives ingress-nginx's
 * ({@link NGINX_INGRESS_ANNOTATIONS}), `{}` none (another controller, or its defaults).
 */
export function parseIngressAnnotations(value: string | undefined, fail: (key: string, value: unknown, allowed: string) => void): Record<string, string> {
    if (value === undefined) {
        return { ...NGINX_INGRESS_ANNOTATIONS };
    }
    const map = structuredValue("ingressAnnotations", value, "map",
        "{ traefik.ingress.kubernetes.io/router.entrypoints: websecure } for your ingress controller, {} for none", fail) as Record<string, unknown>;
    return stringMap("ingressAnnotations", map, fail, (k) => isQualifiedName(k) ? undefined : ANNOTATION_KEY_RULE);
}

/** Loads and validates the current stack's configuration. */
export function loadConfig(): StackConfig {
    const config = new pulumi.Config(PROJECT);
    return parseConfig((key) => config.get(key), (key) => configIsSecret(`${PROJECT}:${key}`));
}

/** The external database's password, set with `pulumi config set --secret databasePassword`. */
export function loadDatabasePassword(): pulumi.Output<string> {
    return new pulumi.Config(PROJECT).requireSecret("databasePassword");
}

/**
 * Whether a config value was set with `--secret`. The SDK knows (it is how `getSecret` works) but
 * exports the check only from its runtime module; without it, every value counts as secret.
 */
function configIsSecret(fullKey: string): boolean {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const runtime: { isConfigSecret?: (key: string) => boolean } = require("@pulumi/pulumi/runtime/config");
    return runtime.isConfigSecret?.(fullKey) ?? true;
}

/** The readers {@link parseConfig} shares with the functions that parse one group of keys. */
interface Readers {
    raw(key: string): string | undefined;
    optional(key: string): string | undefined;
    required(key: string, allowed: string): string;
    integer(key: string, min: number, max: number): number;
    oneOf<T extends string>(key: string, values: readonly T[]): T;
    list(key: string): string[];
    fail(key: string, value: unknown, allowed: string): void;
}

/**
 * Keys holding a list of objects or a map, which Pulumi.yaml cannot declare (its config types are
 * strings, integers, booleans and arrays of those; a declared type would make the CLI refuse the
 * value). They are documented in a comment there and in the README instead.
 */
export const STRUCTURED_KEYS: readonly string[] = ["servedModels", "ingressAnnotations", "serviceMonitorLabels", "extraEnv", "imageMirrors", "nodeSelector", "tolerations", "topologySpreadConstraints", "podAnnotations", "podLabels"];

/** The {@link STRUCTURED_KEYS} that hold a map (of strings) rather than a list. */
export const STRUCTURED_MAP_KEYS: readonly string[] = ["ingressAnnotations", "serviceMonitorLabels", "imageMirrors", "nodeSelector", "podAnnotations", "podLabels"];

const MODEL_URI = /^models:\/([A-Za-z0-9][A-Za-z0-9._ -]{0,199})(?:@([A-Za-z0-9_-]{1,255})|\/([1-9][0-9]{0,9}))$/;
const SERVED_MODEL_FIELDS = ["name", "model", "minReplicas", "maxReplicas", "workers", "cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit", "image", "maxRequestBodySize"];

/**
 * `servedModels`: a list of `{ name, model, minReplicas?, maxReplicas?, workers?, cpuRequest?,
 * cpuLimit?, memoryRequest?, memoryLimit?, image?, maxRequestBodySize? }`, each problem named by its entry.
 */
export function parseServedModels(value: string | undefined, fail: (key: string, value: unknown, allowed: string) => void): ServedModel[] {
    if (value === undefined || value === "") {
        return [];
    }
    let entries: unknown;
    try {
        entries = JSON.parse(value);
    } catch {
        fail("servedModels", value, "a list of models to serve, set in the stack file or with `pulumi config set --path 'servedModels[0].name' <name>`");
        return [];
    }
    if (!Array.isArray(entries)) {
        fail("servedModels", entries, "a list of models to serve ({ name, model, ... } each)");
        return [];
    }
    const out: ServedModel[] = [];
    const names = new Set<string>();
    entries.forEach((entry: any, i: number) => {
        const at = `servedModels[${i}]`;
        if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
            fail(at, entry, "an object { name, model, ... }");
            return;
        }
        const label = typeof entry.name === "string" ? `${at} (${entry.name})` : at;
        for (const field of Object.keys(entry)) {
            if (!SERVED_MODEL_FIELDS.includes(field)) {
                fail(`${label}.${field}`, entry[field], `not a field of a served model; the fields are ${SERVED_MODEL_FIELDS.join(", ")}`);
            }
        }
        const name = entry.name;
        if (typeof name !== "string" || !(name.length <= 40 && DNS1123_LABEL.test(name))) {
            fail(`${label}.name`, name, "a DNS-1123 label of at most 40 characters (lowercase letters, digits, '-'): it names the endpoint's Deployment and Service");
        } else if (names.has(name)) {
            fail(`${label}.name`, name, "a name no other entry of servedModels has");
        } else {
            names.add(name);
        }
        const m = typeof entry.model === "string" ? MODEL_URI.exec(entry.model) : null;
        if (m === null) {
            fail(`${label}.model`, entry.model, "models:/<registered model>@<alias> or models:/<registered model>/<version>, such as models:/iris@champion");
        }
        const int = (field: string, min: number, max: number): number => {
            const v = entry[field] ?? (SERVED_MODEL_DEFAULTS as Record<string, unknown>)[field];
            if (!Number.isInteger(v) || v < min || v > max) {
                fail(`${label}.${field}`, v, `an integer from ${min} to ${max}`);
                return min;
            }
            return v as number;
        };
        const minReplicas = int("minReplicas", 1, 50);
        const maxReplicas = int("maxReplicas", 0, 50);
        if (maxReplicas !== 0 && maxReplicas < minReplicas) {
            fail(`${label}.maxReplicas`, maxReplicas, `0 (no autoscaling) or at least minReplicas (${minReplicas})`);
        }
        const workers = int("workers", 1, 16);
        const quantity = (field: "cpuRequest" | "cpuLimit" | "memoryRequest" | "memoryLimit"): string => {
            const raw = entry[field] ?? SERVED_MODEL_DEFAULTS[field];
            // `pulumi config set --path` and YAML turn a whole number of cores into a number.
            const v = typeof raw === "number" && field.startsWith("cpu") && Number.isFinite(raw) ? String(raw) : raw;
            const kind = field.startsWith("cpu") ? "CPU quantity such as 500m or 2" : "memory quantity such as 512Mi or 2Gi";
            if (typeof v !== "string" || !(parseQuantity(v) > 0)) {
                fail(`${label}.${field}`, v, `a positive Kubernetes ${kind}`);
                return String(SERVED_MODEL_DEFAULTS[field]);
            }
            return v;
        };
        const resources = { cpuRequest: quantity("cpuRequest"), cpuLimit: quantity("cpuLimit"), memoryRequest: quantity("memoryRequest"), memoryLimit: quantity("memoryLimit") };
        for (const kind of ["cpu", "memory"] as const) {
            if (parseQuantity(resources[`${kind}Request`]) > parseQuantity(resources[`${kind}Limit`])) {
                fail(`${label}.${kind}Request`, resources[`${kind}Request`], `must not exceed ${kind}Limit (${resources[`${kind}Limit`]})`);
            }
        }
        const cores = Math.max(1, Math.ceil(parseQuantity(resources.cpuLimit)));
        if (workers > cores) {
            fail(`${label}.workers`, workers, `at most ${cores}, the cores of its cpuLimit (${resources.cpuLimit})`);
        }
        const bodySize = entry.maxRequestBodySize ?? SERVED_MODEL_DEFAULTS.maxRequestBodySize;
        let maxRequestBodyBytes = 0;
        if (typeof bodySize !== "string" || !QUANTITY.test(bodySize) || parseQuantity(bodySize) < SCORING_BODY_RANGE.min || parseQuantity(bodySize) > SCORING_BODY_RANGE.max) {
            fail(`${label}.maxRequestBodySize`, bodySize, "a Kubernetes quantity from 64Ki to 1Gi, such as 16Mi: the largest /invocations body a worker reads (413 beyond, before it is read); its memoryLimit must hold twice that about 16 times over, beside the model");
        } else {
            maxRequestBodyBytes = Math.floor(parseQuantity(bodySize));
        }
        const image = entry.image;
        if (image !== undefined && (typeof image !== "string" || !isPinnedImage(image))) {
            fail(`${label}.image`, image, "an image pinned to an exact version tag or a digest, such as registry.example.com/models/iris:1.4.2");
        }
        if (m !== null && typeof name === "string") {
            out.push({
                name, modelUri: entry.model, registeredModel: m[1]!,
                reference: m[2] !== undefined ? { alias: m[2] } : { version: Number(m[3]) },
                minReplicas, maxReplicas, workers, resources, image, maxRequestBodyBytes,
            });
        }
    });
    return out;
}


/** The `database*` keys: the in-cluster PostgreSQL, or where and how to reach an external one. */
function parseDatabase(r: Readers, isSecret: (key: string) => boolean): StackConfig["database"] {
    const mode = r.oneOf("databaseMode", DATABASE_MODES);
    const host = r.optional("databaseHost");
    const port = r.integer("databasePort", 1, 65535);
    const databaseName = (key: string) => {
        const v = r.required(key, "a PostgreSQL database name");
        if (v !== "" && !DATABASE_NAME.test(v)) {
            r.fail(key, v, "a database name of at most 63 lowercase letters, digits or '_', starting with a letter or '_'");
        }
        return v;
    };
    const trackingDatabase = databaseName("databaseName");
    const authDatabase = databaseName("databaseAuthName");
    const username = r.optional("databaseUsername");
    const passwordSet = (r.raw("databasePassword") ?? "") !== "";
    const existingSecret = r.optional("databaseExistingSecret");
    const sslMode = r.oneOf("databaseSslMode", DATABASE_SSL_MODES);
    const caCertificate = r.optional("databaseCaCertificate");
    const listedCidrs = r.list("databaseEgressCidrs");
    const maxConnections = r.integer("databaseMaxConnections", 0, 100000);

    if (mode !== "external") {
        // Only what an external database needs is refused here; its defaults (port, names, TLS) may stay.
        const externalOnly: Array<[string, unknown]> = [
            ["databaseHost", host], ["databaseUsername", username], ["databasePassword", passwordSet ? "(hidden)" : undefined],
            ["databaseExistingSecret", existingSecret], ["databaseCaCertificate", caCertificate],
            ["databaseEgressCidrs", listedCidrs.length > 0 ? listedCidrs.join(",") : undefined], ["databaseMaxConnections", maxConnections || undefined],
        ];
        for (const [key, value] of externalOnly) {
            if (value !== undefined) {
                r.fail(key, value, `only with ${PROJECT}:databaseMode external (it is ${mode}); the in-cluster PostgreSQL takes the postgres* keys`);
            }
        }
        return { mode: "inCluster" };
    }

    if (host === undefined) {
        r.fail("databaseHost", "", `required with ${PROJECT}:databaseMode external: the PostgreSQL's DNS name or IP address`);
    } else if (!net.isIP(host) && !(host.length <= 253 && DNS1123_SUBDOMAIN.test(host))) {
        r.fail("databaseHost", host, "a DNS name (such as mydb.abc123.eu-west-1.rds.amazonaws.com) or an IP address");
    }
    if (trackingDatabase !== "" && trackingDatabase === authDatabase) {
        r.fail("databaseAuthName", authDatabase, `a database other than ${PROJECT}:databaseName: MLflow's tracking and auth schemas need a database each`);
    }

    let credentials: ExternalCredentials = { source: "config", username: username ?? "" };
    if (existingSecret !== undefined) {
        if (!(existingSecret.length <= 253 && DNS1123_SUBDOMAIN.test(existingSecret))) {
            r.fail("databaseExistingSecret", existingSecret, "a Secret name (DNS-1123 subdomain) in the stack's namespace");
        }
        if (username !== undefined || passwordSet) {
            r.fail("databaseExistingSecret", existingSecret,
                `either an existing Secret or ${PROJECT}:databaseUsername and ${PROJECT}:databasePassword, not both`);
        }
        credentials = { source: "existingSecret", secretName: existingSecret };
    } else {
        if (username === undefined) {
            r.fail("databaseUsername", "", `required with ${PROJECT}:databaseMode external, unless ${PROJECT}:databaseExistingSecret names a Secret with the login`);
        } else if (!ROLE_NAME.test(username)) {
            r.fail("databaseUsername", username, "a PostgreSQL role name of at most 63 letters, digits or '_', starting with a letter or '_'");
        }
        if (!passwordSet) {
            r.fail("databasePassword", "", `required with ${PROJECT}:databaseUsername: set it with \`pulumi config set --secret databasePassword\``);
        } else if (!isSecret("databasePassword")) {
            r.fail("databasePassword", "(hidden)", "must be set with `pulumi config set --secret databasePassword`, or it sits in plain text in the stack's file");
        }
    }

    if (caCertificate !== undefined && !PEM_CERTIFICATES.test(caCertificate)) {
        r.fail("databaseCaCertificate", `${caCertificate.slice(0, 40)}...`, "one or more PEM certificates (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----), such as the RDS CA bundle");
    }
    if (sslMode !== "require" && caCertificate === undefined) {
        r.fail("databaseCaCertificate", "", `required with ${PROJECT}:databaseSslMode ${sslMode}: the CA the server's certificate is checked against (\`pulumi config set databaseCaCertificate -- "$(cat ca.pem)"\`)`);
    }

    for (const cidr of listedCidrs) {
        if (!isCidr(cidr)) {
            r.fail("databaseEgressCidrs", cidr, "a comma-separated list of CIDRs, such as 10.0.32.0/20");
        }
    }
    let egressCidrs = listedCidrs;
    if (egressCidrs.length === 0 && host !== undefined) {
        if (net.isIP(host)) {
            egressCidrs = [`${host}/${net.isIPv4(host) ? 32 : 128}`];
        } else {
            r.fail("databaseEgressCidrs", "", `required when ${PROJECT}:databaseHost is a DNS name (${host}): the CIDRs of the database's subnets, which the NetworkPolicies admit`);
        }
    }
    if (maxConnections === 0) {
        r.fail("databaseMaxConnections", 0, `required (20 or more) with ${PROJECT}:databaseMode external: the server's max_connections (\`SHOW max_connections\`), which the connection budget must fit under`);
    } else if (maxConnections < 20) {
        r.fail("databaseMaxConnections", maxConnections, "20 or more: the server's max_connections");
    }
    return { mode, host: host ?? "", port, trackingDatabase, authDatabase, credentials, sslMode, caCertificate, egressCidrs, maxConnections };
}

/** True when one key prefix equals the other or is a parent path of it. */
export function prefixesOverlap(a: string, b: string): boolean {
    return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/**
 * Shortest `gcOlderThan`: a run deleted by mistake stays restorable at least this long (MLflow itself
 * accepts 0, which purges a run deleted a second before the CronJob starts).
 */
export const MIN_GC_OLDER_THAN_SECONDS = 3600;

/**
 * Seconds of a duration in the format of `mlflow gc --older-than` (days, hours, minutes, seconds, in
 * that order, each optional, decimals allowed: `30d`, `1d12h`, `1.5h`); NaN when it is not one. A
 * subset of what MLflow parses: no empty string, no `1.2.3d`.
 */
export function olderThanSeconds(value: string): number {
    const m = /^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(value);
    if (m === null || value === "") {
        return Number.NaN;
    }
    const [days, hours, minutes, seconds] = m.slice(1).map((x) => (x === undefined ? 0 : Number(x)));
    return days! * 86400 + hours! * 3600 + minutes! * 60 + seconds!;
}

/** Cron macros Kubernetes CronJobs accept besides five-field schedules. */
const CRON_MACROS = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
/** The five cron fields: name, lowest and highest value, and the names allowed in place of numbers. */
const CRON_FIELDS: ReadonlyArray<[string, number, number, readonly string[]]> = [
    ["minute", 0, 59, []],
    ["hour", 0, 23, []],
    ["day of month", 1, 31, []],
    ["month", 1, 12, ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]],
    ["day of week", 0, 7, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]],
];

/**
 * Problems with a CronJob schedule, field by field, as Kubernetes' cron parser would find them:
 * five fields of `*`, numbers, names, ranges, steps and lists, or one of the macros. Time zones
 * are not part of the schedule (`CRON_TZ=` is refused by the API server).
 */
export function cronProblems(schedule: string): string[] {
    if (CRON_MACROS.includes(schedule)) {
        return [];
    }
    const fields = schedule.split(/\s+/);
    if (fields.length !== CRON_FIELDS.length) {
        return [`has ${fields.length} fields; a schedule has 5 (minute hour day-of-month month day-of-week) or is a macro such as @daily`];
    }
    const problems: string[] = [];
    fields.forEach((field, i) => {
        const [label, min, max, names] = CRON_FIELDS[i]!;
        const value = (token: string): number => {
            const named = names.indexOf(token.toLowerCase());
            if (named >= 0) {
                return named + (label === "month" ? 1 : 0);
            }
            return /^\d+$/.test(token) ? Number(token) : Number.NaN;
        };
        for (const part of field.split(",")) {
            const m = /^(\*|[^-/]+(?:-[^-/]+)?)(?:\/(\d+))?$/.exec(part);
            const bounds = m?.[1] === "*" ? [min, max] : (m?.[1] ?? "").split("-").map(value);
            const step = m?.[2] === undefined ? 1 : Number(m[2]);
            if (m === null || bounds.some((b) => !(b >= min && b <= max)) || (bounds.length === 2 && bounds[0]! > bounds[1]!) || step < 1) {
                problems.push(`${label} field "${part}" is not a value, range or step within ${min}-${max}`);
            }
        }
    });
    return problems;
}

/** A browser origin: http(s), a host, an optional port, nothing else. */
export function isOrigin(value: string): boolean {
    try {
        const url = new URL(value);
        return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "" && url.origin === value;
    } catch {
        return false;
    }
}

/** An IPv4 or IPv6 CIDR. */
export function isCidr(value: string): boolean {
    const [address, bits, ...rest] = value.split("/");
    if (address === undefined || bits === undefined || rest.length > 0 || !/^\d{1,3}$/.test(bits)) {
        return false;
    }
    if (net.isIPv4(address)) {
        return Number(bits) <= 32;
    }
    return net.isIPv6(address) && Number(bits) <= 128;
}

function isHttpUrl(value: string): boolean {
    try {
        const url = new URL(value);
        return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
    } catch {
        return false;
    }
}

function deepFreeze<T>(value: T): T {
    if (value !== null && typeof value === "object") {
        for (const v of Object.values(value)) {
            deepFreeze(v);
        }
        Object.freeze(value);
    }
    return value;
}
