import { expect } from "chai";
import { ProgramRun, VARIANT, runProgram, stackRun, variantRun } from "./harness";

const S3 = "aws:s3/";
const byBucket = (run: ProgramRun, type: string) => {
    const r = run.one(type);
    expect(r.inputs.bucket, `${type} targets the artifact bucket`).to.equal(run.one("aws:s3/bucket:Bucket").state.bucket);
    return r;
};

describe("ArtifactStore", () => {
    let run: ProgramRun;
    before(async () => {
        run = await stackRun("minikube");
    });

    describe("bucket", () => {
        it("is the current aws.s3.Bucket, named from the stack's prefix", () => {
            const bucket = run.one("aws:s3/bucket:Bucket");
            expect(bucket.inputs.bucketPrefix).to.equal("mlflow-minikube-");
            expect(bucket.inputs.bucket, "a fixed name would collide between stacks").to.equal(undefined);
            expect(run.ofType("aws:s3/bucketV2:BucketV2")).to.have.length(0);
        });

        it("is force-destroyed on the minikube stack, kept by default", async () => {
            expect(run.one("aws:s3/bucket:Bucket").inputs.forceDestroy).to.equal(true);
            const kept = await variantRun();
            expect(kept.one("aws:s3/bucket:Bucket").inputs.forceDestroy).to.equal(false);
        });

        it("blocks every kind of public access", () => {
            const block = byBucket(run, `${S3}bucketPublicAccessBlock:BucketPublicAccessBlock`);
            expect(block.inputs).to.include({ blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
        });

        it("disables ACLs (BucketOwnerEnforced)", () => {
            const own = byBucket(run, `${S3}bucketOwnershipControls:BucketOwnershipControls`);
            expect(own.inputs.rule).to.deep.equal({ objectOwnership: "BucketOwnerEnforced" });
        });

        it("encrypts by default with SSE-S3, or SSE-KMS with a configured key", async () => {
            const sse = byBucket(run, `${S3}bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration`);
            expect(sse.inputs.rules[0].applyServerSideEncryptionByDefault).to.deep.equal({ sseAlgorithm: "AES256" });
            const arn = VARIANT.bucketKmsKeyArn;
            const kms = await variantRun();
            const rule = kms.one(`${S3}bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration`).inputs.rules[0];
            expect(rule.applyServerSideEncryptionByDefault).to.deep.equal({ sseAlgorithm: "aws:kms", kmsMasterKeyId: arn });
            expect(rule.bucketKeyEnabled).to.equal(true);
        });

        it("keeps versions", () => {
            const v = byBucket(run, `${S3}bucketVersioning:BucketVersioning`);
            expect(v.inputs.versioningConfiguration).to.deep.equal({ status: "Enabled" });
        });

        it("aborts incomplete multipart uploads and expires noncurrent versions after the configured days", () => {
            const lc = byBucket(run, `${S3}bucketLifecycleConfiguration:BucketLifecycleConfiguration`);
            const rules = lc.inputs.rules as any[];
            expect(rules.every((r) => r.status === "Enabled")).to.equal(true);
            expect(rules.find((r) => r.abortIncompleteMultipartUpload)!.abortIncompleteMultipartUpload.daysAfterInitiation).to.equal(7);
            expect(rules.find((r) => r.noncurrentVersionExpiration)!.noncurrentVersionExpiration.noncurrentDays).to.equal(7);
            expect(lc.dependencies, "lifecycle rules on versions need versioning first").to.include(
                run.one(`${S3}bucketVersioning:BucketVersioning`).urn);
        });

        it("refuses requests without TLS", () => {
            const policy = JSON.parse(byBucket(run, `${S3}bucketPolicy:BucketPolicy`).inputs.policy);
            const bucketArn = run.one("aws:s3/bucket:Bucket").state.arn;
            expect(policy.Statement).to.deep.include({
                Sid: "DenyInsecureTransport", Effect: "Deny", Principal: "*", Action: ["s3:*"],
                Resource: [bucketArn, `${bucketArn}/*`], Condition: { Bool: { "aws:SecureTransport": "false" } },
            });
        });

        it("is protected and retained when protectData is set, and only then", async () => {
            const unprotected = run.one("aws:s3/bucket:Bucket");
            expect([unprotected.protect, unprotected.retainOnDelete]).to.deep.equal([false, false]);
            const prod = await variantRun();
            const bucket = prod.one("aws:s3/bucket:Bucket");
            expect([bucket.protect, bucket.retainOnDelete]).to.deep.equal([true, true]);
        });
    });

    describe("IAM", () => {
        /** The identities: the server's on the artifact prefix, the backups' on the backup prefix. */
        const identities = [
            { label: "the server's", name: "mlflow-artifacts", prefix: "mlflow", sid: "ReadWriteArtifacts",
                actions: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"] },
            { label: "the backups'", name: "mlflow-artifacts-backup", prefix: "backups", sid: "WriteAndReadBackups",
                actions: ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"] },
        ];
        const named = (type: string, name: string) => run.one(type, new RegExp(`^${name}$`));

        it("creates exactly two users, each with one key", () => {
            expect(run.ofType("aws:iam/user:User").map((u) => u.name).sort()).to.deep.equal(["mlflow-artifacts-backup-user", "mlflow-artifacts-user"]);
            expect(run.ofType("aws:iam/accessKey:AccessKey")).to.have.length(2);
            expect(run.ofType("aws:iam/userPolicy:UserPolicy"), "no inline policies").to.have.length(0);
        });

        for (const id of identities) {
            it(`gives ${id.label} user a customer-managed policy scoped to its own prefix (${id.prefix}/)`, () => {
                const policy = named("aws:iam/policy:Policy", `${id.name}-policy`);
                const doc = JSON.parse(policy.inputs.policy);
                const arn = run.one("aws:s3/bucket:Bucket").state.arn;
                const objects = doc.Statement.find((s: any) => s.Sid === id.sid);
                expect(objects.Resource).to.deep.equal([`${arn}/${id.prefix}/*`]);
                expect(objects.Action).to.have.members(id.actions);
                const list = doc.Statement.find((s: any) => s.Action.includes("s3:ListBucket"));
                expect(list.Condition).to.deep.equal({ StringLike: { "s3:prefix": [id.prefix, `${id.prefix}/*`] } });
                const attachment = named("aws:iam/userPolicyAttachment:UserPolicyAttachment", `${id.name}-policy-attachment`);
                expect(attachment.inputs.user).to.equal(named("aws:iam/user:User", `${id.name}-user`).state.name);
                expect(attachment.inputs.policyArn).to.equal(policy.state.arn);
            });

            it(`creates one access key for ${id.label} user, kept in state as a secret`, () => {
                const key = named("aws:iam/accessKey:AccessKey", `${id.name}-access-key`);
                expect(key.inputs.user).to.equal(named("aws:iam/user:User", `${id.name}-user`).state.name);
                expect(key.inputs.pgpKey, "the secret is kept in state, encrypted as a Pulumi secret").to.equal(undefined);
            });
        }

        it("never lets the backup identity delete anything", () => {
            const doc = JSON.parse(named("aws:iam/policy:Policy", "mlflow-artifacts-backup-policy").inputs.policy);
            const actions = doc.Statement.flatMap((s: any) => s.Action);
            expect(actions.filter((a: string) => /Delete/.test(a))).to.deep.equal([]);
        });
    });

    describe("backups", () => {
        it("expire after the configured days, under the backup prefix only", async () => {
            const rules = run.one(`${S3}bucketLifecycleConfiguration:BucketLifecycleConfiguration`).inputs.rules as any[];
            const expiry = rules.find((r) => r.id === "expire-database-backups");
            expect(expiry).to.deep.include({ status: "Enabled", filter: { prefix: "backups/" }, expiration: { days: 30 } });
            const custom = await runProgram("minikube", { backupRetentionDays: 90, backupPrefix: "db/backups" });
            const other = (custom.one(`${S3}bucketLifecycleConfiguration:BucketLifecycleConfiguration`).inputs.rules as any[])
                .find((r) => r.id === "expire-database-backups");
            expect(other).to.deep.include({ filter: { prefix: "db/backups/" }, expiration: { days: 90 } });
        });

        it("are exported as an s3:// URI beside the artifacts", () => {
            expect(run.outputs.backupUri).to.equal(`s3://${run.outputs.bucketName}/backups`);
        });
    });

    describe("outputs", () => {
        it("exports the bucket and an s3:// artifact URI", () => {
            const bucket = run.one("aws:s3/bucket:Bucket").state.bucket;
            expect(run.outputs.bucketName).to.equal(bucket);
            expect(run.outputs.artifactUri).to.equal(`s3://${bucket}/mlflow`);
        });

        it("never exports an access key as a stack output", () => {
            const plain = Object.entries(run.outputs).filter(([k]) => !run.secretOutputs.includes(k));
            for (const key of run.ofType("aws:iam/accessKey:AccessKey")) {
                for (const [k, v] of plain) {
                    expect(String(JSON.stringify(v)), k).to.not.include(key.state.secret).and.not.include(key.id);
                }
            }
        });
    });
});
