/**
 * The CrossGuard pack, tested offline twice: on the program's real resources (every policy
 * passes, on every run) and on known-bad fixtures (each policy fails its own, and only its own).
 * The pack itself is never constructed for real: that would start its gRPC server.
 */
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import type { ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { ROLLOUT_SERVICE_ACCOUNT } from "../components/lib/names";
import { ROLLOUT_SERVICE_ACCOUNT as PACK_ROLLOUT_SERVICE_ACCOUNT } from "../policy/checks/podSecurity";
import { POLICY_DOCUMENT_TYPES } from "../policy/checks/resources";
import { policies, WORKLOAD_TYPES } from "../policy/policies";
import { ROOT } from "./harness";
import { PolicyTarget, violations } from "./support/policyArgs";
import { renderedRun, RUN_LABELS } from "./support/runs";

type AnyPolicy = ResourceValidationPolicy | StackValidationPolicy;
const POLICY_DIR = path.join(ROOT, "policy");

/** Resource types each resource policy inspects; a run without any would pass it vacuously. */
const TARGETS: Record<string, readonly string[]> = {
    "k8s-pod-security-restricted": WORKLOAD_TYPES,
    "k8s-pod-hardening": WORKLOAD_TYPES,
    "k8s-workload-probes": ["kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"],
    "k8s-namespace-pod-security": ["kubernetes:core/v1:Namespace"],
    "aws-iam-no-wildcards": POLICY_DOCUMENT_TYPES,
    "k8s-network-isolation": ["kubernetes:networking.k8s.io/v1:NetworkPolicy"],
    "aws-s3-fsbp": ["aws:s3/bucket:Bucket"],
};

describe("policy pack (CrossGuard, offline)", () => {
    it("admits an API token for the schema rollout's ServiceAccount by the same name the program gives it (the pack keeps its own copy)", () => {
        expect(PACK_ROLLOUT_SERVICE_ACCOUNT).to.equal(ROLLOUT_SERVICE_ACCOUNT);
    });

    describe("the pack", () => {
        it("declares mandatory policies with unique names and descriptions", () => {
            expect(policies.length).to.equal(7);
            expect(new Set(policies.map((p) => p.name)).size).to.equal(policies.length);
            for (const p of policies) {
                expect(p.enforcementLevel, p.name).to.equal("mandatory");
                expect(p.description, p.name).to.have.length.greaterThan(20);
            }
            expect(Object.keys(TARGETS).sort()).to.deep.equal(policies.map((p) => p.name).sort());
        });

        it("is assembled by policy/index.ts as one mandatory pack of exactly these policies", () => {
            // Stand in for @pulumi/policy as policy/index.ts resolves it, to capture the pack's
            // arguments without starting the analyzer server.
            const resolved = require.resolve("@pulumi/policy", { paths: [POLICY_DIR] });
            const entry = require.resolve(path.join(POLICY_DIR, "index"));
            const saved = require.cache[resolved];
            const built: Array<{ name: string; args: any }> = [];
            class PolicyPack {
                constructor(name: string, args: any) {
                    built.push({ name, args });
                }
            }
            require.cache[resolved] = { id: resolved, filename: resolved, loaded: true, exports: { PolicyPack } } as any;
            try {
                delete require.cache[entry];
                require(entry);
            } finally {
                delete require.cache[entry];
                if (saved === undefined) {
                    delete require.cache[resolved];
                } else {
                    require.cache[resolved] = saved;
                }
            }
            expect(built).to.have.length(1);
            expect(built[0]!.name).to.equal("mlflow-k8s-security");
            expect(built[0]!.args.enforcementLevel).to.equal("mandatory");
            expect(built[0]!.args.policies.map((p: AnyPolicy) => p.name)).to.deep.equal(policies.map((p) => p.name));
        });

        it("is an installable pack: PulumiPolicy.yaml and a package.json pinning the root's Pulumi versions", () => {
            expect(fs.readFileSync(path.join(POLICY_DIR, "PulumiPolicy.yaml"), "utf8")).to.match(/^runtime: nodejs$/m);
            const pack = JSON.parse(fs.readFileSync(path.join(POLICY_DIR, "package.json"), "utf8"));
            const root = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
            expect(pack.dependencies["@pulumi/policy"]).to.equal("1.21.0");
            expect(pack.dependencies["@pulumi/policy"]).to.equal(root.devDependencies["@pulumi/policy"]);
            expect(pack.dependencies["@pulumi/pulumi"]).to.equal(root.dependencies["@pulumi/pulumi"]);
            expect(pack.devDependencies.typescript).to.equal(root.devDependencies.typescript);
            const lock = JSON.parse(fs.readFileSync(path.join(POLICY_DIR, "package-lock.json"), "utf8"));
            expect(lock.packages["node_modules/@pulumi/policy"].version).to.equal("1.21.0");
            for (const [name, version] of Object.entries({ ...pack.dependencies, ...pack.devDependencies })) {
                expect(version, name).to.match(/^\d+\.\d+\.\d+$/);
            }
        });
    });

    for (const label of RUN_LABELS) {
        describe(`on the program's resources (${label} run)`, () => {
            for (const policy of policies) {
                it(`${policy.name} passes, and has resources to check`, async () => {
                    const { run } = await renderedRun(label);
                    expect(run.resources.filter((r) => TARGETS[policy.name]!.includes(r.type))).to.not.be.empty;
                    const found = await violations(policy, run.resources);
                    expect(found, found.join("\n")).to.deep.equal([]);
                });
            }
        });
    }

    describe("on known-bad fixtures: each policy fails its own, and only its own", () => {
        let base: readonly PolicyTarget[];
        before(async () => {
            base = (await renderedRun("dev")).run.resources;
        });
        /** The run's resources with one of a type changed (or removed, when `mutate` returns false). */
        const broken = (type: string, mutate: (state: any) => void | false, match?: RegExp): PolicyTarget[] => {
            const index = base.findIndex((r) => r.type === type && (match === undefined || match.test(r.name)));
            expect(index, `no ${type}`).to.be.at.least(0);
            const copy = structuredClone(base[index]!);
            const keep = mutate(copy.state) !== false;
            return [...base.slice(0, index), ...(keep ? [copy] : []), ...base.slice(index + 1)];
        };
        const container = (s: any) => s.spec.template.spec.containers[0];

        type Fixture = [policy: string, description: string, resources: () => PolicyTarget[]];
        const fixtures: Fixture[] = [
            ["k8s-pod-security-restricted", "a privileged server container", () => broken("kubernetes:apps/v1:Deployment", (s) => { container(s).securityContext.privileged = true; })],
            ["k8s-pod-security-restricted", "a migration init container allowed to escalate", () => broken("kubernetes:batch/v1:Job", (s) => { s.spec.template.spec.initContainers[0].securityContext.allowPrivilegeEscalation = true; }, /^mlflow-migrate$/)],
            ["k8s-pod-hardening", "PostgreSQL with a writable root filesystem", () => broken("kubernetes:apps/v1:StatefulSet", (s) => { container(s).securityContext.readOnlyRootFilesystem = false; })],
            ["k8s-pod-hardening", "a server Deployment mounting a token as the schema rollout's ServiceAccount", () => broken("kubernetes:apps/v1:Deployment", (s) => {
                s.spec.template.spec.serviceAccountName = "mlflow-schema-rollout"; s.spec.template.spec.automountServiceAccountToken = true;
            }, /^mlflow-deployment$/)],
            ["k8s-pod-hardening", "the schema rollout's resume Job as another ServiceAccount, its token mounted", () => broken("kubernetes:batch/v1:Job", (s) => {
                s.spec.template.spec.serviceAccountName = "mlflow-db-backup";
            }, /^mlflow-rollout-resume$/)],
            ["k8s-pod-hardening", "a server image on :latest", () => broken("kubernetes:apps/v1:Deployment", (s) => { container(s).image = "ghcr.io/mlflow/mlflow:latest"; })],
            ["k8s-workload-probes", "a server without a readiness probe", () => broken("kubernetes:apps/v1:Deployment", (s) => { delete container(s).readinessProbe; })],
            ["k8s-workload-probes", "a server without a preStop hook", () => broken("kubernetes:apps/v1:Deployment", (s) => { delete container(s).lifecycle; })],
            ["k8s-namespace-pod-security", "a namespace enforcing only baseline", () => broken("kubernetes:core/v1:Namespace", (s) => { s.metadata.labels["pod-security.kubernetes.io/enforce"] = "baseline"; })],
            ["k8s-network-isolation", "no default-deny policy", () => broken("kubernetes:networking.k8s.io/v1:NetworkPolicy", () => false, /default-deny/)],
            ["k8s-network-isolation", "a server policy open to the world", () => broken("kubernetes:networking.k8s.io/v1:NetworkPolicy", (s) => { s.spec.ingress = [{}]; }, /tracking-server/)],
            ["aws-s3-fsbp", "versioning suspended", () => broken("aws:s3/bucketVersioning:BucketVersioning", (s) => { s.versioningConfiguration.status = "Suspended"; })],
            ["aws-s3-fsbp", "no public access block", () => broken("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", () => false)],
            ["aws-iam-no-wildcards", "an identity policy allowing s3:*", () => broken("aws:iam/policy:Policy", (s) => {
                const doc = JSON.parse(s.policy);
                doc.Statement[1].Action = ["s3:*"];
                s.policy = JSON.stringify(doc);
            })],
        ];

        for (const [name, description, resources] of fixtures) {
            it(`${name}: fails ${description}`, async () => {
                const own = policies.find((p) => p.name === name)!;
                const bad = resources();
                expect(await violations(own, base), "passes before the change").to.deep.equal([]);
                expect(await violations(own, bad)).to.not.be.empty;
                for (const other of policies.filter((p) => p !== own)) {
                    expect(await violations(other, bad), other.name).to.deep.equal([]);
                }
            });
        }

        it("has a fixture for every policy", () => {
            const covered = new Set(fixtures.map((f) => f[0]));
            expect(policies.map((p) => p.name).filter((n) => !covered.has(n))).to.deep.equal([]);
        });
    });
});
