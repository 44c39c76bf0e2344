/**
 * The one Pulumi mocks harness: runs the real program (`index.ts`) against a stack's real
 * configuration (Pulumi.yaml defaults, then Pulumi.<stack>.yaml, then any overrides), records
 * every resource with its resolved inputs, and reports which inputs arrived as secrets.
 *
 * The render script and the contract tests use it too, so what they check is what the program
 * builds, never a hand-written copy.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as YAML from "yaml";
import { PROJECT } from "../components/config";

export const ROOT = path.resolve(__dirname, "..");
/** Stacks the project ships a config file for. */
export const STACKS = ["minikube", "dev"] as const;
export type StackName = (typeof STACKS)[number];

/** The marker Pulumi wraps secret values in when they cross the (mock) monitor. */
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
const SIG_KEY = "4dabf18193072939515e22adb298388d";

/** One registered resource, as the mock monitor saw it. */
export interface RecordedResource {
    readonly type: string;
    readonly name: string;
    readonly urn: string;
    /** The id the mock assigned. */
    readonly id: string;
    /** Inputs with secret wrappers removed. */
    readonly inputs: any;
    /** Paths (`a.b.0.c`) of inputs that arrived as secrets. */
    readonly secretPaths: readonly string[];
    /** Paths of inputs that were unknown when the resource registered (only in a preview). */
    readonly unknownPaths: readonly string[];
    /** The explicit provider reference (`urn::id`), if any. */
    readonly provider?: string;
    /** URN of the parent resource (a component, or the stack when empty). */
    readonly parent: string;
    /** URNs this resource waits for (its `dependsOn` and input dependencies, expanded). */
    readonly dependencies: readonly string[];
    /** The `protect` resource option. */
    readonly protect: boolean;
    /** The `retainOnDelete` resource option. */
    readonly retainOnDelete: boolean;
    /** The outputs the mock returned. */
    readonly state: any;
}

/** What one run of the program produced. */
export interface ProgramRun {
    readonly stack: string;
    /** Whether the program ran as `pulumi preview` (outputs the provider omits are unknown). */
    readonly preview: boolean;
    readonly resources: readonly RecordedResource[];
    /** The program's stack outputs, resolved. */
    readonly outputs: Record<string, unknown>;
    /** Stack outputs that resolved as secrets. */
    readonly secretOutputs: readonly string[];
    /** Stack outputs whose value is unknown (only in a preview). */
    readonly unknownOutputs: readonly string[];
    /** The raw output objects, for `isSecret` checks. */
    readonly rawOutputs: Record<string, unknown>;
    /** Every generated credential value (random passwords, access keys), to hunt for leaks. */
    readonly credentials: readonly string[];
    /** Resources of a type. */
    ofType(type: string): RecordedResource[];
    /** The resource with this URN; throws when there is none. */
    byUrn(urn: string): RecordedResource;
    /** The one resource of a type whose name matches; throws when not exactly one. */
    one(type: string, nameMatch?: RegExp): RecordedResource;
}

/** Reads `Pulumi.yaml`'s config schema. */
export function projectSchema(): Record<string, { type: string; description?: string; default?: unknown }> {
    const doc = YAML.parse(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8"));
    return doc.config ?? {};
}

/**
 * The config a stack runs with, as the Pulumi CLI would assemble it: project defaults, then the
 * stack file, then `overrides` (keys without the project prefix; `undefined` removes a key).
 */
export function stackConfig(stack: string, overrides: Record<string, string | number | boolean | undefined> = {}): Record<string, string> {
    const config: Record<string, string> = {};
    for (const [key, spec] of Object.entries(projectSchema())) {
        if (spec.default !== undefined) {
            config[`${PROJECT}:${key}`] = String(spec.default);
        }
    }
    const file = path.join(ROOT, `Pulumi.${stack}.yaml`);
    const stackDoc = YAML.parse(fs.readFileSync(file, "utf8"));
    for (const [key, value] of Object.entries(stackDoc.config ?? {})) {
        config[key] = typeof value === "string" ? value : JSON.stringify(value);
    }
    for (const [key, value] of Object.entries(overrides)) {
        const full = `${PROJECT}:${key}`;
        if (value === undefined) {
            delete config[full];
        } else {
            config[full] = String(value);
        }
    }
    return config;
}

/** Removes Pulumi's secret wrappers, noting where they were, and notes unknown values. */
function unwrap(value: any, at: string, paths: { secret: string[]; unknown: string[] }): any {
    if (pulumi.isUnknown(value)) {
        // A preview delivers an input whose value is not known yet as the SDK's Unknown marker.
        paths.unknown.push(at);
        return undefined;
    }
    if (Array.isArray(value)) {
        return value.map((v, i) => unwrap(v, join(at, String(i)), paths));
    }
    if (value !== null && typeof value === "object") {
        if (value[SIG_KEY] === SECRET_SIG) {
            paths.secret.push(at);
            return unwrap(value.value, at, { secret: [], unknown: paths.unknown });
        }
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) {
            out[k] = unwrap(v, join(at, k), paths);
        }
        return out;
    }
    return value;
}

function join(a: string, b: string): string {
    return a === "" ? b : `${a}.${b}`;
}

/** A stable fake value for a resource, so repeated runs produce identical manifests. */
function fake(seed: string, length: number, alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"): string {
    const bytes = crypto.createHash("sha512").update(seed).digest();
    let out = "";
    for (let i = 0; i < length; i++) {
        out += alphabet[bytes[i % bytes.length]! % alphabet.length];
    }
    return out;
}

/** Mock outputs for the resource types the program creates; anything else echoes its inputs. */
function mockState(type: string, name: string, inputs: any, credentials: string[]): { id: string; state: any } {
    const suffix = fake(`${type}/${name}`, 7);
    switch (type) {
        case "aws:s3/bucket:Bucket": {
            const bucket = inputs.bucket ?? `${inputs.bucketPrefix ?? name}${fake(name, 26, "0123456789")}`;
            return { id: bucket, state: { ...inputs, bucket, arn: `arn:aws:s3:::${bucket}` } };
        }
        case "aws:iam/user:User": {
            const userName = inputs.name ?? `${name}-${suffix}`;
            return { id: userName, state: { ...inputs, name: userName, arn: `arn:aws:iam::123456789012:user${inputs.path ?? "/"}${userName}` } };
        }
        case "aws:iam/role:Role": {
            // Auto-named like users and policies; the ARN carries the path (IAM Role reference).
            const roleName = inputs.name ?? `${name}-${suffix}`;
            return { id: roleName, state: { ...inputs, name: roleName, arn: `arn:aws:iam::123456789012:role${inputs.path ?? "/"}${roleName}`, uniqueId: `AROA${fake(`role/${name}`, 17, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")}` } };
        }
        case "aws:iam/policy:Policy": {
            const policyName = inputs.name ?? `${name}-${suffix}`;
            return { id: `arn:aws:iam::123456789012:policy${inputs.path ?? "/"}${policyName}`, state: { ...inputs, name: policyName, arn: `arn:aws:iam::123456789012:policy${inputs.path ?? "/"}${policyName}` } };
        }
        case "aws:iam/accessKey:AccessKey": {
            // Generated per name, and shaped unlike real keys so no scanner mistakes them.
            const id = `mockkeyid-${fake(`id/${name}`, 12)}`;
            const secret = `mock-secret-${fake(`secret/${name}`, 28)}`;
            credentials.push(id, secret);
            return { id, state: { ...inputs, secret } };
        }
        case "random:index/randomPassword:RandomPassword": {
            const special = inputs.special === false ? "" : (inputs.overrideSpecial ?? "!@#$%&*()-_=+[]{}<>:?");
            // One of each class the generator guarantees, then filler up to the exact length.
            const head = `Aa1${special.slice(0, 1)}`;
            const result = head + fake(`pw/${name}`, Math.max(0, (inputs.length ?? 16) - head.length),
                `abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789${special}`);
            credentials.push(result);
            return { id: `${name}-id`, state: { ...inputs, result } };
        }
        default:
            if (type.startsWith("kubernetes:") && inputs.metadata !== undefined) {
                const state = liveObject(type, name, inputs);
                const metadata = state.metadata;
                return { id: metadata.namespace ? `${metadata.namespace}/${metadata.name}` : metadata.name, state };
            }
            return { id: `${name}-id`, state: inputs };
    }
}

/**
 * What the Kubernetes provider returns for an object: the live object as the API server stores
 * it, never the inputs. pulumi-kubernetes reads the object back after create or update (its
 * `await` package ends every operation with a `Get`), and a preview of an unchanged resource
 * shows the outputs of the last update, the same live object. Each rule below says where it comes
 * from; what it leaves out (managedFields, most status) no program input depends on.
 */
function liveObject(type: string, name: string, inputs: any): any {
    const hex = fake(`${type}/${name}/hex`, 8, "0123456789abcdef");
    const uid = [8, 4, 4, 4, 12].map((n, i) => fake(`${type}/${name}/uid${i}`, n, "0123456789abcdef")).join("-");
    const state = structuredClone(inputs);
    state.metadata = {
        ...state.metadata,
        // Auto-naming: pulumi-kubernetes `metadata.AssignNameIfAutonamable` appends a dash and 8
        // random hex characters to the logical name when metadata.name is not set.
        name: inputs.metadata.name ?? `${name}-${hex}`,
        // Set by the API server on every object (ObjectMeta, Kubernetes API reference).
        uid,
        resourceVersion: "1",
        creationTimestamp: "2026-01-01T00:00:00Z",
    };
    switch (type) {
        case "kubernetes:core/v1:Namespace":
            // The API server labels every namespace with its own name (Kubernetes 1.22+).
            state.metadata.labels = { ...state.metadata.labels, "kubernetes.io/metadata.name": state.metadata.name };
            state.spec = { finalizers: ["kubernetes"] };
            state.status = { phase: "Active" };
            break;
        case "kubernetes:core/v1:Secret": {
            // The API server stores `stringData` merged into base64 `data` and never returns
            // `stringData` (core/v1 Secret reference: "stringData ... is never output when reading").
            const data: Record<string, string> = { ...(inputs.data ?? {}) };
            for (const [k, v] of Object.entries<string>(inputs.stringData ?? {})) {
                data[k] = Buffer.from(v, "utf8").toString("base64");
            }
            delete state.stringData;
            state.data = data;
            state.type = inputs.type ?? "Opaque";
            break;
        }
        case "kubernetes:core/v1:Service":
            // Service defaulting: a cluster IP is allocated unless headless; protocol TCP.
            if (state.spec.clusterIP === undefined) {
                const ip = `10.96.${parseInt(hex.slice(0, 2), 16)}.${parseInt(hex.slice(2, 4), 16)}`;
                state.spec.clusterIP = ip;
                state.spec.clusterIPs = [ip];
            }
            state.spec.type ??= "ClusterIP";
            state.spec.sessionAffinity ??= "None";
            state.spec.ipFamilies ??= ["IPv4"];
            state.spec.ipFamilyPolicy ??= "SingleStack";
            state.spec.ports = state.spec.ports.map((p: any) => ({ protocol: "TCP", targetPort: p.port, ...p }));
            break;
        case "kubernetes:core/v1:PersistentVolumeClaim":
            // The DefaultStorageClass admission plugin fills in the cluster default; the binder
            // names the volume; Filesystem is the default volumeMode.
            state.spec.storageClassName ??= "standard";
            state.spec.volumeMode ??= "Filesystem";
            state.spec.volumeName = `pvc-${uid}`;
            state.status = { phase: "Bound", accessModes: state.spec.accessModes, capacity: { storage: state.spec.resources.requests.storage } };
            break;
        case "kubernetes:batch/v1:Job": {
            // The API server generates the selector and labels the pod template with it
            // (`manualSelector` unset: Job reference, "selector").
            const generated = { "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": state.metadata.name };
            state.spec.selector = { matchLabels: { "batch.kubernetes.io/controller-uid": uid } };
            state.spec.template.metadata = { ...state.spec.template.metadata, labels: { ...state.spec.template.metadata?.labels, ...generated } };
            state.status = { succeeded: 1 };
            break;
        }
        case "kubernetes:apps/v1:Deployment":
        case "kubernetes:apps/v1:StatefulSet":
            state.status = { observedGeneration: 1, readyReplicas: state.spec.replicas ?? 1 };
            break;
        default:
            break;
    }
    return state;
}

/** The program's own modules, dropped from the require cache before each run. */
function clearProgramModules(): void {
    for (const file of Object.keys(require.cache)) {
        const isTest = file.startsWith(path.join(ROOT, "test")) && !file.startsWith(path.join(ROOT, "test", "fixtures"));
        if (file.startsWith(ROOT) && !file.includes(`${path.sep}node_modules${path.sep}`) && !isTest) {
            delete require.cache[file];
        }
    }
}

async function settle<T>(value: unknown): Promise<{ value: T | undefined; secret: boolean; known: boolean }> {
    if (pulumi.Output.isInstance(value)) {
        const output = value as pulumi.Output<T>;
        const secret = await pulumi.isSecret(output);
        // An unknown output never runs its apply callbacks: ask first.
        const known = await (output as any).isKnown as boolean;
        if (!known) {
            return { value: undefined, secret, known };
        }
        const resolved = await new Promise<T>((resolve) => output.apply((v) => { resolve(v); return v; }));
        return { value: resolved, secret, known };
    }
    return { value: value as T, secret: false, known: true };
}

/** How {@link runProgram} runs the program. */
export interface RunOptions {
    /** Run as `pulumi preview` does: outputs a provider does not return stay unknown. */
    readonly preview?: boolean;
    /** Replacement values for exports of components/versions.ts (a version bump). */
    readonly versions?: Readonly<Record<string, string>>;
    /** The program module to run, instead of `index.ts` (fixtures of the harness's own specs). */
    readonly entry?: string;
    /**
     * Config keys set without `--secret`, among those the CLI would otherwise have encrypted
     * ({@link SECRET_CONFIG_KEYS}): a user's mistake the program must refuse.
     */
    readonly plaintextConfig?: readonly string[];
    /**
     * Further config keys set with `--secret` (a structured key holding a secret leaf counts as one,
     * as the CLI reports it).
     */
    readonly secretConfig?: readonly string[];
}

/** Config keys a user sets with `pulumi config set --secret`; the harness passes them as secrets. */
export const SECRET_CONFIG_KEYS: readonly string[] = ["databasePassword"];

/**
 * Runs `index.ts` under mocks for a stack. Rejects with the program's error when it throws (a
 * config error, for instance), in which case no resource is recorded.
 */
export async function runProgram(stack: string, overrides: Record<string, string | number | boolean | undefined> = {},
    options: RunOptions = {}): Promise<ProgramRun> {
    const preview = options.preview ?? false;
    const resources: RecordedResource[] = [];
    const credentials: string[] = [];
    // The mock API passes neither parent nor dependencies to newResource: take them from the
    // monitor's requests, keyed by type and name (which the program keeps unique).
    const requests = new Map<string, { urn: string; parent: string; dependencies: string[]; protect: boolean; retainOnDelete: boolean }>();
    await pulumi.runtime.setMocks({
        newResource(args: pulumi.runtime.MockResourceArgs) {
            if (args.id !== undefined && args.id !== "" && !requests.has(`${args.type}::${args.name}`)) {
                // A read of an object the program does not manage (`Secret.get`): the provider finds
                // the live object by its id, `namespace/name`. Not recorded: the program creates nothing.
                const [namespace, objectName] = args.id.includes("/") ? args.id.split("/", 2) : [undefined, args.id];
                return { id: args.id, state: { metadata: { name: objectName, namespace, uid: `read-${objectName}`, resourceVersion: "1" }, data: {} } };
            }
            const paths = { secret: [] as string[], unknown: [] as string[] };
            const inputs = unwrap(args.inputs, "", paths);
            const { id, state } = mockState(args.type, args.name, inputs, credentials);
            const request = requests.get(`${args.type}::${args.name}`)!;
            resources.push({
                type: args.type, name: args.name, id, inputs, secretPaths: paths.secret, unknownPaths: paths.unknown,
                provider: args.provider, state, ...request,
            });
            return { id, state };
        },
        call(args: pulumi.runtime.MockCallArgs) {
            // The program makes no data-source calls; one appearing is a change worth noticing.
            throw new Error(`unexpected provider call ${args.token} in the mocks harness`);
        },
    }, PROJECT, stack, preview);
    const monitor: any = pulumi.runtime.getMonitor();
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: any, callback: unknown) => {
        const key = `${req.getType()}::${req.getName()}`;
        if (requests.has(key)) {
            throw new Error(`two resources named ${key}: logical names must be unique`);
        }
        const parent: string = req.getParent();
        requests.set(key, {
            urn: monitor.newUrn(parent, req.getType(), req.getName()),
            parent,
            dependencies: req.getDependenciesList(),
            protect: req.getProtect() === true,
            retainOnDelete: req.getRetainondelete() === true,
        });
        return register(req, callback);
    };
    const secretKeys = [...SECRET_CONFIG_KEYS.filter((k) => overrides[k] !== undefined && !(options.plaintextConfig ?? []).includes(k)), ...options.secretConfig ?? []]
        .map((k) => `${PROJECT}:${k}`);
    pulumi.runtime.setAllConfig(stackConfig(stack, overrides), secretKeys);
    clearProgramModules();
    if (options.versions !== undefined) {
        const versions = require(path.join(ROOT, "components", "versions"));
        for (const [key, value] of Object.entries(options.versions)) {
            if (typeof versions[key] !== "string") {
                throw new Error(`components/versions.ts exports no string ${key}`);
            }
            versions[key] = value;
        }
    }

    // An exception inside an apply() rejects a promise no one awaits: the resource it feeds is never
    // registered and the program still "succeeds". Catch them, and fail the run.
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown): void => { rejections.push(reason); };
    process.on("unhandledRejection", onRejection);
    const program: Record<string, unknown> = await import(options.entry ?? path.join(ROOT, "index"));
    const outputs: Record<string, unknown> = {};
    const secretOutputs: string[] = [];
    const unknownOutputs: string[] = [];
    for (const [key, value] of Object.entries(program)) {
        const settled = await settle(value);
        outputs[key] = settled.value;
        if (settled.secret) {
            secretOutputs.push(key);
        }
        if (!settled.known) {
            unknownOutputs.push(key);
        }
    }
    // Resources whose inputs resolve late register after the outputs: wait until none arrive.
    let seen = -1;
    while (seen !== resources.length) {
        seen = resources.length;
        await new Promise((r) => setTimeout(r, 20));
    }
    process.off("unhandledRejection", onRejection);
    if (rejections.length > 0) {
        throw new Error(`the program failed while registering resources: ${rejections.map(String).join("; ")}`);
    }

    const run: ProgramRun = {
        stack,
        preview,
        resources,
        outputs,
        secretOutputs,
        unknownOutputs,
        rawOutputs: program,
        credentials,
        ofType: (type) => resources.filter((r) => r.type === type),
        byUrn(urn) {
            const found = resources.find((r) => r.urn === urn);
            if (!found) {
                throw new Error(`no resource with URN ${urn}`);
            }
            return found;
        },
        one(type, nameMatch) {
            const found = resources.filter((r) => r.type === type && (nameMatch === undefined || nameMatch.test(r.name)));
            if (found.length !== 1) {
                throw new Error(`expected one ${type}${nameMatch ? ` matching ${nameMatch}` : ""}, found ${found.length}`);
            }
            return found[0]!;
        },
    };
    return run;
}

const runs = new Map<string, Promise<ProgramRun>>();

/**
 * The program run for a stack with its unmodified configuration, shared by every spec that only
 * reads it (a run takes about a second; the suite would otherwise repeat it dozens of times).
 */
export function stackRun(stack: StackName): Promise<ProgramRun> {
    let run = runs.get(stack);
    if (run === undefined) {
        run = runProgram(stack);
        runs.set(stack, run);
    }
    return run;
}

/**
 * Every optional setting turned away from the stack file at once, so one extra run covers the
 * variants the specs check (KMS, protection, storage, retention, emulator endpoint, autoscaling,
 * Ingress, default permission, served models, garbage collection).
 */
export const VARIANT = Object.freeze({
    bucketForceDestroy: false,
    bucketKmsKeyArn: "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    protectData: true,
    postgresStorageClass: "fast-ssd",
    postgresStorageSize: "5Gi",
    postgresVolumeRetention: "Retain",
    awsEndpoint: "http://127.0.0.1:5000",
    mlflowDefaultPermission: "EDIT",
    mlflowReplicas: 2,
    mlflowMaxReplicas: 3,
    // Room for three replicas' pools: 3 x 2 workers x 4 engines x (5 + 10), and PostgreSQL's memory for them.
    mlflowDbPoolSize: 5,
    mlflowDbMaxOverflow: 10,
    postgresMaxConnections: 400,
    postgresMemoryLimit: "2Gi",
    ingressHost: "mlflow.example.com",
    ingressClassName: "nginx",
    ingressTlsSecretName: "mlflow-tls",
    // Garbage collection weekly, with a grace period in days and hours.
    gcSchedule: "0 4 * * sun",
    gcOlderThan: "1d12h",
    // One autoscaled model by alias on its own image, one fixed version on the MLflow image.
    servedModels: JSON.stringify([
        { name: "iris", model: "models:/iris@champion", minReplicas: 2, maxReplicas: 4, workers: 2, cpuLimit: "2", memoryLimit: "2Gi",
            image: "registry.example.com/models/iris:1.4.2", maxRequestBodySize: "64Mi" },
        { name: "churn", model: "models:/Churn Model/3" },
    ]),
    // Every escape hatch, applied to every pod: a proxy and a variable from a Secret, a mirror with its
    // pull secret, a dedicated node pool spread over zones, the team's metadata.
    extraEnv: JSON.stringify([
        { name: "HTTPS_PROXY", value: "http://proxy.example.com:3128" },
        { name: "NO_PROXY", value: ".svc,.cluster.local,10.0.0.0/8" },
        // A credential for the server and its Job only: it never reaches the scoring servers, which run model code.
        { name: "SENTRY_DSN", secretName: "observability", secretKey: "sentry-dsn", optional: true, workloads: ["tracking-server", "db-migration"] },
    ]),
    imagePullSecrets: "registry-credentials",
    imageMirrors: JSON.stringify({ "ghcr.io": "registry.example.com/ghcr", "docker.io": "registry.example.com/dockerhub" }),
    nodeSelector: JSON.stringify({ "kubernetes.io/arch": "amd64", "node.example.com/pool": "ml" }),
    tolerations: JSON.stringify([{ key: "dedicated", operator: "Equal", value: "ml", effect: "NoSchedule" }]),
    topologySpreadConstraints: JSON.stringify([{ maxSkew: 1, topologyKey: "topology.kubernetes.io/zone", whenUnsatisfiable: "ScheduleAnyway" }]),
    podAnnotations: JSON.stringify({ "example.com/team": "ml-platform" }),
    podLabels: JSON.stringify({ team: "ml-platform" }),
    // Prometheus Operator's ServiceMonitor, labelled for kube-prometheus-stack's selector.
    serviceMonitor: true,
    serviceMonitorLabels: JSON.stringify({ release: "kube-prometheus-stack" }),
});

/**
 * The other way to publish the server, which excludes an Ingress: an HTTPRoute to a shared Gateway
 * in another namespace, on its TLS listener, its proxies in Envoy Gateway's namespace, the server
 * under a path of the shared host.
 */
export const GATEWAY_VARIANT = Object.freeze({
    ingressHost: "mlflow.example.com",
    gatewayName: "shared",
    gatewayNamespace: "gateway-system",
    gatewaySectionName: "https",
    gatewayScheme: "https",
    ingressControllerNamespace: "envoy-gateway-system",
    corsAllowedOrigins: "https://notebooks.example.com",
    // Sharing the host with other tools: everything under /mlflow.
    mlflowStaticPrefix: "/mlflow",
});

/** The variant runs by label: every optional object, and the Gateway API alternative. */
export const VARIANTS = Object.freeze({ variant: VARIANT, gateway: GATEWAY_VARIANT });
export type VariantLabel = keyof typeof VARIANTS;

const variants = new Map<VariantLabel, Promise<ProgramRun>>();

/** The minikube stack with a variant's settings applied ({@link VARIANT} by default), run once and shared. */
export function variantRun(label: VariantLabel = "variant"): Promise<ProgramRun> {
    let run = variants.get(label);
    if (run === undefined) {
        run = runProgram("minikube", VARIANTS[label]);
        variants.set(label, run);
    }
    return run;
}

/** Names of the models a run serves (its `modelEndpoints` output). */
export function servedModelNames(run: ProgramRun): string[] {
    return Object.keys((run.outputs.modelEndpoints ?? {}) as object).sort();
}
