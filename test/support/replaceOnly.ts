/**
 * Which changes make the real providers replace a resource, as data with its source, and which
 * of the program's resources hold data. The mocks know nothing of replacements; the replacement
 * spec diffs two program runs against these tables instead.
 */
import type { RecordedResource } from "../harness";

/**
 * Replace-only fields of the Kubernetes kinds the program creates, as JSON paths into the inputs.
 * A change anywhere under a path replaces the object (the provider matches them as prefixes).
 *
 * Source: pulumi/pulumi-kubernetes `provider/pkg/provider/diff.go`, the `forceNew` table
 * (commit cafe8c4ac4de156415093291bffc63b6e1c97d1e, the generation of @pulumi/kubernetes 4.34),
 * and `provider.go` `Diff`, which adds `.metadata.name` and `.metadata.namespace` for every kind.
 * Secret and ConfigMap data are replace-only because `enableSecretMutable` and
 * `enableConfigMapMutable` are off (their default). Kinds absent from the table (Namespace,
 * CronJob, NetworkPolicy, policy/v1 PodDisruptionBudget, autoscaling/v2 HPA, Ingress,
 * ServiceAccount) have only the metadata rule.
 */
export const KUBERNETES_REPLACE_ONLY: Readonly<Record<string, readonly string[]>> = {
    "*": ["metadata.name", "metadata.namespace"],
    "kubernetes:core/v1:PersistentVolumeClaim": ["spec.accessModes", "spec.selector", "spec.storageClassName", "spec.volumeName"],
    "kubernetes:apps/v1:StatefulSet": ["spec.podManagementPolicy", "spec.revisionHistoryLimit", "spec.selector", "spec.serviceName", "spec.volumeClaimTemplates"],
    "kubernetes:apps/v1:Deployment": ["spec.selector"],
    "kubernetes:core/v1:Service": ["spec.clusterIP"],
    "kubernetes:core/v1:Secret": ["type", "stringData", "data"],
    "kubernetes:core/v1:ConfigMap": ["binaryData", "data"],
    "kubernetes:batch/v1:Job": ["spec.completions", "spec.parallelism", "spec.selector", "spec.template"],
};

/**
 * Replace-only (ForceNew) inputs of the AWS resources that hold data, from the bridged Terraform
 * schema of pulumi-aws 7.x (`aws_s3_bucket`: bucket, bucket_prefix, object_lock_enabled), plus
 * `region`: pulumi-aws 7 fills every regional resource's `region` from its provider and replaces
 * the resource when it changes (pulumi/pulumi-aws PR #5656).
 */
export const AWS_REPLACE_ONLY: Readonly<Record<string, readonly string[]>> = {
    "aws:s3/bucket:Bucket": ["bucket", "bucketPrefix", "objectLockEnabled", "region"],
};

/**
 * Provider inputs whose change replaces the provider, and with it every resource it manages.
 * Kubernetes (provider.go `DiffConfig`): with `clusterIdentifier` set, only a change of it
 * ("an unchanged clusterIdentifier suppresses all replaces"); without it, whenever the active
 * cluster resolved from `kubeconfig`, `context` and `cluster` changes, which offline means any
 * change of them. AWS v7 providers are never replaced; a region change reaches the resources
 * through their `region` (above).
 */
export function providerReplaceOnly(provider: RecordedResource): readonly string[] {
    if (provider.type !== "pulumi:providers:kubernetes") {
        return [];
    }
    return provider.inputs.clusterIdentifier !== undefined ? ["clusterIdentifier"] : ["kubeconfig", "context", "cluster"];
}

/**
 * Whether a resource holds data that a replacement would destroy: the database volume claim, a
 * StatefulSet that creates its volume from a claim template, the namespace holding them, and the
 * bucket with every artifact and backup.
 */
export function holdsData(r: RecordedResource): boolean {
    switch (r.type) {
        case "kubernetes:core/v1:PersistentVolumeClaim":
        case "kubernetes:core/v1:Namespace":
        case "aws:s3/bucket:Bucket":
            return true;
        case "kubernetes:apps/v1:StatefulSet":
            return (r.inputs.spec?.volumeClaimTemplates ?? []).length > 0;
        default:
            return false;
    }
}

/** The value at a dotted path. */
function at(value: any, path: string): unknown {
    return path.split(".").reduce((v, k) => (v === undefined || v === null ? undefined : v[k]), value);
}

/** The effective inputs the provider diffs: a bucket's region comes from its provider. */
function effectiveInputs(r: RecordedResource, providerOf: (r: RecordedResource) => RecordedResource | undefined): any {
    if (r.type.startsWith("aws:")) {
        return { region: providerOf(r)?.inputs.region, ...r.inputs };
    }
    return r.inputs;
}

/** Replace-only paths of a resource type. */
export function replaceOnlyPaths(type: string): readonly string[] {
    if (type.startsWith("kubernetes:")) {
        return [...KUBERNETES_REPLACE_ONLY["*"]!, ...(KUBERNETES_REPLACE_ONLY[type] ?? [])];
    }
    return AWS_REPLACE_ONLY[type] ?? [];
}

/** Why a resource would be replaced or deleted going from one run to another. */
export interface Replacement {
    readonly resource: string;
    readonly type: string;
    /** The replace-only paths that changed, `provider.<input>` for a provider, or `deleted`. */
    readonly fields: readonly string[];
}

/**
 * The data-holding resources of `before` that `after` would replace (a replace-only field or the
 * provider's identity changed) or delete (no longer in the program), matched by URN.
 */
export function dataReplacements(before: { resources: readonly RecordedResource[] }, after: { resources: readonly RecordedResource[] }): Replacement[] {
    const providerIn = (run: { resources: readonly RecordedResource[] }) => (r: RecordedResource) =>
        r.provider === undefined ? undefined : run.resources.find((p) => `${p.urn}::${p.id}` === r.provider);
    const out: Replacement[] = [];
    for (const old of before.resources.filter(holdsData)) {
        const next = after.resources.find((r) => r.urn === old.urn);
        if (next === undefined) {
            out.push({ resource: old.name, type: old.type, fields: ["deleted"] });
            continue;
        }
        const [a, b] = [effectiveInputs(old, providerIn(before)), effectiveInputs(next, providerIn(after))];
        const fields = replaceOnlyPaths(old.type).filter((p) => JSON.stringify(at(a, p)) !== JSON.stringify(at(b, p)));
        const [pa, pb] = [providerIn(before)(old), providerIn(after)(next)];
        for (const input of pa === undefined ? [] : providerReplaceOnly(pa)) {
            if (JSON.stringify(pa!.inputs[input]) !== JSON.stringify(pb?.inputs[input])) {
                fields.push(`provider.${input}`);
            }
        }
        if (fields.length > 0) {
            out.push({ resource: old.name, type: old.type, fields });
        }
    }
    return out;
}
