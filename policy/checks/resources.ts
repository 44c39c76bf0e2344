/**
 * Grouping of a stack's resources for the checks that span several of them, in a form both the
 * policy pack (Pulumi's `PolicyResource`) and the offline render (the mocks harness) can give.
 */
import { BUCKET_COMPANION_TYPES, BUCKET_TYPE, BucketConfiguration, parsePolicy } from "./aws";

/** The little the grouping needs to know of a resource. */
export interface ResourceLike {
    readonly type: string;
    readonly urn: string;
    /** Inputs (or outputs, once known). */
    readonly props: Record<string, any>;
    /** URNs of the resources it depends on. */
    readonly dependencies: readonly string[];
}

/** A bucket with its companion resources, and the bucket's URN. */
export interface BucketGroup extends BucketConfiguration {
    readonly urn: string;
}

/**
 * Each bucket with the resources that configure it. A companion belongs to a bucket when it
 * depends on it (as it does when it takes `bucket.id` as input) or names it in `bucket`.
 */
export function bucketGroups(resources: readonly ResourceLike[]): BucketGroup[] {
    return resources.filter((r) => r.type === BUCKET_TYPE).map((b) => {
        const name: unknown = b.props.bucket;
        const companion = (type: string): Record<string, any> | undefined =>
            resources.find((r) => r.type === type && (r.dependencies.includes(b.urn) || (name !== undefined && r.props.bucket === name)))?.props;
        const policy = companion(BUCKET_COMPANION_TYPES.policy);
        return {
            urn: b.urn,
            arn: b.props.arn ?? `arn:aws:s3:::${String(name)}`,
            bucket: b.props,
            publicAccessBlock: companion(BUCKET_COMPANION_TYPES.publicAccessBlock),
            ownershipControls: companion(BUCKET_COMPANION_TYPES.ownershipControls),
            encryption: companion(BUCKET_COMPANION_TYPES.encryption),
            versioning: companion(BUCKET_COMPANION_TYPES.versioning),
            lifecycle: companion(BUCKET_COMPANION_TYPES.lifecycle),
            policy: policy === undefined ? undefined : parsePolicy(policy.policy),
        };
    });
}

/** Resource types whose `policy` property is an IAM policy document. */
export const POLICY_DOCUMENT_TYPES: readonly string[] = [
    "aws:iam/policy:Policy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/groupPolicy:GroupPolicy",
    "aws:s3/bucketPolicy:BucketPolicy",
];

/** Kubernetes resource types hold the object itself as props; the provider is not one. */
export function isKubernetesObject(type: string): boolean {
    return type.startsWith("kubernetes:");
}
