/**
 * AWS Security Hub controls (Foundational Security Best Practices) for an S3 bucket and its
 * companion resources, and the IAM wildcard rules, as pure functions over resource properties
 * as @pulumi/aws 7 names them. The unit tests run them on the program's resources and on broken
 * fixtures; the policy pack runs them at `pulumi preview`.
 */
import type { Finding } from "./findings";

type Obj = Record<string, any>;

/** Resource types of the separate resources that configure a bucket in @pulumi/aws 7. */
export const BUCKET_COMPANION_TYPES = {
    publicAccessBlock: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    ownershipControls: "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    encryption: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    versioning: "aws:s3/bucketVersioning:BucketVersioning",
    lifecycle: "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    policy: "aws:s3/bucketPolicy:BucketPolicy",
} as const;
export const BUCKET_TYPE = "aws:s3/bucket:Bucket";

/** A bucket's properties together with those of the resources that configure it. */
export interface BucketConfiguration {
    /** The bucket's ARN, as policies name it (used to check what the bucket policy covers). */
    readonly arn: string;
    readonly bucket: Obj;
    readonly publicAccessBlock?: Obj;
    readonly ownershipControls?: Obj;
    readonly encryption?: Obj;
    readonly versioning?: Obj;
    readonly lifecycle?: Obj;
    /** The bucket policy document, parsed. */
    readonly policy?: PolicyDocumentLike;
}

/** An IAM policy document as JSON gives it (single values or lists). */
export interface PolicyDocumentLike {
    readonly Statement?: Obj[] | Obj;
}

/** The FSBP controls checked on every bucket, with their titles. */
export const S3_CONTROLS: Readonly<Record<string, string>> = Object.freeze({
    "S3.4": "S3 buckets should have server-side encryption enabled",
    "S3.5": "S3 general purpose buckets should require requests to use SSL",
    "S3.8": "S3 general purpose buckets should block public access",
    "S3.12": "ACLs should not be used to manage user access to S3 general purpose buckets",
    "S3.13": "S3 general purpose buckets should have Lifecycle configurations",
    "S3.14": "S3 general purpose buckets should have versioning enabled",
});

const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Parses a policy given as JSON text or as an object. */
export function parsePolicy(policy: unknown): PolicyDocumentLike | undefined {
    if (typeof policy === "string") {
        return JSON.parse(policy) as PolicyDocumentLike;
    }
    return policy === undefined || policy === null ? undefined : (policy as PolicyDocumentLike);
}

/** Findings of FSBP S3.4, S3.5, S3.8, S3.12, S3.13 and S3.14 for one bucket. */
export function s3ControlFindings(b: BucketConfiguration): Finding[] {
    const out: Finding[] = [];
    const add = (rule: keyof typeof S3_CONTROLS & string, path: string, message: string): void => {
        out.push({ rule, path, message: `${S3_CONTROLS[rule]}: ${message}` });
    };

    const algorithms = list<Obj>(b.encryption?.rules).map((r) => r.applyServerSideEncryptionByDefault?.sseAlgorithm);
    if (!algorithms.some((a) => a === "AES256" || a === "aws:kms" || a === "aws:kms:dsse")) {
        add("S3.4", "encryption.rules", "add a BucketServerSideEncryptionConfiguration with AES256 or aws:kms");
    }

    if (!requiresTls(b.policy, b.arn)) {
        add("S3.5", "policy", "the bucket policy must Deny s3:* to every principal on the bucket and its objects when aws:SecureTransport is false");
    }

    const pab = b.publicAccessBlock ?? {};
    for (const flag of ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"]) {
        if (pab[flag] !== true) {
            add("S3.8", `publicAccessBlock.${flag}`, `${flag} must be true`);
        }
    }

    const ownership = list<Obj>(b.ownershipControls?.rule ?? b.ownershipControls?.rules).map((r) => r.objectOwnership);
    if (!ownership.includes("BucketOwnerEnforced")) {
        add("S3.12", "ownershipControls.rule.objectOwnership", "set BucketOwnerEnforced so ACLs are disabled");
    }
    if (b.bucket.acl !== undefined && b.bucket.acl !== "private") {
        add("S3.12", "bucket.acl", `canned ACL ${b.bucket.acl} grants access outside IAM; remove it`);
    }

    if (!list<Obj>(b.lifecycle?.rules).some((r) => r.status === "Enabled")) {
        add("S3.13", "lifecycle.rules", "add a BucketLifecycleConfiguration with at least one Enabled rule");
    }

    if (b.versioning?.versioningConfiguration?.status !== "Enabled") {
        add("S3.14", "versioning.versioningConfiguration.status", "must be Enabled");
    }
    return out;
}

/**
 * Whether a bucket policy refuses every non-TLS request: a Deny for all principals, covering all
 * S3 actions on the bucket and on its objects, conditioned on `aws:SecureTransport` being false.
 */
export function requiresTls(policy: PolicyDocumentLike | undefined, bucketArn: string): boolean {
    const covered = new Set<string>();
    for (const s of list<Obj>(policy?.Statement)) {
        const everyone = s.Principal === "*" || list(s.Principal?.AWS).includes("*");
        const allS3 = list<string>(s.Action).some((a) => a === "*" || a === "s3:*");
        const insecure = [s.Condition?.Bool, s.Condition?.BoolIfExists].some((c) => String(c?.["aws:SecureTransport"]) === "false");
        if (s.Effect !== "Deny" || !everyone || !allS3 || !insecure || s.NotAction !== undefined || s.NotPrincipal !== undefined) {
            continue;
        }
        for (const r of list<string>(s.Resource)) {
            covered.add(r);
        }
    }
    const all = covered.has("*") || covered.has("arn:aws:s3:::*");
    return all || (covered.has(bucketArn) && covered.has(`${bucketArn}/*`));
}

/** IAM rule ids, each with a fixture in the tests. */
export const IAM_RULES = ["IAM.wildcardAction", "IAM.wildcardResource", "IAM.notAction", "IAM.notResource"] as const;

/**
 * Findings for the Allow statements of an identity or resource policy: no wildcard in an action,
 * no resource that is `*` or a whole service (`arn:aws:s3:::*`), and no NotAction/NotResource
 * (an Allow with either grants everything not named).
 */
export function iamPolicyFindings(doc: PolicyDocumentLike | undefined, at = "policy"): Finding[] {
    const out: Finding[] = [];
    list<Obj>(doc?.Statement).forEach((s, i) => {
        if (s.Effect !== "Allow") {
            return;
        }
        const path = `${at}.Statement[${i}]`;
        for (const a of list<string>(s.Action)) {
            if (a.includes("*")) {
                out.push({ rule: "IAM.wildcardAction", path: `${path}.Action`, message: `Allow of ${a}: name each action` });
            }
        }
        for (const r of list<string>(s.Resource)) {
            if (isWildcardResource(r)) {
                out.push({ rule: "IAM.wildcardResource", path: `${path}.Resource`, message: `Allow on ${r}: name the resources` });
            }
        }
        if (s.NotAction !== undefined) {
            out.push({ rule: "IAM.notAction", path: `${path}.NotAction`, message: "Allow with NotAction grants every action not listed" });
        }
        if (s.NotResource !== undefined) {
            out.push({ rule: "IAM.notResource", path: `${path}.NotResource`, message: "Allow with NotResource grants every resource not listed" });
        }
    });
    return out;
}

/** `*`, or an ARN whose resource part starts with a wildcard (every resource of a service). */
export function isWildcardResource(resource: string): boolean {
    if (resource === "*") {
        return true;
    }
    const parts = resource.split(":");
    const rest = parts.slice(5).join(":");
    return parts[0] === "arn" && (rest === "" || rest.startsWith("*"));
}
