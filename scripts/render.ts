/**
 * Renders a stack offline: runs the program under the test harness's mocks with the stack's
 * real config and writes every Kubernetes object as YAML, one file per object (as `helm
 * template` would), plus `aws-resources.json` summarising the AWS resources, their key settings
 * and the Security Hub controls they pass. Secret values never reach the files.
 *
 *   npm run render -- <stack> [outDir]        (outDir defaults to out/<stack>)
 *
 * For review (what will the cluster receive?) and GitOps diffs; the CI linters read its output.
 */
import * as fs from "fs";
import * as path from "path";
import * as YAML from "yaml";
import { iamPolicyFindings, parsePolicy, S3_CONTROLS, s3ControlFindings } from "../policy/checks/aws";
import { bucketGroups, isKubernetesObject, POLICY_DOCUMENT_TYPES } from "../policy/checks/resources";
import { ProgramRun, ROOT, runProgram, STACKS, VARIANTS } from "../test/harness";

/** What replaces every value of a Secret's `data` and `stringData`. */
export const REDACTED = "<redacted>";

/** Apply order, as Helm uses it: what others refer to comes first. */
const KIND_ORDER = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "ServiceAccount", "Secret", "ConfigMap",
    "PersistentVolumeClaim", "Service", "StatefulSet", "Job", "CronJob", "Deployment", "HorizontalPodAutoscaler",
    "PodDisruptionBudget", "Ingress",
];

/** One Kubernetes object as the API server would receive it. */
export interface Manifest {
    /** File name: order, kind and name. */
    readonly file: string;
    readonly object: Record<string, any>;
}

/** Drops `undefined` and `null` members, which YAML would print as `null`. */
function clean(value: any): any {
    if (Array.isArray(value)) {
        return value.map(clean);
    }
    if (value !== null && typeof value === "object") {
        const out: Record<string, any> = {};
        for (const [k, v] of Object.entries(value)) {
            if (v !== undefined && v !== null) {
                out[k] = clean(v);
            }
        }
        return out;
    }
    return value;
}

function redact(values: Record<string, unknown> | undefined): Record<string, string> | undefined {
    return values === undefined ? undefined : Object.fromEntries(Object.keys(values).map((k) => [k, REDACTED]));
}

/**
 * Every Kubernetes object of a run, in apply order, with the name the provider gives it
 * (auto-named objects get the harness's stable suffix) and Secret values redacted.
 */
export function kubernetesManifests(run: ProgramRun): Manifest[] {
    const objects = run.resources.filter((r) => isKubernetesObject(r.type)).map((r) => {
        // What the program sends (the inputs), under the name the provider gives it; the recorded
        // state is the live object, with fields the API server adds.
        const { apiVersion, kind, metadata, ...rest } = clean({ ...r.inputs, metadata: { ...r.inputs.metadata, name: r.state.metadata.name } });
        const { name, namespace, ...meta } = metadata;
        const object: Record<string, any> = { apiVersion, kind, metadata: { name, namespace, ...meta }, ...rest };
        if (kind === "Secret") {
            for (const field of ["data", "stringData"]) {
                if (object[field] !== undefined) {
                    object[field] = redact(object[field]);
                }
            }
        }
        return object;
    });
    const rank = (kind: string): number => {
        const i = KIND_ORDER.indexOf(kind);
        return i < 0 ? KIND_ORDER.length : i;
    };
    objects.sort((a, b) => rank(a.kind) - rank(b.kind) || String(a.metadata.name).localeCompare(String(b.metadata.name)));
    return objects.map((object, i) => ({
        file: `${String(i + 1).padStart(2, "0")}-${String(object.kind).toLowerCase()}-${object.metadata.name}.yaml`,
        object,
    }));
}

/** Replaces the values at the given dotted paths. */
function redactPaths(value: any, paths: readonly string[]): any {
    const copy = structuredClone(value);
    for (const p of paths) {
        if (p === "") {
            return REDACTED;
        }
        const keys = p.split(".");
        let at = copy;
        for (const k of keys.slice(0, -1)) {
            at = at?.[k];
        }
        if (at !== undefined && at !== null) {
            at[keys[keys.length - 1]!] = REDACTED;
        }
    }
    return copy;
}

/**
 * The AWS side of a run: the provider's settings, each resource's inputs (secret inputs
 * redacted, policy documents parsed), and the FSBP and IAM checks on them.
 */
export function awsSummary(run: ProgramRun): Record<string, unknown> {
    const aws = run.resources.filter((r) => r.type.startsWith("aws:") || r.type === "pulumi:providers:aws");
    const resources = aws.map((r) => {
        const settings = redactPaths(clean(r.inputs), r.secretPaths);
        if (typeof settings.policy === "string") {
            settings.policy = parsePolicy(settings.policy);
        }
        return { type: r.type, name: r.name, settings };
    });
    const grouped = bucketGroups(run.resources.map((r) => ({ type: r.type, urn: r.urn, props: r.state, dependencies: r.dependencies })));
    const buckets = grouped.map((g) => {
        const findings = s3ControlFindings(g);
        return {
            bucket: g.bucket.bucket,
            controls: Object.fromEntries(Object.keys(S3_CONTROLS).map((id) => [id, findings.some((f) => f.rule === id) ? "FAILED" : "PASSED"])),
            findings,
        };
    });
    const policies = run.resources.filter((r) => POLICY_DOCUMENT_TYPES.includes(r.type)).map((r) => ({
        resource: `${r.type}::${r.name}`,
        findings: iamPolicyFindings(parsePolicy(r.inputs.policy)),
    }));
    return { stack: run.stack, resources, securityHub: buckets, iamPolicies: policies };
}

/** Writes a run's manifests and AWS summary into `outDir`, replacing earlier manifests there. */
export function writeRender(run: ProgramRun, outDir: string): { manifests: number; files: string[] } {
    fs.mkdirSync(outDir, { recursive: true });
    for (const f of fs.readdirSync(outDir)) {
        if (f.endsWith(".yaml")) {
            fs.rmSync(path.join(outDir, f));
        }
    }
    const manifests = kubernetesManifests(run);
    const files: string[] = [];
    for (const m of manifests) {
        const file = path.join(outDir, m.file);
        fs.writeFileSync(file, `# Rendered offline from stack ${run.stack}; Secret values redacted.\n${YAML.stringify(m.object, { lineWidth: 0 })}`);
        files.push(file);
    }
    const summary = path.join(outDir, "aws-resources.json");
    fs.writeFileSync(summary, `${JSON.stringify(awsSummary(run), null, 2)}\n`);
    files.push(summary);
    return { manifests: manifests.length, files };
}

async function main(argv: string[]): Promise<void> {
    const [stack, outDir] = argv;
    // `variant`, `gateway`: the minikube stack with every optional object (test/harness.ts VARIANTS), for the linters.
    const variants = Object.keys(VARIANTS);
    if (stack === undefined || !([...STACKS, ...variants] as readonly string[]).includes(stack)) {
        throw new Error(`usage: npm run render -- <stack> [outDir]; stack is one of ${STACKS.join(", ")}, or ${variants.join(", ")}`);
    }
    const dir = path.resolve(outDir ?? path.join(ROOT, "out", stack));
    const run = stack in VARIANTS ? await runProgram("minikube", VARIANTS[stack as keyof typeof VARIANTS]) : await runProgram(stack);
    const { manifests } = writeRender(run, dir);
    console.log(`rendered ${manifests} Kubernetes objects and aws-resources.json for stack ${stack} into ${path.relative(process.cwd(), dir) || "."}`);
}

if (require.main === module) {
    main(process.argv.slice(2)).catch((e: unknown) => {
        console.error(e instanceof Error ? e.message : e);
        process.exit(1);
    });
}
