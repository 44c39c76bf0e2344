import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config";
import {
    PolicyDocument, WorkloadIdentity, artifactAccessPolicy, backupAccessPolicy, irsaTrustPolicy, podIdentityTrustPolicy, tlsOnlyBucketPolicy,
} from "./iamPolicies";

/** How the identities authenticate: access keys, or roles for the pods' ServiceAccounts. */
export type CredentialMode = StackConfig["aws"]["credentials"];

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
    /**
     * How the identities authenticate.
     * @default { mode: "accessKey", keyGeneration: 1 }: an IAM user and access key each (minikube has no other way)
     */
    readonly credentials?: CredentialMode;
    /** The ServiceAccounts the identities' roles admit: the server's and the backups' (role modes). */
    readonly workloads: { readonly server: WorkloadIdentity; readonly backup: WorkloadIdentity };
    /** Tags added to every AWS resource. */
    readonly tags?: Record<string, string>;
}

/** An IAM identity of the store: a user with an access key, or a role for a ServiceAccount. */
export interface StoreIdentity {
    /** Name of the IAM user (accessKey mode), empty otherwise. */
    readonly userName: pulumi.Output<string>;
    /** ARN of the IAM role (role modes), empty otherwise. */
    readonly roleArn: pulumi.Output<string>;
    /** The access key (accessKey mode); both halves are Pulumi secrets. */
    readonly accessKey?: { readonly id: pulumi.Output<string>; readonly secret: pulumi.Output<string> };
}

/**
 * S3 bucket for MLflow artifacts and database backups, hardened as AWS's Foundational Security
 * Best Practices ask (public access blocked, ACLs disabled, default encryption, versioning,
 * lifecycle, TLS only), and two IAM identities that never see each other's data: the tracking
 * server's, on the artifact prefix, and the backups', on the backup prefix (no delete). Each is an
 * IAM user with an access key, or a role for its pods' ServiceAccount (EKS Pod Identity or IRSA),
 * with the same customer-managed policy either way.
 */
export class ArtifactStore extends pulumi.ComponentResource {
    /** Name of the bucket. */
    public readonly bucketName: pulumi.Output<string>;
    /** ARN of the bucket. */
    public readonly bucketArn: pulumi.Output<string>;
    /** Where MLflow stores artifacts: `s3://<bucket>/<prefix>`. */
    public readonly artifactUri: pulumi.Output<string>;
    /** The identity the tracking server acts as. */
    public readonly serverIdentity: StoreIdentity;
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
        const credentials = args.credentials ?? { mode: "accessKey", keyGeneration: 1 };
        this.serverIdentity = this.identity(`${name}`, pulumi.interpolate`MLflow artifact access to s3://${bucket.bucket}/${args.artifactPrefix}`,
            bucket.arn.apply((arn) => artifactAccessPolicy(arn, args.artifactPrefix, key)), credentials, args.workloads.server, tags);
        this.backupIdentity = this.identity(`${name}-backup`, pulumi.interpolate`MLflow database backups in s3://${bucket.bucket}/${args.backupPrefix}`,
            bucket.arn.apply((arn) => backupAccessPolicy(arn, args.backupPrefix, key)), credentials, args.workloads.backup, tags);

        this.bucketName = bucket.bucket;
        this.bucketArn = bucket.arn;
        this.artifactUri = pulumi.interpolate`s3://${bucket.bucket}/${args.artifactPrefix}`;
        this.backupUri = pulumi.interpolate`s3://${bucket.bucket}/${args.backupPrefix}`;

        this.registerOutputs({
            bucketName: this.bucketName,
            artifactUri: this.artifactUri,
            serverUser: this.serverIdentity.userName,
            serverRole: this.serverIdentity.roleArn,
            backupUri: this.backupUri,
        });
    }

    /**
     * One identity: a customer-managed policy attached to an IAM user with an access key, or to a role
     * that only the workload's ServiceAccount can assume (with its Pod Identity association).
     */
    private identity(name: string, description: pulumi.Input<string>, policy: pulumi.Output<PolicyDocument>, credentials: CredentialMode,
        workload: WorkloadIdentity, tags: Record<string, string>): StoreIdentity {
        const child = { parent: this };
        const attached = new aws.iam.Policy(`${name}-policy`, {
            path: "/mlflow/",
            description,
            policy: policy.apply((doc) => JSON.stringify(doc)),
            tags,
        }, child);
        if (credentials.mode === "accessKey") {
            const user = new aws.iam.User(`${name}-user`, { path: "/mlflow/", forceDestroy: true, tags }, child);
            new aws.iam.UserPolicyAttachment(`${name}-policy-attachment`, { user: user.name, policyArn: attached.arn }, child);
            // A new generation is a new resource: Pulumi creates it (and everything that reads it:
            // the Secret, then the pods' rollout) before it deletes the old key, last of all.
            const accessKey = new aws.iam.AccessKey(accessKeyName(name, credentials.keyGeneration), { user: user.name }, child);
            return {
                userName: user.name,
                roleArn: pulumi.output(""),
                accessKey: {
                    // The key id is half of a credential: keep it out of plain state and output too.
                    id: pulumi.secret(accessKey.id),
                    // The provider marks `secret` as secret, but only a real engine honours that; wrapping
                    // it keeps it secret everywhere it flows, mocks and `pulumi stack export` included.
                    secret: pulumi.secret(accessKey.secret),
                },
            };
        }
        const trust = credentials.mode === "podIdentity"
            ? podIdentityTrustPolicy(credentials.clusterName, workload)
            : irsaTrustPolicy(credentials.oidcProviderArn, workload);
        const role = new aws.iam.Role(`${name}-role`, {
            path: "/mlflow/",
            description,
            assumeRolePolicy: JSON.stringify(trust),
            tags,
        }, child);
        new aws.iam.RolePolicyAttachment(`${name}-policy-attachment`, { role: role.name, policyArn: attached.arn }, child);
        if (credentials.mode === "podIdentity") {
            new aws.eks.PodIdentityAssociation(`${name}-pod-identity`, {
                clusterName: credentials.clusterName,
                namespace: workload.namespace,
                serviceAccount: workload.serviceAccount,
                roleArn: role.arn,
                tags,
            }, child);
        }
        return { userName: pulumi.output(""), roleArn: role.arn };
    }
}

/**
 * Logical name of an identity's access key: the first generation keeps the name keys have always had,
 * so an existing stack keeps its key; every later one gets a name of its own.
 */
export function accessKeyName(identity: string, generation: number): string {
    return generation === 1 ? `${identity}-access-key` : `${identity}-access-key-gen${generation}`;
}
