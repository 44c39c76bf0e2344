import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { PolicyDocument, artifactAccessPolicy, backupAccessPolicy, tlsOnlyBucketPolicy } from "./iamPolicies";

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
     * KMS key for SSE-KMS default encryption; both identities may use it through S3 in `region`.
     * @default undefined: SSE-S3 (AES256), which needs no KMS permission.
     */
    readonly kmsKeyArn?: string;
    /** Region of the bucket, where S3 uses the KMS key on the identities' behalf. */
    readonly region: string;
    /** Days after which noncurrent object versions expire. */
    readonly noncurrentVersionExpirationDays: number;
    /** Key prefix of the database backups; disjoint from `artifactPrefix`. */
    readonly backupPrefix: string;
    /** Days after which a backup expires. */
    readonly backupRetentionDays: number;
    /**
     * Protect the bucket (artifacts and backups) from deletion and keep it if it leaves the program.
     * @default false
     */
    readonly protect?: boolean;
    /** Resources the bucket must wait for (the data guard). */
    readonly bucketDependsOn?: pulumi.Input<pulumi.Resource>[];
    /** Tags added to every AWS resource. */
    readonly tags?: Record<string, string>;
}

/** An IAM identity of the store: its user and access key (a Pulumi secret). */
export interface StoreIdentity {
    /** Name of the IAM user. */
    readonly userName: pulumi.Output<string>;
    /** Access key id (a Pulumi secret: half of a credential). */
    readonly accessKeyId: pulumi.Output<string>;
    /** Secret access key (a Pulumi secret). */
    readonly secretAccessKey: pulumi.Output<string>;
}

/**
 * S3 bucket for MLflow artifacts and database backups, hardened as AWS's Foundational Security
 * Best Practices ask (public access blocked, ACLs disabled, default encryption, versioning,
 * lifecycle, TLS only), and two IAM users that never see each other's data: the tracking server's,
 * on the artifact prefix, and the backups', on the backup prefix (no delete).
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
    /** Where database backups go: `s3://<bucket>/<backupPrefix>`. */
    public readonly backupUri: pulumi.Output<string>;
    /** The identity that writes and reads backups. */
    public readonly backupIdentity: StoreIdentity;

    constructor(name: string, args: ArtifactStoreArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:aws:ArtifactStore", name, {}, opts);
        const child = { parent: this };
        const stateful = { ...child, protect: args.protect ?? false, retainOnDelete: args.protect ?? false };
        const tags = args.tags ?? {};

        const bucket = new aws.s3.Bucket(`${name}-bucket`, {
            bucketPrefix: args.bucketPrefix,
            forceDestroy: args.forceDestroy ?? false,
            tags,
        }, { ...stateful, dependsOn: args.bucketDependsOn });

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
                {
                    // The only way a backup is ever deleted: its identity has no s3:DeleteObject.
                    id: "expire-database-backups",
                    status: "Enabled",
                    filter: { prefix: `${args.backupPrefix}/` },
                    expiration: { days: args.backupRetentionDays },
                },
            ],
        }, { ...child, dependsOn: [versioning] });

        // A bucket policy cannot be written while the public access block is being applied.
        new aws.s3.BucketPolicy(`${name}-tls-only`, {
            bucket: bucket.id,
            policy: bucket.arn.apply((arn) => JSON.stringify(tlsOnlyBucketPolicy(arn))),
        }, { ...child, dependsOn: [publicAccess] });

        const key = args.kmsKeyArn === undefined ? undefined : { keyArn: args.kmsKeyArn, region: args.region };
        const server = this.identity(`${name}`, pulumi.interpolate`MLflow artifact access to s3://${bucket.bucket}/${args.artifactPrefix}`,
            bucket.arn.apply((arn) => artifactAccessPolicy(arn, args.artifactPrefix, key)), tags);
        this.backupIdentity = this.identity(`${name}-backup`, pulumi.interpolate`MLflow database backups in s3://${bucket.bucket}/${args.backupPrefix}`,
            bucket.arn.apply((arn) => backupAccessPolicy(arn, args.backupPrefix, key)), tags);

        this.bucketName = bucket.bucket;
        this.bucketArn = bucket.arn;
        this.artifactUri = pulumi.interpolate`s3://${bucket.bucket}/${args.artifactPrefix}`;
        this.userName = server.userName;
        this.accessKeyId = server.accessKeyId;
        this.secretAccessKey = server.secretAccessKey;
        this.backupUri = pulumi.interpolate`s3://${bucket.bucket}/${args.backupPrefix}`;

        this.registerOutputs({
            bucketName: this.bucketName,
            artifactUri: this.artifactUri,
            userName: this.userName,
            accessKeyId: this.accessKeyId,
            secretAccessKey: this.secretAccessKey,
            backupUri: this.backupUri,
        });
    }

    /** An IAM user with one customer-managed policy and an access key. */
    private identity(name: string, description: pulumi.Input<string>, policy: pulumi.Output<PolicyDocument>, tags: Record<string, string>): StoreIdentity {
        const child = { parent: this };
        const user = new aws.iam.User(`${name}-user`, { path: "/mlflow/", forceDestroy: true, tags }, child);
        const attached = new aws.iam.Policy(`${name}-policy`, {
            path: "/mlflow/",
            description,
            policy: policy.apply((doc) => JSON.stringify(doc)),
            tags,
        }, child);
        new aws.iam.UserPolicyAttachment(`${name}-policy-attachment`, { user: user.name, policyArn: attached.arn }, child);
        const accessKey = new aws.iam.AccessKey(`${name}-access-key`, { user: user.name }, child);
        return {
            userName: user.name,
            // The key id is half of a credential: keep it out of plain state and output too.
            accessKeyId: pulumi.secret(accessKey.id),
            // The provider marks `secret` as secret, but only a real engine honours that; wrapping
            // it keeps it secret everywhere it flows, mocks and `pulumi stack export` included.
            secretAccessKey: pulumi.secret(accessKey.secret),
        };
    }
}
