import { expect } from "chai";
import {
    BucketConfiguration, IAM_RULES, iamPolicyFindings, isWildcardResource, requiresTls, S3_CONTROLS, s3ControlFindings,
} from "../policy/checks/aws";
import { describe as describeFindings, rulesOf } from "../policy/checks/findings";
import { bucketGroups, POLICY_DOCUMENT_TYPES, ResourceLike } from "../policy/checks/resources";
import { artifactBucket, policyDocuments } from "./support/awsResources";
import { renderedRun, RUN_LABELS } from "./support/runs";

describe("AWS controls", () => {
    for (const label of RUN_LABELS) {
        describe(`${label} run`, () => {
            it("finds the bucket's six configuring resources through their dependencies", async () => {
                const { run } = await renderedRun(label);
                const b = artifactBucket(run);
                for (const part of ["publicAccessBlock", "ownershipControls", "encryption", "versioning", "lifecycle", "policy"] as const) {
                    expect(b[part], part).to.not.equal(undefined);
                }
                expect(b.arn).to.equal(run.one("aws:s3/bucket:Bucket").state.arn);
            });

            it("passes FSBP S3.4, S3.5, S3.8, S3.12, S3.13 and S3.14 on the artifact bucket", async () => {
                const { run } = await renderedRun(label);
                const findings = s3ControlFindings(artifactBucket(run));
                expect(findings, describeFindings(findings)).to.deep.equal([]);
                expect(Object.keys(S3_CONTROLS)).to.deep.equal(["S3.4", "S3.5", "S3.8", "S3.12", "S3.13", "S3.14"]);
            });

            it("allows no wildcard action or resource in any policy document", async () => {
                const { run } = await renderedRun(label);
                const documents = run.resources.filter((r) => POLICY_DOCUMENT_TYPES.includes(r.type));
                expect(documents.map((d) => d.type).sort()).to.deep.equal(["aws:iam/policy:Policy", "aws:iam/policy:Policy", "aws:s3/bucketPolicy:BucketPolicy"]);
                for (const d of documents) {
                    const findings = iamPolicyFindings(JSON.parse(d.inputs.policy));
                    expect(findings, `${d.name}: ${describeFindings(findings)}`).to.deep.equal([]);
                }
            });
        });
    }

    describe("fails each control on a broken fixture", () => {
        let good: BucketConfiguration;
        before(async () => {
            good = artifactBucket((await renderedRun("dev")).run);
        });
        const broken = (mutate: (b: any) => void): BucketConfiguration => {
            const copy: any = structuredClone(good);
            mutate(copy);
            return copy;
        };
        const statement = (b: any) => b.policy.Statement[0];

        type Fixture = [control: string, description: string, mutate: (b: any) => void];
        const fixtures: Fixture[] = [
            ["S3.4", "without default encryption", (b) => { delete b.encryption; }],
            ["S3.4", "with an unknown algorithm", (b) => { b.encryption.rules[0].applyServerSideEncryptionByDefault.sseAlgorithm = "none"; }],
            ["S3.5", "without a bucket policy", (b) => { delete b.policy; }],
            ["S3.5", "denying only TLS requests (condition inverted)", (b) => { statement(b).Condition.Bool["aws:SecureTransport"] = "true"; }],
            ["S3.5", "covering the bucket but not its objects", (b) => { statement(b).Resource = [b.arn]; }],
            ["S3.5", "denying one principal instead of everyone", (b) => { statement(b).Principal = { AWS: "arn:aws:iam::123456789012:root" }; }],
            ["S3.5", "denying only GetObject", (b) => { statement(b).Action = ["s3:GetObject"]; }],
            ["S3.5", "with Allow instead of Deny", (b) => { statement(b).Effect = "Allow"; }],
            ["S3.8", "with restrictPublicBuckets off", (b) => { b.publicAccessBlock.restrictPublicBuckets = false; }],
            ["S3.8", "without a public access block", (b) => { delete b.publicAccessBlock; }],
            ["S3.12", "with ACLs enabled (ObjectWriter)", (b) => { b.ownershipControls.rule.objectOwnership = "ObjectWriter"; }],
            ["S3.12", "with a public-read canned ACL", (b) => { b.bucket.acl = "public-read"; }],
            ["S3.13", "with every lifecycle rule disabled", (b) => { for (const r of b.lifecycle.rules) { r.status = "Disabled"; } }],
            ["S3.13", "without a lifecycle configuration", (b) => { delete b.lifecycle; }],
            ["S3.14", "with versioning suspended", (b) => { b.versioning.versioningConfiguration.status = "Suspended"; }],
            ["S3.14", "without versioning", (b) => { delete b.versioning; }],
        ];
        for (const [control, description, mutate] of fixtures) {
            it(`${control}: fails a bucket ${description}`, () => {
                expect(s3ControlFindings(good)).to.deep.equal([]);
                expect(rulesOf(s3ControlFindings(broken(mutate)))).to.deep.equal([control]);
            });
        }
        it("covers every control with a fixture", () => {
            const covered = new Set(fixtures.map((f) => f[0]));
            expect(Object.keys(S3_CONTROLS).filter((c) => !covered.has(c))).to.deep.equal([]);
        });
        it("accepts a TLS-only policy written as one statement for all of S3", () => {
            const policy = { Statement: [{ Effect: "Deny", Principal: { AWS: "*" }, Action: "*", Resource: "*", Condition: { BoolIfExists: { "aws:SecureTransport": false } } }] };
            expect(requiresTls(policy, good.arn)).to.equal(true);
        });
    });

    describe("fails each IAM rule on a broken fixture", () => {
        let identity: any;
        before(async () => {
            identity = policyDocuments((await renderedRun("dev")).run).identity;
        });
        const withStatement = (s: any) => ({ ...identity, Statement: [...identity.Statement, { Sid: "Extra", ...s }] });

        type Fixture = [rule: string, description: string, statement: any];
        const fixtures: Fixture[] = [
            ["IAM.wildcardAction", "Allow s3:*", { Effect: "Allow", Action: "s3:*", Resource: "arn:aws:s3:::b/*" }],
            ["IAM.wildcardAction", "Allow *", { Effect: "Allow", Action: ["*"], Resource: ["arn:aws:s3:::b/*"] }],
            ["IAM.wildcardAction", "Allow s3:Get*", { Effect: "Allow", Action: ["s3:Get*"], Resource: ["arn:aws:s3:::b/*"] }],
            ["IAM.wildcardResource", "Allow on *", { Effect: "Allow", Action: ["s3:GetObject"], Resource: "*" }],
            ["IAM.wildcardResource", "Allow on every bucket", { Effect: "Allow", Action: ["s3:GetObject"], Resource: ["arn:aws:s3:::*"] }],
            ["IAM.notAction", "Allow with NotAction", { Effect: "Allow", NotAction: ["iam:*"], Resource: ["arn:aws:s3:::b/*"] }],
            ["IAM.notResource", "Allow with NotResource", { Effect: "Allow", Action: ["s3:GetObject"], NotResource: ["arn:aws:s3:::b/x"] }],
        ];
        for (const [rule, description, statement] of fixtures) {
            it(`${rule}: fails a policy with ${description}`, () => {
                expect(iamPolicyFindings(identity)).to.deep.equal([]);
                expect(rulesOf(iamPolicyFindings(withStatement(statement)))).to.deep.equal([rule]);
            });
        }
        it("covers every rule with a fixture", () => {
            const covered = new Set(fixtures.map((f) => f[0]));
            expect(IAM_RULES.filter((r) => !covered.has(r))).to.deep.equal([]);
        });
        it("ignores wildcards in Deny statements, which only take away", () => {
            expect(iamPolicyFindings(withStatement({ Effect: "Deny", Action: "*", Resource: "*" }))).to.deep.equal([]);
        });
        it("tells a wildcard resource from a wildcard inside a named bucket", () => {
            expect(isWildcardResource("*")).to.equal(true);
            expect(isWildcardResource("arn:aws:s3:::*")).to.equal(true);
            expect(isWildcardResource("arn:aws:s3:::bucket/mlflow/*")).to.equal(false);
            expect(isWildcardResource("arn:aws:s3:::bucket")).to.equal(false);
        });
    });

    describe("grouping", () => {
        it("attaches a companion to its bucket by name when no dependency is recorded, and to no other bucket", () => {
            const resources: ResourceLike[] = [
                { type: "aws:s3/bucket:Bucket", urn: "b1", props: { bucket: "one", arn: "arn:aws:s3:::one" }, dependencies: [] },
                { type: "aws:s3/bucket:Bucket", urn: "b2", props: { bucket: "two", arn: "arn:aws:s3:::two" }, dependencies: [] },
                { type: "aws:s3/bucketVersioning:BucketVersioning", urn: "v", props: { bucket: "two", versioningConfiguration: { status: "Enabled" } }, dependencies: [] },
            ];
            const [one, two] = bucketGroups(resources);
            expect(one!.versioning).to.equal(undefined);
            expect(two!.versioning).to.deep.include({ bucket: "two" });
            expect(rulesOf(s3ControlFindings(one!))).to.include("S3.14");
            expect(rulesOf(s3ControlFindings(two!))).to.not.include("S3.14");
        });
    });
});
