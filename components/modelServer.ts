/**
 * A registered model served over HTTP beside the tracking server, one per `servedModels` entry:
 * its own MLflow user ({@link ServingCredentials}, kept by the migration Job and a CronJob with
 * READ on that model and on the experiment holding its files), and {@link ModelServer}: a
 * Deployment whose init container downloads the model through the tracking server's artifact
 * proxy with that user, and whose container runs MLflow's scoring server (uvicorn, as `mlflow
 * models serve` runs it) on the downloaded copy, with no credentials at all; a Service, and a
 * PodDisruptionBudget and autoscaler when scaled.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { ServedModel } from "./config";
import {
    EphemeralStorage, checksum, containerSecurityContext, emptyDir, labels, podSecurityContext, resourceRequirements, secretEnv, selectorLabels,
} from "./kube";
import { CONNECTIONS_PER_CONCURRENT_REQUEST, REQUEST_BOUNDS_DIR, REQUEST_BOUNDS_ITEMS, REQUEST_BOUNDS_SOURCE_DIR, requestBoundsEnv } from "./mlflowSettings";
import { readFiles } from "./postgres";
import { MLFLOW_IMAGE, MLFLOW_UID, MLFLOW_VERSION } from "./versions";

/** Port the scoring server listens on in its pods. */
export const SCORING_PORT = 8080;
/** Port of each model's Service. */
export const MODEL_SERVICE_PORT = 80;
/** Where the init container puts the model, and the scoring server reads it. */
export const MODEL_DIR = "/opt/mlflow/model";
/** Keys of a model server's credentials Secret. */
export const SERVING_SECRET_KEYS = Object.freeze({ username: "username", password: "password" });
/**
 * The download init container: MLflow's CLI, then, when it fails, one line that says what was
 * downloaded, as whom, and what a 403 means (MLflow answers 403 for a model that does not exist too).
 */
export const DOWNLOAD_SCRIPT = [
    'mlflow artifacts download --artifact-uri "$MODEL_URI" --dst-path "$MODEL_DIR" && exit 0',
    'echo "download: could not download $MODEL_URI as MLflow user $MLFLOW_TRACKING_USERNAME from $MLFLOW_TRACKING_URI;'
        + ' a 403 above means the model or alias does not exist, or the grants CronJob has not followed the alias yet'
        + ' (README, Serving models)" >&2',
    "exit 1",
].join("\n");

/**
 * The scoring server's request bounds (components/request-bounds, its `create_scoring_app`): bodies
 * up to the model's `maxRequestBodySize`, twice that of large bodies per worker at once, this many
 * requests per worker at once, and a body must arrive within the scoring timeout.
 */
export const SCORING_MAX_CONCURRENT = 32;
/** MLflow's scoring timeout (`MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`), also the body's. */
export const SCORING_TIMEOUT_SECONDS = 60;

/** The request bounds of one model's scoring workers. */
export function scoringLimits(model: ServedModel) {
    return {
        maxBodyBytes: model.maxRequestBodyBytes, maxUploadBytes: model.maxRequestBodyBytes, bodyBudgetBytes: 2 * model.maxRequestBodyBytes,
        maxConcurrentRequests: SCORING_MAX_CONCURRENT, bodyTimeoutSeconds: SCORING_TIMEOUT_SECONDS,
    };
}

/** Seconds a stopping model server keeps serving while its endpoint leaves the proxies. */
const PRE_STOP_SECONDS = 5;
/** Room for the model (the emptyDir it is downloaded to) and /tmp. */
const MODEL_STORAGE: EphemeralStorage = { request: "256Mi", limit: "6Gi" };
const MODEL_VOLUME_SIZE = "4Gi";
const TMP_SIZE = "1Gi";

/** The MLflow user name of a served model's endpoint. */
export function servingUserName(model: ServedModel): string {
    return `serving-${model.name}`;
}

/** What the migration Job and the grants CronJob need to keep one model server's user. */
export interface ServingUser {
    readonly user: string;
    readonly registeredModel: string;
    readonly reference: ServedModel["reference"];
    /** Secret holding the user's password under {@link SERVING_SECRET_KEYS}.password. */
    readonly secretName: pulumi.Input<string>;
}

/** Arguments of {@link ServingCredentials}. */
export interface ServingCredentialsArgs {
    readonly namespace: pulumi.Input<string>;
    readonly model: ServedModel;
}

/**
 * A served model's MLflow login: a generated password and a Secret with both, which the
 * migration Job turns into a user and the model server's init container logs in with.
 */
export class ServingCredentials extends pulumi.ComponentResource {
    public readonly user: ServingUser;
    /** The password (a Pulumi secret), hashed into the model server's checksum. */
    public readonly password: pulumi.Output<string>;

    constructor(name: string, args: ServingCredentialsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:kubernetes:ServingCredentials", name, {}, opts);
        const child = { parent: this };
        // MLflow asks for 12 characters at least; no characters that need quoting anywhere.
        const password = new random.RandomPassword(`${name}-password`, {
            length: 32, special: true, overrideSpecial: "-_.~", minLower: 2, minUpper: 2, minNumeric: 2,
        }, child);
        this.password = pulumi.secret(password.result);
        const secret = new k8s.core.v1.Secret(`${name}-credentials`, {
            metadata: { namespace: args.namespace, labels: labels(name, "model-server", MLFLOW_VERSION) },
            type: "Opaque",
            stringData: { [SERVING_SECRET_KEYS.username]: servingUserName(args.model), [SERVING_SECRET_KEYS.password]: this.password },
        }, child);
        this.user = {
            user: servingUserName(args.model),
            registeredModel: args.model.registeredModel,
            reference: args.model.reference,
            secretName: secret.metadata.name,
        };
        this.registerOutputs({});
    }
}

/** Arguments of {@link ModelServer}. */
export interface ModelServerArgs {
    readonly namespace: pulumi.Input<string>;
    readonly model: ServedModel;
    /** In-cluster URI of the tracking server, which the model is downloaded through. */
    readonly trackingUri: pulumi.Input<string>;
    readonly credentials: ServingCredentials;
}

/** One model's endpoint: Deployment, Service and, when scaled, a PodDisruptionBudget and an autoscaler. */
export class ModelServer extends pulumi.ComponentResource {
    /** In-cluster URL of the model's `/invocations`. */
    public readonly invocationsUrl: pulumi.Output<string>;
    /** Name of the Service. */
    public readonly serviceName: pulumi.Output<string>;
    /** Labels that select the model server's pods (for NetworkPolicies). */
    public readonly podSelector: Readonly<Record<string, string>>;
    /** Port the scoring server listens on in its pods. */
    public readonly containerPort: number = SCORING_PORT;

    constructor(name: string, args: ModelServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:kubernetes:ModelServer", name, {}, opts);
        const child = { parent: this };
        const model = args.model;
        const component = "model-server";
        const meta = { namespace: args.namespace, labels: { ...labels(name, component, MLFLOW_VERSION), "mlflow-k8s/served-model": model.name } };
        const selector = selectorLabels(name, component);
        this.podSelector = selector;

        const securityContext = containerSecurityContext();
        const volumes: k8s.types.input.core.v1.Volume[] = [emptyDir("model", MODEL_VOLUME_SIZE), emptyDir("tmp", TMP_SIZE)];
        const secret = args.credentials.user.secretName;
        const common: k8s.types.input.core.v1.EnvVar[] = [
            { name: "HOME", value: "/tmp" },
            { name: "MLFLOW_DISABLE_TELEMETRY", value: "true" },
            { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
        ];
        const download: k8s.types.input.core.v1.Container = {
            name: "download",
            image: MLFLOW_IMAGE,
            imagePullPolicy: "IfNotPresent",
            // MLflow's own error ends with a 403 that names neither the model nor the user: a last line does.
            command: ["sh", "-c", DOWNLOAD_SCRIPT],
            env: [
                ...common,
                { name: "MODEL_URI", value: model.modelUri },
                { name: "MODEL_DIR", value: MODEL_DIR },
                { name: "MLFLOW_TRACKING_URI", value: args.trackingUri },
                secretEnv("MLFLOW_TRACKING_USERNAME", secret, SERVING_SECRET_KEYS.username),
                secretEnv("MLFLOW_TRACKING_PASSWORD", secret, SERVING_SECRET_KEYS.password),
                // The server would send the client to S3 with presigned URLs: the pod has neither the
                // route nor the need. Every file comes through the tracking server, checked by its auth.
                { name: "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", value: "false" },
            ],
            resources: resourceRequirements({ cpuRequest: "100m", cpuLimit: "1", memoryRequest: "256Mi", memoryLimit: "1Gi" }, MODEL_STORAGE),
            securityContext,
            volumeMounts: [{ name: "model", mountPath: MODEL_DIR }, { name: "tmp", mountPath: "/tmp" }],
        };
        const health = { path: "/ping", port: "http" };
        const bounds = new k8s.core.v1.ConfigMap(`${name}-request-bounds`, { metadata: meta, data: readFiles(REQUEST_BOUNDS_SOURCE_DIR) }, child);
        volumes.push({ name: "request-bounds", configMap: { name: bounds.metadata.name, defaultMode: 0o444, items: [...REQUEST_BOUNDS_ITEMS] } });
        const serve: k8s.types.input.core.v1.Container = {
            name: "serve",
            image: model.image ?? MLFLOW_IMAGE,
            imagePullPolicy: "IfNotPresent",
            // What `mlflow models serve --env-manager local` runs, started directly: as PID 1 it drains
            // on SIGTERM (the CLI would ignore SIGTERM and be killed), and it needs no credentials.
            // MLflow's scoring app behind the request bounds (its factory wraps mlflow.pyfunc.scoring_server.app:app).
            command: ["uvicorn", "--host", "0.0.0.0", "--port", String(SCORING_PORT), "--workers", String(model.workers),
                "--timeout-graceful-shutdown", "20", "--limit-concurrency", String(SCORING_MAX_CONCURRENT * CONNECTIONS_PER_CONCURRENT_REQUEST),
                "--factory", "request_bounds:create_scoring_app"],
            env: [
                ...common,
                // MLflow's scoring app loads the model from this variable (mlflow/pyfunc/scoring_server).
                { name: "__pyfunc_model_path__", value: MODEL_DIR },
                { name: "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", value: String(SCORING_TIMEOUT_SECONDS) },
                { name: "PYTHONPATH", value: REQUEST_BOUNDS_DIR },
                { name: "REQUEST_BOUNDS_MODEL_NAME", value: model.name },
                ...requestBoundsEnv(scoringLimits(model)),
            ],
            ports: [{ name: "http", containerPort: SCORING_PORT, protocol: "TCP" }],
            resources: resourceRequirements(model.resources, MODEL_STORAGE),
            securityContext,
            // Nothing listens until the model is loaded: the startup probe gives it five minutes.
            startupProbe: { httpGet: health, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 60 },
            readinessProbe: { httpGet: health, periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 },
            livenessProbe: { tcpSocket: { port: "http" }, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 3 },
            lifecycle: { preStop: { exec: { command: ["sleep", String(PRE_STOP_SECONDS)] } } },
            volumeMounts: [
                { name: "model", mountPath: MODEL_DIR, readOnly: true }, { name: "tmp", mountPath: "/tmp" },
                { name: "request-bounds", mountPath: REQUEST_BOUNDS_DIR, readOnly: true },
            ],
        };

        const deployment = new k8s.apps.v1.Deployment(`${name}-deployment`, {
            metadata: { ...meta, name },
            spec: {
                replicas: model.maxReplicas > 0 ? undefined : model.minReplicas,
                selector: { matchLabels: selector },
                // A new pod must load the model and answer before an old one goes: a model that fails to
                // load leaves the old pods serving.
                strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
                template: {
                    metadata: {
                        labels: meta.labels,
                        // A new password (or model URI, in the spec itself) rolls the pods.
                        annotations: { "checksum/config": args.credentials.password.apply((p) => checksum(p, model.modelUri, readFiles(REQUEST_BOUNDS_SOURCE_DIR))) },
                    },
                    spec: {
                        automountServiceAccountToken: false,
                        enableServiceLinks: false,
                        securityContext: podSecurityContext(MLFLOW_UID),
                        terminationGracePeriodSeconds: PRE_STOP_SECONDS + 25,
                        affinity: {
                            podAntiAffinity: {
                                preferredDuringSchedulingIgnoredDuringExecution: [{
                                    weight: 100,
                                    podAffinityTerm: { topologyKey: "kubernetes.io/hostname", labelSelector: { matchLabels: selector } },
                                }],
                            },
                        },
                        initContainers: [download],
                        containers: [serve],
                        volumes,
                    },
                },
            },
        }, { ...child, customTimeouts: { create: "15m", update: "15m" } });

        const service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: { ...meta, name },
            spec: {
                type: "ClusterIP",
                selector,
                ports: [{ name: "http", port: MODEL_SERVICE_PORT, targetPort: "http", protocol: "TCP" }],
            },
        }, child);

        const scaled = model.maxReplicas > 0 || model.minReplicas > 1;
        if (scaled) {
            new k8s.policy.v1.PodDisruptionBudget(`${name}-pdb`, {
                metadata: meta,
                spec: { maxUnavailable: 1, selector: { matchLabels: selector } },
            }, child);
        }
        if (model.maxReplicas > 0) {
            new k8s.autoscaling.v2.HorizontalPodAutoscaler(`${name}-hpa`, {
                metadata: meta,
                spec: {
                    scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: deployment.metadata.name },
                    minReplicas: model.minReplicas,
                    maxReplicas: model.maxReplicas,
                    metrics: [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } } }],
                },
            }, child);
        }

        this.serviceName = service.metadata.name;
        this.invocationsUrl = pulumi.interpolate`http://${service.metadata.name}.${args.namespace}.svc.cluster.local/invocations`;
        this.registerOutputs({ serviceName: this.serviceName, invocationsUrl: this.invocationsUrl });
    }
}
