import { expect } from "chai";
import { BUCKET_ACTIONS, OBJECT_ACTIONS, artifactAccessPolicy, tlsOnlyBucketPolicy } from "../components/iamPolicies";

const BUCKET = "arn:aws:s3:::mlflow-artifacts-0123";

describe("iamPolicies", () => {
    describe("artifactAccessPolicy", () => {
        const policy = artifactAccessPolicy(BUCKET, "mlflow");

        it("allows object reads, writes, deletes and multipart uploads under the prefix only", () => {
            const objects = policy.Statement.find((s) => s.Sid === "ReadWriteArtifacts")!;
            expect(objects.Effect).to.equal("Allow");
            expect(objects.Resource).to.deep.equal([`${BUCKET}/mlflow/*`]);
            expect(objects.Action).to.have.members([
                "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
            ]);
        });

        it("lists the bucket only within the prefix", () => {
            const list = policy.Statement.find((s) => s.Sid === "ListArtifactPrefix")!;
            expect(list.Action).to.deep.equal(["s3:ListBucket"]);
            expect(list.Resource).to.deep.equal([BUCKET]);
            expect(list.Condition).to.deep.equal({ StringLike: { "s3:prefix": ["mlflow", "mlflow/*"] } });
        });

        it("grants nothing else: no wildcard, no bucket administration, no IAM", () => {
            const actions = policy.Statement.flatMap((s) => s.Action);
            expect(actions).to.have.members([...OBJECT_ACTIONS, ...BUCKET_ACTIONS]);
            for (const s of policy.Statement) {
                expect(s.Effect).to.equal("Allow");
                expect(s.Action.join(), "wildcard action").to.not.include("*");
                for (const r of s.Resource ?? []) {
                    expect(r.startsWith(BUCKET), r).to.equal(true);
                    expect(r === "*" || r === `${BUCKET}/*`, `resource ${r} is wider than the prefix`).to.equal(false);
                }
            }
        });

        it("follows a nested prefix", () => {
            const nested = artifactAccessPolicy(BUCKET, "teams/ds");
            expect(nested.Statement[1]!.Resource).to.deep.equal([`${BUCKET}/teams/ds/*`]);
            expect(nested.Statement[0]!.Condition!.StringLike!["s3:prefix"]).to.deep.equal(["teams/ds", "teams/ds/*"]);
        });

        it("is valid JSON with the current policy language version", () => {
            const parsed = JSON.parse(JSON.stringify(policy));
            expect(parsed.Version).to.equal("2012-10-17");
        });
    });

    describe("tlsOnlyBucketPolicy", () => {
        const policy = tlsOnlyBucketPolicy(BUCKET);

        it("denies every S3 action without TLS, for everyone, on the bucket and its objects", () => {
            expect(policy.Statement).to.have.length(1);
            const deny = policy.Statement[0]!;
            expect(deny.Effect).to.equal("Deny");
            expect(deny.Principal).to.equal("*");
            expect(deny.Action).to.deep.equal(["s3:*"]);
            expect(deny.Resource).to.deep.equal([BUCKET, `${BUCKET}/*`]);
            expect(deny.Condition).to.deep.equal({ Bool: { "aws:SecureTransport": "false" } });
        });
    });
});
