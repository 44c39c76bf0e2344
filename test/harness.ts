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
    readonly resources: readonly RecordedResource[];
    /** The program's stack outputs, resolved. */
    readonly outputs: Record<string, unknown>;
    /** Stack outputs that resolved as secrets. */
    readonly secretOutputs: readonly string[];
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

/** Removes Pulumi's secret wrappers, noting where they were. */
function unwrap(value: any, at: string, secretPaths: string[]): any {
    if (Array.isArray(value)) {
        return value.map((v, i) => unwrap(v, join(at, String(i)), secretPaths));
    }
    if (value !== null && typeof value === "object") {
        if (value[SIG_KEY] === SECRET_SIG) {
            secretPaths.push(at);
            return unwrap(value.value, at, []);
        }
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) {
            out[k] = unwrap(v, join(at, k), secretPaths);
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
                // Pulumi's auto-naming: the logical name plus a random suffix, unless named.
                const metadata = { ...inputs.metadata, name: inputs.metadata.name ?? `${name}-${suffix.slice(0, 8)}` };
                return { id: metadata.namespace ? `${metadata.namespace}/${metadata.name}` : metadata.name, state: { ...inputs, metadata } };
            }
            return { id: `${name}-id`, state: inputs };
    }
}

/** The program's own modules, dropped from the require cache before each run. */
function clearProgramModules(): void {
    for (const file of Object.keys(require.cache)) {
        if (file.startsWith(ROOT) && !file.includes(`${path.sep}node_modules${path.sep}`) && !file.startsWith(path.join(ROOT, "test"))) {
            delete require.cache[file];
        }
    }
}

async function settle<T>(value: unknown): Promise<{ value: T; secret: boolean }> {
    if (pulumi.Output.isInstance(value)) {
        const secret = await pulumi.isSecret(value as pulumi.Output<unknown>);
        const resolved = await new Promise<T>((resolve) => (value as pulumi.Output<T>).apply((v) => { resolve(v); return v; }));
        return { value: resolved, secret };
    }
    return { value: value as T, secret: false };
}

/**
 * Runs `index.ts` under mocks for a stack. Rejects with the program's error when it throws (a
 * config error, for instance), in which case no resource is recorded.
 */
export async function runProgram(stack: string, overrides: Record<string, string | number | boolean | undefined> = {}): Promise<ProgramRun> {
    const resources: RecordedResource[] = [];
    const credentials: string[] = [];
    // The mock API passes neither parent nor dependencies to newResource: take them from the
    // monitor's requests, keyed by type and name (which the program keeps unique).
    const requests = new Map<string, { urn: string; parent: string; dependencies: string[]; protect: boolean; retainOnDelete: boolean }>();
    await pulumi.runtime.setMocks({
        newResource(args: pulumi.runtime.MockResourceArgs) {
            const secretPaths: string[] = [];
            const inputs = unwrap(args.inputs, "", secretPaths);
            const { id, state } = mockState(args.type, args.name, inputs, credentials);
            const request = requests.get(`${args.type}::${args.name}`)!;
            resources.push({
                type: args.type, name: args.name, id, inputs, secretPaths, provider: args.provider, state, ...request,
            });
            return { id, state };
        },
        call(args: pulumi.runtime.MockCallArgs) {
            // The program makes no data-source calls; one appearing is a change worth noticing.
            throw new Error(`unexpected provider call ${args.token} in the mocks harness`);
        },
    }, PROJECT, stack, false);
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
    pulumi.runtime.setAllConfig(stackConfig(stack, overrides), []);
    clearProgramModules();

    const program: Record<string, unknown> = await import(path.join(ROOT, "index"));
    const outputs: Record<string, unknown> = {};
    const secretOutputs: string[] = [];
    for (const [key, value] of Object.entries(program)) {
        const settled = await settle(value);
        outputs[key] = settled.value;
        if (settled.secret) {
            secretOutputs.push(key);
        }
    }
    // Resources whose inputs resolve late register after the outputs: wait until none arrive.
    let seen = -1;
    while (seen !== resources.length) {
        seen = resources.length;
        await new Promise((r) => setTimeout(r, 20));
    }

    const run: ProgramRun = {
        stack,
        resources,
        outputs,
        secretOutputs,
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
 * Ingress, default permission).
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
    mlflowMaxReplicas: 3,
    ingressHost: "mlflow.example.com",
    ingressClassName: "nginx",
    ingressTlsSecretName: "mlflow-tls",
});

let variant: Promise<ProgramRun> | undefined;

/** The minikube stack with {@link VARIANT} applied, run once and shared. */
export function variantRun(): Promise<ProgramRun> {
    variant ??= runProgram("minikube", VARIANT);
    return variant;
}
