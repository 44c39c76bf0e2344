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
    Resource: string[];
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
export function artifactAccessPolicy(bucketArn: string, prefix: string): PolicyDocument {
    return {
        Version: "2012-10-17",
        Statement: [
            {
                Sid: "ListArtifactPrefix",
                Effect: "Allow",
                Action: [...BUCKET_ACTIONS],
                Resource: [bucketArn],
                Condition: { StringLike: { "s3:prefix": [prefix, `${prefix}/*`] } },
            },
            {
                Sid: "ReadWriteArtifacts",
                Effect: "Allow",
                Action: [...OBJECT_ACTIONS],
                Resource: [`${bucketArn}/${prefix}/*`],
            },
        ],
    };
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
