/**
 * AWS access in each credential mode: access keys (rotated by generation), EKS Pod Identity and
 * IRSA. The same identity policy in every mode; roles that admit exactly their workload's
 * ServiceAccount; no user, key or S3 Secret in the role modes; every security check passing.
 */
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { expect } from "chai";
import { accessKeyName } from "../components/artifactStore";
import { BACKUP_SERVICE_ACCOUNT } from "../components/databaseBackup";
import { irsaTrustPolicy, oidcIssuer, podIdentityTrustPolicy } from "../components/iamPolicies";
import { POD_IDENTITY_AGENT } from "../components/networkPolicies";
import { ROLLOUT_SERVICE_ACCOUNT } from "../components/schemaRollout";
import { SERVER_SERVICE_ACCOUNT } from "../components/trackingServer";
import { describe as describeFindings } from "../policy/checks/findings";
import { networkIsolationFindings } from "../policy/checks/networkPolicy";
import { hardeningFindings, podTemplates, restrictedFindings } from "../policy/checks/podSecurity";
import { policies } from "../policy/policies";
import { kubernetesManifests } from "../scripts/render";
import { ProgramRun, runProgram, stackRun } from "./harness";
import { violations } from "./support/policyArgs";
import { credentialLeaks } from "./support/secretsHygiene";
import { schemaErrors } from "./support/schema";
import { connectionAllowed, PodEndpoint } from "./support/networkSim";

const OIDC = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const MODES = {
    podIdentity: { awsCredentials: "podIdentity", eksClusterName: "mlflow-dev" },
    irsa: { awsCredentials: "irsa", eksOidcProviderArn: OIDC },
} as const;
const identityPolicy = (run: ProgramRun, name: string) => JSON.parse(run.one("aws:iam/policy:Policy", new RegExp(`^${name}-policy$`)).inputs.policy);
const envOf = (container: any) => Object.fromEntries((container.env ?? []).map((e: any) => [e.name, e]));
const podSpecs = (run: ProgramRun) => kubernetesManifests(run).map((m) => m.object).flatMap((o) => podTemplates(o).map((t) => ({ kind: o.kind, name: o.metadata.name, spec: t.spec })));

describe("AWS credential modes", () => {
    let keys: ProgramRun;
    before(async () => {
        keys = await stackRun("dev");
    });

    describe("accessKey (default): rotation by generation", () => {
        let rotated: ProgramRun;
        before(async () => {
            rotated = await runProgram("dev", { awsAccessKeyGeneration: 2 });
        });

        it("creates the next generation's keys as new resources and drops the old ones from the program", () => {
            const names = (r: ProgramRun) => r.ofType("aws:iam/accessKey:AccessKey").map((k) => k.name).sort();
            expect(names(keys)).to.deep.equal([accessKeyName("mlflow-artifacts", 1), accessKeyName("mlflow-artifacts-backup", 1)].sort());
            expect(names(rotated)).to.deep.equal(["mlflow-artifacts-access-key-gen2", "mlflow-artifacts-backup-access-key-gen2"]);
            // The users stay: only their keys change.
            expect(rotated.ofType("aws:iam/user:User").map((u) => u.urn)).to.deep.equal(keys.ofType("aws:iam/user:User").map((u) => u.urn));
        });

        it("puts the new key in a new Secret that the pods read, so they roll onto it before the update ends", () => {
            const key = rotated.one("aws:iam/accessKey:AccessKey", /^mlflow-artifacts-access-key-gen2$/);
            const secret = rotated.one("kubernetes:core/v1:Secret", /^mlflow-s3-credentials$/);
            expect(secret.inputs.stringData.AWS_ACCESS_KEY_ID).to.equal(key.id);
            expect(secret.dependencies).to.include(key.urn);
            const deployment = rotated.one("kubernetes:apps/v1:Deployment", /^mlflow-deployment$/);
            expect(envOf(deployment.inputs.spec.template.spec.containers[0]).AWS_ACCESS_KEY_ID.valueFrom.secretKeyRef.name).to.equal(secret.state.metadata.name);
            expect(deployment.dependencies).to.include(secret.urn);
            const checksum = (r: ProgramRun) => r.one("kubernetes:apps/v1:Deployment", /^mlflow-deployment$/).inputs.spec.template.metadata.annotations["checksum/config"];
            expect(checksum(rotated), "the pod template changes: a rollout, awaited by Pulumi").to.not.equal(checksum(keys));
        });

        it("leaves nothing in the program that still names an old key, so Pulumi deletes it last, after the rollout", () => {
            const old = keys.ofType("aws:iam/accessKey:AccessKey").map((k) => k.id);
            const everything = JSON.stringify(rotated.resources.map((r) => r.inputs));
            for (const id of old) {
                expect(everything.includes(id), id).to.equal(false);
            }
            expect(rotated.resources.some((r) => keys.ofType("aws:iam/accessKey:AccessKey").some((k) => k.urn === r.urn))).to.equal(false);
        });
    });

    for (const [mode, overrides] of Object.entries(MODES)) {
        describe(`${mode}`, () => {
            let run: ProgramRun;
            before(async () => {
                run = await runProgram("dev", overrides);
            });

            it("creates no IAM user, no access key and no S3 Secret", () => {
                expect(run.ofType("aws:iam/user:User")).to.have.length(0);
                expect(run.ofType("aws:iam/accessKey:AccessKey")).to.have.length(0);
                const secrets = run.ofType("kubernetes:core/v1:Secret").map((s) => Object.keys(s.inputs.stringData ?? {}));
                expect(secrets.flat()).to.not.include("AWS_ACCESS_KEY_ID");
                expect(run.credentials.filter((c) => c.startsWith("mockkeyid"))).to.deep.equal([]);
            });

            it("attaches the same identity policies as the access-key mode, to one role per workload", () => {
                for (const name of ["mlflow-artifacts", "mlflow-artifacts-backup"]) {
                    expect(identityPolicy(run, name)).to.deep.equal(identityPolicy(keys, name));
                    const role = run.one("aws:iam/role:Role", new RegExp(`^${name}-role$`));
                    const attachment = run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", new RegExp(`^${name}-policy-attachment$`));
                    expect(attachment.inputs.role).to.equal(role.state.name ?? role.inputs.name ?? attachment.inputs.role);
                    expect(attachment.inputs.policyArn).to.equal(run.one("aws:iam/policy:Policy", new RegExp(`^${name}-policy$`)).state.arn);
                }
            });

            it("trusts exactly each workload's ServiceAccount in the stack's namespace", () => {
                const expected = (sa: string) => mode === "podIdentity"
                    ? podIdentityTrustPolicy("mlflow-dev", { namespace: "mlflow", serviceAccount: sa })
                    : irsaTrustPolicy(OIDC, { namespace: "mlflow", serviceAccount: sa });
                expect(JSON.parse(run.one("aws:iam/role:Role", /^mlflow-artifacts-role$/).inputs.assumeRolePolicy)).to.deep.equal(expected(SERVER_SERVICE_ACCOUNT));
                expect(JSON.parse(run.one("aws:iam/role:Role", /^mlflow-artifacts-backup-role$/).inputs.assumeRolePolicy)).to.deep.equal(expected(BACKUP_SERVICE_ACCOUNT));
            });

            it("runs every pod that reaches S3 as its workload's own ServiceAccount, with no API token mounted", () => {
                const accounts = run.ofType("kubernetes:core/v1:ServiceAccount");
                // The schema rollout's account reaches no AWS service: no role, no annotation.
                expect(accounts.map((a) => a.inputs.metadata.name).sort()).to.deep.equal([BACKUP_SERVICE_ACCOUNT, ROLLOUT_SERVICE_ACCOUNT, SERVER_SERVICE_ACCOUNT]);
                for (const a of accounts) {
                    // On the object itself, even the rollout's: its token is mounted by its two Jobs alone.
                    expect(a.inputs.automountServiceAccountToken, a.inputs.metadata.name).to.equal(false);
                    const annotation = a.inputs.metadata.annotations?.["eks.amazonaws.com/role-arn"];
                    if (a.inputs.metadata.name === ROLLOUT_SERVICE_ACCOUNT) {
                        expect(a.inputs.metadata.annotations ?? {}, "the rollout's account assumes no IAM role").to.not.have.any.keys("eks.amazonaws.com/role-arn");
                    } else if (mode === "irsa") {
                        const role = a.inputs.metadata.name === SERVER_SERVICE_ACCOUNT ? "mlflow-artifacts-role" : "mlflow-artifacts-backup-role";
                        expect(annotation).to.equal(run.one("aws:iam/role:Role", new RegExp(`^${role}$`)).state.arn);
                    } else {
                        expect(annotation).to.equal(undefined);
                    }
                }
                for (const t of podSpecs(run)) {
                    if (t.kind === "StatefulSet") {
                        expect(t.spec.serviceAccountName, "PostgreSQL needs no AWS").to.equal(undefined);
                        continue;
                    }
                    if (t.spec.serviceAccountName === ROLLOUT_SERVICE_ACCOUNT) {
                        // The schema rollout's Jobs: the Kubernetes API and the database, no AWS at all.
                        expect(t.kind, t.name).to.equal("Job");
                        expect(t.name).to.match(/^mlflow-rollout-(quiesce|resume)-/);
                        expect(t.spec.automountServiceAccountToken).to.equal(true);
                        for (const c of t.spec.containers) {
                            expect(Object.keys(envOf(c)).filter((n) => n.startsWith("AWS_")), `${t.name}/${c.name}`).to.deep.equal([]);
                        }
                        continue;
                    }
                    // The server and its garbage collection (which deletes artifacts as the server) run as the server.
                    const asServer = t.kind === "Deployment" || t.name === "mlflow-gc";
                    expect(t.spec.serviceAccountName, `${t.kind} ${t.name}`).to.equal(asServer ? SERVER_SERVICE_ACCOUNT : BACKUP_SERVICE_ACCOUNT);
                    expect(t.spec.automountServiceAccountToken).to.equal(false);
                    for (const c of [...(t.spec.initContainers ?? []), ...t.spec.containers]) {
                        const env = envOf(c);
                        expect(env.AWS_ACCESS_KEY_ID, `${t.name}/${c.name}`).to.equal(undefined);
                        if (env.AWS_DEFAULT_REGION !== undefined) {
                            expect(env.AWS_DEFAULT_REGION.value).to.equal("eu-west-1");
                        }
                    }
                }
            });

            if (mode === "podIdentity") {
                it("associates each role with its ServiceAccount in the configured cluster", () => {
                    const associations = run.ofType("aws:eks/podIdentityAssociation:PodIdentityAssociation");
                    expect(associations.map((a) => [a.inputs.clusterName, a.inputs.namespace, a.inputs.serviceAccount]).sort()).to.deep.equal([
                        ["mlflow-dev", "mlflow", BACKUP_SERVICE_ACCOUNT], ["mlflow-dev", "mlflow", SERVER_SERVICE_ACCOUNT],
                    ]);
                    for (const a of associations) {
                        const role = a.inputs.serviceAccount === SERVER_SERVICE_ACCOUNT ? "mlflow-artifacts-role" : "mlflow-artifacts-backup-role";
                        expect(a.inputs.roleArn).to.equal(run.one("aws:iam/role:Role", new RegExp(`^${role}$`)).state.arn);
                    }
                });

                it("lets the pods that reach S3 reach the Pod Identity Agent on their node, and no other pod", () => {
                    const objects = kubernetesManifests(run).map((m) => m.object);
                    const pods = (kind: string) => podTemplates(objects.find((o) => o.kind === kind)!).map((t) => ({ namespace: "mlflow", labels: t.labels }))[0] as PodEndpoint;
                    const agent = { ip: "169.254.170.23" };
                    expect(connectionAllowed(objects, pods("Deployment"), agent, POD_IDENTITY_AGENT.port)).to.equal(true);
                    expect(connectionAllowed(objects, pods("CronJob"), agent, POD_IDENTITY_AGENT.port)).to.equal(true);
                    expect(connectionAllowed(objects, pods("StatefulSet"), agent, POD_IDENTITY_AGENT.port)).to.equal(false);
                    const rollout = objects.filter((o) => o.kind === "Job" && /^mlflow-rollout-/.test(o.metadata.name));
                    expect(rollout).to.have.length(2);
                    for (const job of rollout) {
                        const pod = { namespace: "mlflow", labels: podTemplates(job)[0]!.labels };
                        expect(connectionAllowed(objects, pod, agent, POD_IDENTITY_AGENT.port), `${job.metadata.name}: no AWS credentials`).to.equal(false);
                    }
                    const keyObjects = kubernetesManifests(keys).map((m) => m.object);
                    const keyServer = podTemplates(keyObjects.find((o) => o.kind === "Deployment")!).map((t) => ({ namespace: "mlflow", labels: t.labels }))[0]!;
                    expect(connectionAllowed(keyObjects, keyServer, agent, POD_IDENTITY_AGENT.port), "not in accessKey mode").to.equal(false);
                });
            } else {
                it("makes no Pod Identity association, and names the role on the ServiceAccount instead", () => {
                    expect(run.ofType("aws:eks/podIdentityAssociation:PodIdentityAssociation")).to.have.length(0);
                    expect(oidcIssuer(OIDC)).to.equal("oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE");
                });
            }

            it("passes Pod Security restricted, the hardening rules, the schema, NetworkPolicy isolation, secrets hygiene and the policy pack", async () => {
                const objects = kubernetesManifests(run).map((m) => m.object);
                for (const t of objects.flatMap(podTemplates)) {
                    const findings = [...restrictedFindings(t.spec, t.path), ...hardeningFindings(t)];
                    expect(findings, `${t.kind}: ${describeFindings(findings)}`).to.deep.equal([]);
                }
                for (const o of objects) {
                    expect(schemaErrors(o), `${o.kind}/${o.metadata.name}`).to.deep.equal([]);
                }
                expect(networkIsolationFindings(objects)).to.deep.equal([]);
                expect(credentialLeaks(run)).to.deep.equal([]);
                for (const policy of policies) {
                    expect(await violations(policy, run.resources), policy.name).to.deep.equal([]);
                }
            });
        });
    }

    describe("trust policies, evaluated (iam-simulate)", () => {
        const role = "arn:aws:iam::123456789012:role/mlflow/mlflow-artifacts-role";
        const decide = async (policy: unknown, principal: string, action: string, context: Record<string, string>) => {
            const result = await runSimulation({
                request: { principal, action, resource: { resource: role, accountId: "123456789012" }, contextVariables: context },
                identityPolicies: [], serviceControlPolicies: [], resourceControlPolicies: [], resourcePolicy: policy as any,
            }, {});
            return (result as any).overallResult as string;
        };
        const tags = (cluster: string, namespace: string, sa: string) => ({
            "aws:RequestTag/eks-cluster-name": cluster, "aws:RequestTag/kubernetes-namespace": namespace, "aws:RequestTag/kubernetes-service-account": sa,
        });
        const trust = podIdentityTrustPolicy("mlflow-dev", { namespace: "mlflow", serviceAccount: SERVER_SERVICE_ACCOUNT });
        const cases: Array<[string, Record<string, string>, string]> = [
            ["the server's ServiceAccount in the stack's namespace and cluster", tags("mlflow-dev", "mlflow", SERVER_SERVICE_ACCOUNT), "Allowed"],
            ["another ServiceAccount of the namespace", tags("mlflow-dev", "mlflow", "default"), "ImplicitlyDenied"],
            ["the backups' ServiceAccount", tags("mlflow-dev", "mlflow", BACKUP_SERVICE_ACCOUNT), "ImplicitlyDenied"],
            ["the schema rollout's ServiceAccount", tags("mlflow-dev", "mlflow", ROLLOUT_SERVICE_ACCOUNT), "ImplicitlyDenied"],
            ["the same ServiceAccount name in another namespace", tags("mlflow-dev", "data-science", SERVER_SERVICE_ACCOUNT), "ImplicitlyDenied"],
            ["the same namespace and name in another cluster", tags("other-cluster", "mlflow", SERVER_SERVICE_ACCOUNT), "ImplicitlyDenied"],
        ];
        for (const [what, context, expected] of cases) {
            it(`Pod Identity: ${expected === "Allowed" ? "admits" : "refuses"} ${what}`, async () => {
                expect(await decide(trust, "pods.eks.amazonaws.com", "sts:AssumeRole", context)).to.equal(expected);
            });
        }

        it("Pod Identity: refuses any other service, and an IAM user of the account", async () => {
            const own = tags("mlflow-dev", "mlflow", SERVER_SERVICE_ACCOUNT);
            expect(await decide(trust, "ec2.amazonaws.com", "sts:AssumeRole", own)).to.equal("ImplicitlyDenied");
            expect(await decide(trust, "arn:aws:iam::123456789012:user/someone", "sts:AssumeRole", own)).to.equal("ImplicitlyDenied");
        });

        it("IRSA: binds the token's subject to exactly the ServiceAccount and its audience to STS (iam-simulate does not evaluate OIDC keys: checked as written)", () => {
            const doc = irsaTrustPolicy(OIDC, { namespace: "mlflow", serviceAccount: SERVER_SERVICE_ACCOUNT });
            const [statement] = doc.Statement;
            expect(statement!.Principal).to.deep.equal({ Federated: OIDC });
            expect(statement!.Action).to.deep.equal(["sts:AssumeRoleWithWebIdentity"]);
            const issuer = oidcIssuer(OIDC);
            // StringEquals, never StringLike: a wildcard would admit every ServiceAccount of the cluster.
            expect(statement!.Condition).to.deep.equal({ StringEquals: {
                [`${issuer}:sub`]: "system:serviceaccount:mlflow:mlflow-tracking-server",
                [`${issuer}:aud`]: "sts.amazonaws.com",
            } });
            expect(JSON.stringify(doc)).to.not.include("*");
        });
    });
});
