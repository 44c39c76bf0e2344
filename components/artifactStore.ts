import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { artifactAccessPolicy, tlsOnlyBucketPolicy } from "./iamPolicies";

/** Arguments of {@link ArtifactStore}. */
export interface ArtifactStoreArgs {
    /** Prefix of the generated bucket name; Pulumi appends a random suffix so stacks never collide. */
    readonly bucketPrefix: string;
    /** Key prefix MLflow writes under; the IAM policy grants nothing outside it. */
    readonly artifactPrefix: string;
    /**
     * Delete the bucket, objects and versions included, on `pulumi destroy`.
     * @default false: a destroy must not silently delete experiment artifacts.
     */
    readonly forceDestroy?: boolean;
    /**
     * KMS key for SSE-KMS default encryption.
     * @default undefined: SSE-S3 (AES256), which needs no key policy for the IAM user.
     */
    readonly kmsKeyArn?: string;
    /** Days after which noncurrent object versions expire. */
    readonly noncurrentVersionExpirationDays: number;
    /**
     * Protect the bucket from deletion and keep it if it leaves the program.
     * @default false
     */
    readonly protect?: boolean;
    /** Tags added to every AWS resource. */
    readonly tags?: Record<string, string>;
}

/**
 * S3 bucket for MLflow artifacts, hardened as AWS's Foundational Security Best Practices ask
 * (public access blocked, ACLs disabled, default encryption, versioning, lifecycle, TLS only),
 * and an IAM user whose only permissions are MLflow's, on this bucket's artifact prefix.
 */
export class ArtifactStore extends pulumi.ComponentResource {
    /** Name of the bucket. */
    public readonly bucketName: pulumi.Output<string>;
    /** ARN of the bucket. */
    public readonly bucketArn: pulumi.Output<string>;
    /** Where MLflow stores artifacts: `s3://<bucket>/<prefix>`. */
    public readonly artifactUri: pulumi.Output<string>;
    /** Name of the IAM user the tracking server acts as. */
    public readonly userName: pulumi.Output<string>;
    /** Access key id of that user. */
    public readonly accessKeyId: pulumi.Output<string>;
    /** Secret access key of that user (a Pulumi secret). */
    public readonly secretAccessKey: pulumi.Output<string>;

    constructor(name: string, args: ArtifactStoreArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:aws:ArtifactStore", name, {}, opts);
        const child = { parent: this };
        const stateful = { ...child, protect: args.protect ?? false, retainOnDelete: args.protect ?? false };
        const tags = args.tags ?? {};

        const bucket = new aws.s3.Bucket(`${name}-bucket`, {
            bucketPrefix: args.bucketPrefix,
            forceDestroy: args.forceDestroy ?? false,
            tags,
        }, stateful);

        const publicAccess = new aws.s3.BucketPublicAccessBlock(`${name}-public-access`, {
            bucket: bucket.id,
            blockPublicAcls: true,
            blockPublicPolicy: true,
            ignorePublicAcls: true,
            restrictPublicBuckets: true,
        }, child);

        new aws.s3.BucketOwnershipControls(`${name}-ownership`, {
            bucket: bucket.id,
            rule: { objectOwnership: "BucketOwnerEnforced" },
        }, child);

        new aws.s3.BucketServerSideEncryptionConfiguration(`${name}-encryption`, {
            bucket: bucket.id,
            rules: [{
                applyServerSideEncryptionByDefault: args.kmsKeyArn
                    ? { sseAlgorithm: "aws:kms", kmsMasterKeyId: args.kmsKeyArn }
                    : { sseAlgorithm: "AES256" },
                bucketKeyEnabled: args.kmsKeyArn !== undefined,
            }],
        }, child);

        const versioning = new aws.s3.BucketVersioning(`${name}-versioning`, {
            bucket: bucket.id,
            versioningConfiguration: { status: "Enabled" },
        }, child);

        new aws.s3.BucketLifecycleConfiguration(`${name}-lifecycle`, {
            bucket: bucket.id,
            rules: [
                {
                    id: "abort-incomplete-multipart-uploads",
                    status: "Enabled",
                    filter: {},
                    abortIncompleteMultipartUpload: { daysAfterInitiation: 7 },
                },
                {
                    id: "expire-noncurrent-versions",
                    status: "Enabled",
                    filter: {},
                    noncurrentVersionExpiration: { noncurrentDays: args.noncurrentVersionExpirationDays },
                    expiration: { expiredObjectDeleteMarker: true },
                },
            ],
        }, { ...child, dependsOn: [versioning] });

        // A bucket policy cannot be written while the public access block is being applied.
        new aws.s3.BucketPolicy(`${name}-tls-only`, {
            bucket: bucket.id,
            policy: bucket.arn.apply((arn) => JSON.stringify(tlsOnlyBucketPolicy(arn))),
        }, { ...child, dependsOn: [publicAccess] });

        const user = new aws.iam.User(`${name}-user`, {
            path: "/mlflow/",
            forceDestroy: true,
            tags,
        }, child);

        const policy = new aws.iam.Policy(`${name}-policy`, {
            path: "/mlflow/",
            description: pulumi.interpolate`MLflow artifact access to s3://${bucket.bucket}/${args.artifactPrefix}`,
            policy: bucket.arn.apply((arn) => JSON.stringify(artifactAccessPolicy(arn, args.artifactPrefix))),
            tags,
        }, child);

        new aws.iam.UserPolicyAttachment(`${name}-policy-attachment`, {
            user: user.name,
            policyArn: policy.arn,
        }, child);

        const accessKey = new aws.iam.AccessKey(`${name}-access-key`, { user: user.name }, child);

        this.bucketName = bucket.bucket;
        this.bucketArn = bucket.arn;
        this.artifactUri = pulumi.interpolate`s3://${bucket.bucket}/${args.artifactPrefix}`;
        this.userName = user.name;
        // The key id is half of a credential: keep it out of plain state and output too.
        this.accessKeyId = pulumi.secret(accessKey.id);
        // The provider marks `secret` as secret, but only a real engine honours that; wrapping
        // it keeps it secret everywhere it flows, mocks and `pulumi stack export` included.
        this.secretAccessKey = pulumi.secret(accessKey.secret);

        this.registerOutputs({
            bucketName: this.bucketName,
            artifactUri: this.artifactUri,
            userName: this.userName,
            accessKeyId: this.accessKeyId,
            secretAccessKey: this.secretAccessKey,
        });
    }
}
