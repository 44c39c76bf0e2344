/**
 * IAM and bucket policy documents for the artifact store, as pure functions so the exact JSON
 * AWS receives is unit-tested and evaluated offline.
 */

/** An IAM policy statement, as AWS's policy grammar defines it. */
export interface PolicyStatement {
    Sid: string;
    Effect: "Allow" | "Deny";
    Principal?: "*" | Record<string, string | string[]>;
    Action: string[];
    /** Absent in a role's trust policy, where IAM refuses it: the role itself is the resource. */
    Resource?: string[];
    Condition?: Record<string, Record<string, string | string[]>>;
}

/** An IAM policy document. */
export interface PolicyDocument {
    Version: "2012-10-17";
    Statement: PolicyStatement[];
}

/** Object actions MLflow's S3 artifact repository performs under its prefix. */
export const OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    // Large artifacts go up in parts (boto3's transfer manager, MLflow's proxied multipart).
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
] as const;

/**
 * Bucket-level actions, allowed only for keys under the artifact prefix. `ListBucketMultipartUploads`
 * is left out on purpose: it cannot be limited to a prefix, and neither boto3's transfer manager
 * nor MLflow's proxied uploads call it.
 */
export const BUCKET_ACTIONS = ["s3:ListBucket"] as const;

/**
 * Least-privilege identity policy for the MLflow server's IAM user: read, write and delete
 * objects under `prefix/`, list the bucket only within that prefix, and multipart uploads.
 * Nothing else: no bucket administration, no other bucket, no IAM.
 */
export function artifactAccessPolicy(bucketArn: string, prefix: string, kms?: BucketKey): PolicyDocument {
    return prefixScopedPolicy(bucketArn, prefix, OBJECT_ACTIONS, { list: "ListArtifactPrefix", objects: "ReadWriteArtifacts" }, kms);
}

/** The KMS key a bucket encrypts with (SSE-KMS), and the bucket's region. */
export interface BucketKey {
    readonly keyArn: string;
    readonly region: string;
}

/** What S3 asks of KMS on an identity's behalf: a data key to write, a decrypt to read. */
export const KMS_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt"] as const;

/**
 * The statement that lets an identity use the bucket's key through S3 only: exactly that key, only
 * for requests S3 makes in the bucket's region (`kms:ViaService`), so the identity cannot call KMS
 * itself, nor use the key for anything else.
 */
export function bucketKeyStatement(key: BucketKey): PolicyStatement {
    return {
        Sid: "UseBucketKeyThroughS3",
        Effect: "Allow",
        Action: [...KMS_ACTIONS],
        Resource: [key.keyArn],
        Condition: { StringEquals: { "kms:ViaService": `s3.${key.region}.amazonaws.com` } },
    };
}

/**
 * An identity policy confined to one key prefix of one bucket: `s3:ListBucket` only for keys under
 * the prefix (the `s3:prefix` condition), and the given object actions only on `prefix/*`.
 */
function prefixScopedPolicy(bucketArn: string, prefix: string, objectActions: readonly string[], sids: { list: string; objects: string },
    kms?: BucketKey): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: sids.list,
                Effect: "Allow",
                Action: [...BUCKET_ACTIONS],
                Resource: [bucketArn],
                Condition: { StringLike: { "s3:prefix": [prefix, `${prefix}/*`] } },
            },
            {
                Sid: sids.objects,
                Effect: "Allow",
                Action: [...objectActions],
                Resource: [`${bucketArn}/${prefix}/*`],
            },
            ...(kms === undefined ? [] : [bucketKeyStatement(kms)]),
        ],
    };
}

/** Object actions the database backups perform under the backup prefix: no delete, ever. */
export const BACKUP_OBJECT_ACTIONS = [
    "s3:PutObject",
    // Restores read a backup back, and check its checksum.
    "s3:GetObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
] as const;

/**
 * Identity policy of the database backups: write and read objects under `prefix/`, list only
 * within it. No `s3:DeleteObject`: old backups expire through the bucket's lifecycle rule, never
 * through this identity, so a compromised backup pod cannot erase the history. Nothing outside the
 * prefix: the artifacts stay out of reach, as the backups stay out of the server's reach.
 */
export function backupAccessPolicy(bucketArn: string, prefix: string, kms?: BucketKey): PolicyDocument {
    return prefixScopedPolicy(bucketArn, prefix, BACKUP_OBJECT_ACTIONS, { list: "ListBackupPrefix", objects: "WriteAndReadBackups" }, kms);
}

/**
 * Bucket policy that refuses every request not made over TLS (Security Hub S3.5), whoever
 * makes it. A Deny, so no identity policy can override it.
 */
export function tlsOnlyBucketPolicy(bucketArn: string): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "DenyInsecureTransport",
                Effect: "Deny",
                Principal: "*",
                Action: ["s3:*"],
                Resource: [bucketArn, `${bucketArn}/*`],
                Condition: { Bool: { "aws:SecureTransport": "false" } },
            },
        ],
    };
}

/** A Kubernetes ServiceAccount, which a role's trust policy admits. */
export interface WorkloadIdentity {
    readonly namespace: string;
    readonly serviceAccount: string;
}

/**
 * Trust policy of a role assumed through EKS Pod Identity: the EKS Pod Identity service, for sessions
 * whose tags (set by EKS from the pod) name exactly this cluster, namespace and ServiceAccount. The
 * association binds the ServiceAccount to the role; the conditions make the role refuse any other,
 * even if someone associates it elsewhere.
 */
export function podIdentityTrustPolicy(clusterName: string, workload: WorkloadIdentity): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [{
            Sid: "EksPodIdentity",
            Effect: "Allow",
            Principal: { Service: "pods.eks.amazonaws.com" },
            Action: ["sts:AssumeRole", "sts:TagSession"],
            Condition: {
                StringEquals: {
                    "aws:RequestTag/eks-cluster-name": clusterName,
                    "aws:RequestTag/kubernetes-namespace": workload.namespace,
                    "aws:RequestTag/kubernetes-service-account": workload.serviceAccount,
                },
            },
        }],
    };
}

/** The issuer an EKS OIDC provider ARN names (`arn:aws:iam::<account>:oidc-provider/<issuer>`). */
export function oidcIssuer(providerArn: string): string {
    const m = /^arn:aws[a-z-]*:iam::\d{12}:oidc-provider\/(.+)$/.exec(providerArn);
    if (m === null) {
        throw new Error(`not an IAM OIDC provider ARN: ${providerArn}`);
    }
    return m[1]!;
}

/**
 * Trust policy of a role assumed through IAM Roles for Service Accounts: web identities from the
 * cluster's OIDC provider, only for tokens issued to exactly this ServiceAccount (`sub`) and meant for
 * STS (`aud`).
 */
export function irsaTrustPolicy(oidcProviderArn: string, workload: WorkloadIdentity): PolicyDocument {
    const issuer = oidcIssuer(oidcProviderArn);
    return {
        Version: "2012-10-17",
        Statement: [{
            Sid: "IrsaServiceAccount",
            Effect: "Allow",
            Principal: { Federated: oidcProviderArn },
            Action: ["sts:AssumeRoleWithWebIdentity"],
            Condition: {
                StringEquals: {
                    [`${issuer}:sub`]: `system:serviceaccount:${workload.namespace}:${workload.serviceAccount}`,
                    [`${issuer}:aud`]: "sts.amazonaws.com",
                },
            },
        }],
    };
}
