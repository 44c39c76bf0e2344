/**
 * The schema rollout (components/schemaRollout.ts): what stops the writers of MLflow's databases
 * before a migration and starts them again after. Its ServiceAccount may get and patch exactly the
 * server's Deployment and the writer CronJobs of the stack, nothing cluster-wide; `pulumi up` runs
 * the quiesce Job, the migration, the Deployment, then the resume Job; the two Jobs are the only
 * pods with an API token and still pass Pod Security restricted and the hardening rules; a
 * config change that needs no migration leaves the quiesce Job as it is, so Pulumi does not run it
 * again, while a new MLflow version does.
 */
import { expect } from "chai";
import * as pulumi from "@pulumi/pulumi";
import { describe as describeFindings } from "../policy/checks/findings";
import { hardeningFindings, podTemplates, restrictedFindings } from "../policy/checks/podSecurity";
import { policies } from "../policy/policies";
import { PROJECT } from "../components/config";
import { QUIESCE_RESOURCES, QUIESCE_TIMEOUT_SECONDS, RESUME_RESOURCES, ROLLOUT_SERVICE_ACCOUNT, SchemaRollout, rolloutRules } from "../components/schemaRollout";
import { MLFLOW_IMAGE } from "../components/versions";
import { ProgramRun, RecordedResource, runProgram } from "./harness";
import { violations } from "./support/policyArgs";
import { KUBERNETES_REPLACE_ONLY, holdsData } from "./support/replaceOnly";
import { renderedRun, RUN_LABELS } from "./support/runs";

const JOB = "kubernetes:batch/v1:Job";
const CRONJOB = "kubernetes:batch/v1:CronJob";
const ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role";
const ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding";
const SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount";
const QUIESCE = /^mlflow-rollout-quiesce$/;
const RESUME = /^mlflow-rollout-resume$/;
const MIGRATION = /^mlflow-migrate$/;
/** MLflow releases to bump to, as test/replacement.spec.ts does (importing a spec would run its tests here). */
const MLFLOW_BUMPS = [
    { MLFLOW_VERSION: "3.17.3", MLFLOW_IMAGE: "ghcr.io/mlflow/mlflow:v3.17.3-full" },
    { MLFLOW_VERSION: "4.0.0", MLFLOW_IMAGE: "ghcr.io/mlflow/mlflow:v4.0.0-full" },
];

const envOf = (job: RecordedResource): Record<string, any> =>
    Object.fromEntries(job.inputs.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom]));

/** The writer CronJobs each run has (the backup always; gc on dev and the variant; grants with served models). */
const WRITERS: Readonly<Record<string, readonly string[]>> = {
    minikube: ["mlflow-db-backup"],
    dev: ["mlflow-gc", "mlflow-db-backup"],
    variant: ["mlflow-gc", "mlflow-serving-grants", "mlflow-db-backup"],
    gateway: ["mlflow-db-backup"],
};

describe("schema rollout", () => {
    it("covers every run the security specs check", () => {
        expect(Object.keys(WRITERS).sort()).to.deep.equal([...RUN_LABELS].sort());
    });

    for (const label of RUN_LABELS) {
        describe(`${label} run`, () => {
            let run: ProgramRun;
            let objects: readonly any[];
            before(async () => {
                ({ run, objects } = await renderedRun(label));
            });

            it("names, in the upgradeLogsCommand output, a selector matching exactly the quiesce, migration and resume pods", () => {
                const command = run.outputs.upgradeLogsCommand as string;
                const m = /-l '([^ ]+) in \(([^)]*)\)'/.exec(command);
                expect(m, command).to.not.equal(null);
                const [, key, values] = m!;
                const selected = objects.filter((o) => o.kind === "Job" || o.kind === "Deployment" || o.kind === "StatefulSet" || o.kind === "CronJob")
                    .filter((o) => values!.split(",").includes((o.spec.jobTemplate?.spec ?? o.spec).template.metadata.labels[key!]))
                    .map((o) => `${o.kind}/${o.metadata.name.replace(/-[0-9a-f]{8}$/, "")}`).sort();
                expect(selected).to.deep.equal(["Job/mlflow-migrate", "Job/mlflow-rollout-quiesce", "Job/mlflow-rollout-resume"]);
                expect(command).to.include(`--context ${run.outputs.kubeContext} -n ${run.outputs.namespaceName}`);
            });

            it("gives its ServiceAccount get and patch on exactly the server's Deployment and the stack's writer CronJobs", () => {
                const role = run.one(ROLE);
                expect(role.inputs.rules).to.deep.equal([
                    { apiGroups: ["apps"], resources: ["deployments"], resourceNames: ["mlflow-tracking-server"], verbs: ["get", "patch"] },
                    { apiGroups: ["batch"], resources: ["cronjobs"], resourceNames: [...WRITERS[label]!], verbs: ["get", "patch"] },
                ]);
                // The names are the live objects' names, not guesses.
                expect(run.one("kubernetes:apps/v1:Deployment", /^mlflow-deployment$/).state.metadata.name).to.equal("mlflow-tracking-server");
                const cronJobs = new Set(run.ofType(CRONJOB).map((c) => c.state.metadata.name));
                for (const name of WRITERS[label]!) {
                    expect(cronJobs.has(name), name).to.equal(true);
                }
                // The restore template is not a writer the rollout may touch: it is only ever run by hand.
                expect(role.inputs.rules[1].resourceNames).to.not.include("mlflow-db-backup-restore");
                expect(role.inputs.metadata.namespace).to.equal(run.outputs.namespaceName);
                for (const rule of role.inputs.rules) {
                    expect(rule.resourceNames, "never every object of a kind").to.not.be.empty;
                    expect(JSON.stringify(rule)).to.not.include("*");
                }
            });

            it("grants nothing cluster-wide, and binds its Role to its own ServiceAccount only", () => {
                for (const type of ["kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"]) {
                    expect(run.ofType(type), type).to.deep.equal([]);
                }
                expect(objects.filter((o) => /^Cluster/.test(o.kind)).map((o) => o.kind)).to.deep.equal([]);
                const role = run.one(ROLE);
                const binding = run.one(ROLE_BINDING);
                expect(binding.inputs.roleRef).to.deep.equal({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.state.metadata.name });
                expect(binding.inputs.subjects).to.deep.equal([{ kind: "ServiceAccount", name: ROLLOUT_SERVICE_ACCOUNT, namespace: run.outputs.namespaceName }]);
                expect(binding.inputs.metadata.namespace).to.equal(role.inputs.metadata.namespace);
                const account = run.ofType(SERVICE_ACCOUNT).filter((a) => a.inputs.metadata.name === ROLLOUT_SERVICE_ACCOUNT);
                expect(account).to.have.length(1);
                expect(account[0]!.inputs.automountServiceAccountToken, "only the two Jobs ask for its token").to.equal(false);
            });

            it("tells its Jobs the same objects its Role names", () => {
                const rules = run.one(ROLE).inputs.rules;
                for (const job of [run.one(JOB, QUIESCE), run.one(JOB, RESUME)]) {
                    const env = envOf(job);
                    expect(env.ROLLOUT_DEPLOYMENT, job.name).to.equal(rules[0].resourceNames[0]);
                    expect(env.ROLLOUT_CRONJOBS.split(","), job.name).to.deep.equal(rules[1].resourceNames);
                    expect(env.ROLLOUT_TIMEOUT_SECONDS).to.equal(String(QUIESCE_TIMEOUT_SECONDS));
                }
            });

            it("runs quiesce after its access exists, the migration after quiesce, the Deployment after the migration, resume after the Deployment and the CronJobs", () => {
                const [quiesce, resume, migration] = [run.one(JOB, QUIESCE), run.one(JOB, RESUME), run.one(JOB, MIGRATION)];
                const access = [run.one(ROLE).urn, run.one(ROLE_BINDING).urn, run.ofType(SERVICE_ACCOUNT).find((a) => a.inputs.metadata.name === ROLLOUT_SERVICE_ACCOUNT)!.urn];
                expect(quiesce.dependencies, "quiesce: Role, RoleBinding, ServiceAccount").to.include.members(access);
                // It reads the databases' revisions: PostgreSQL is ready first.
                expect(quiesce.dependencies, "after PostgreSQL").to.include(run.one("kubernetes:apps/v1:StatefulSet").urn);
                // The backup CronJob exists before quiesce may suspend it.
                expect(quiesce.dependencies).to.include(run.one(CRONJOB, /^mlflow-db-backup-cronjob$/).urn);
                expect(migration.dependencies, "the migration waits for quiesce").to.include(quiesce.urn);
                const deployment = run.one("kubernetes:apps/v1:Deployment", /^mlflow-deployment$/);
                expect(deployment.dependencies, "the Deployment waits for the migration").to.include(migration.urn);
                expect(resume.dependencies, "resume: its access too").to.include.members(access);
                expect(resume.dependencies, "resume waits for the new server").to.include(deployment.urn);
                const ownWriters = run.ofType(CRONJOB).filter((c) => ["mlflow-gc", "mlflow-serving-grants"].includes(c.state.metadata.name));
                expect(ownWriters.length).to.equal(WRITERS[label]!.length - 1);
                expect(resume.dependencies, "resume waits for the CronJobs it resumes").to.include.members(ownWriters.map((c) => c.urn));
                expect(resume.dependencies).to.include(quiesce.urn);
                // And nothing waits the other way round: quiesce runs before any of them.
                for (const later of [migration, deployment, resume, ...ownWriters]) {
                    expect(quiesce.dependencies, later.name).to.not.include(later.urn);
                }
            });

            it("names the quiesce Job in the resume Job's spec, so a new quiesce Job gives resume a new spec", () => {
                const quiesce = run.one(JOB, QUIESCE);
                expect(quiesce.inputs.metadata.name, "auto-named: every replacement has a new name").to.equal(undefined);
                expect(envOf(run.one(JOB, RESUME)).ROLLOUT_QUIESCE_JOB).to.equal(quiesce.state.metadata.name);
                expect(KUBERNETES_REPLACE_ONLY[JOB], "a new env replaces the resume Job, which runs again").to.include("spec.template");
            });

            it("runs both steps restricted and hardened, as the rollout's ServiceAccount with its token, on the server's image", () => {
                const jobs = objects.filter((o) => o.kind === "Job" && /^mlflow-rollout-(quiesce|resume)-[0-9a-f]{8}$/.test(o.metadata.name));
                expect(jobs).to.have.length(2);
                for (const job of jobs) {
                    const [t] = podTemplates(job);
                    const findings = [...restrictedFindings(t!.spec, t!.path), ...hardeningFindings(t!)];
                    expect(findings, `${job.metadata.name}: ${describeFindings(findings)}`).to.deep.equal([]);
                    expect(t!.spec).to.include({ serviceAccountName: ROLLOUT_SERVICE_ACCOUNT, automountServiceAccountToken: true, restartPolicy: "Never" });
                    const [container] = t!.spec.containers;
                    expect(container.image).to.match(new RegExp(`${MLFLOW_IMAGE.slice(MLFLOW_IMAGE.indexOf("/"))}$`));
                    expect(container.securityContext).to.deep.include({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
                    expect(container.command).to.deep.equal(["python"]);
                    expect(container.args[0]).to.equal("/opt/mlflow/server/rollout.py");
                    expect(container.terminationMessagePolicy).to.equal("FallbackToLogsOnError");
                    const sized = container.name === "quiesce" ? QUIESCE_RESOURCES : RESUME_RESOURCES;
                    expect(container.resources.limits).to.deep.include({ cpu: sized.cpuLimit, memory: sized.memoryLimit });
                    expect(container.resources.requests).to.deep.include({ cpu: sized.cpuRequest, memory: sized.memoryRequest });
                    // No AWS identity and no MLflow credential: the database login (quiesce) and the API token.
                    const names = (container.env as any[]).map((e) => e.name);
                    expect(names.filter((n) => n.startsWith("AWS_") || n.startsWith("MLFLOW_AUTH") || n === "MLFLOW_FLASK_SERVER_SECRET_KEY"), job.metadata.name).to.deep.equal([]);
                    expect(job.metadata.annotations).to.deep.equal({ "pulumi.com/replaceUnready": "true" });
                }
            });

            it("passes the policy pack with its token mounted", async () => {
                for (const policy of policies) {
                    expect(await violations(policy, run.resources), policy.name).to.deep.equal([]);
                }
            });
        });
    }

    describe("rolloutRules", () => {
        it("names no CronJob rule when there is no writer CronJob", () => {
            expect(rolloutRules("mlflow-tracking-server", [])).to.deep.equal([
                { apiGroups: ["apps"], resources: ["deployments"], resourceNames: ["mlflow-tracking-server"], verbs: ["get", "patch"] },
            ]);
        });
    });

    describe("when Pulumi runs it again", () => {
        let base: ProgramRun;
        before(async () => {
            base = await runProgram("minikube");
        });
        const jobOf = (r: ProgramRun, name: RegExp) => JSON.stringify(r.one(JOB, name).inputs);

        // A migration that is not needed cannot be seen at render time (the quiesce step compares the
        // revisions at run time): what the program can do is not run it again for a config change.
        for (const change of [{ mlflowAuthCacheTtlSeconds: 300 }, { mlflowDefaultPermission: "EDIT" }, { ingressHost: "mlflow.example.com" }]) {
            it(`leaves the quiesce and resume Jobs unchanged for ${JSON.stringify(change)}, so neither runs again`, async () => {
                const changed = await runProgram("minikube", change);
                // The change does reach the server (or its auth config): a rolling update without downtime.
                const server = (r: ProgramRun) => JSON.stringify([r.one("kubernetes:apps/v1:Deployment", /^mlflow-deployment$/).inputs,
                    r.one("kubernetes:core/v1:ConfigMap", /^mlflow-auth-config$/).inputs]);
                expect(server(changed), "the change reaches the server").to.not.equal(server(base));
                expect(jobOf(changed, QUIESCE)).to.equal(jobOf(base, QUIESCE));
                expect(jobOf(changed, RESUME)).to.equal(jobOf(base, RESUME));
            });
        }

        for (const bump of MLFLOW_BUMPS) {
            it(`replaces the quiesce Job for MLflow ${bump.MLFLOW_VERSION}, so it checks the new image's heads before the migration`, async () => {
                const bumped = await runProgram("minikube", {}, { versions: bump });
                const template = (r: ProgramRun) => r.one(JOB, QUIESCE).inputs.spec.template;
                expect(JSON.stringify(template(bumped)), "spec.template is replace-only: a new Job, which runs").to.not.equal(JSON.stringify(template(base)));
                expect(template(bumped).spec.containers[0].image).to.equal(bump.MLFLOW_IMAGE);
                expect(JSON.stringify(bumped.one(JOB, RESUME).inputs.spec.template)).to.not.equal(JSON.stringify(base.one(JOB, RESUME).inputs.spec.template));
            });
        }

        it("holds no data: replacing any of its objects loses nothing", () => {
            const rollout = base.one("mlflow-k8s:kubernetes:SchemaRollout");
            const children = base.resources.filter((r) => r.parent === rollout.urn);
            expect(children.map((c) => c.type).sort()).to.deep.equal([JOB, JOB, SERVICE_ACCOUNT, ROLE, ROLE_BINDING].sort());
            const policy = base.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", /^mlflow-network-schema-rollout$/);
            for (const r of [...children, policy]) {
                expect(holdsData(r), `${r.type} ${r.name}`).to.equal(false);
            }
        });
    });

    describe("MLflow's telemetry", () => {
        /** Containers that run MLflow's code: the server, the migration, quiesce, gc and the grants. */
        const MLFLOW_PROCESSES = ["mlflow", "migrate", "quiesce", "gc", "serving-grants"];
        const telemetryOf = (objects: readonly any[]) => objects.flatMap((o) => podTemplates(o).flatMap((t) =>
            [...(t.spec.initContainers ?? []), ...t.spec.containers].map((c: any) => ({
                owner: o.metadata.name as string, name: c.name as string,
                value: (c.env ?? []).find((e: any) => e.name === "MLFLOW_DISABLE_TELEMETRY")?.value as string | undefined,
            }))));

        it("is off in every process of the server's image by default", async () => {
            const containers = telemetryOf((await renderedRun("variant")).objects);
            const processes = containers.filter((c) => MLFLOW_PROCESSES.includes(c.name));
            expect(processes.map((c) => c.name).sort()).to.deep.equal([...MLFLOW_PROCESSES].sort());
            for (const c of processes) {
                expect(c.value, `${c.owner}/${c.name}`).to.equal("true");
            }
        });

        it("is left to MLflow in those processes with mlflowTelemetry true, and stays off on the model servers", async () => {
            const { kubernetesManifests } = await import("../scripts/render");
            const run = await runProgram("minikube", { mlflowTelemetry: true, servedModels: JSON.stringify([{ name: "iris", model: "models:/iris@champion" }]) });
            const containers = telemetryOf(kubernetesManifests(run).map((m) => m.object));
            for (const c of containers.filter((x) => MLFLOW_PROCESSES.includes(x.name))) {
                expect(c.value, `${c.owner}/${c.name}`).to.equal(undefined);
            }
            const server = run.one("kubernetes:apps/v1:Deployment", /^mlflow-deployment$/).inputs.spec.template.spec.containers[0];
            expect(server.env.map((e: any) => e.name)).to.not.include("MLFLOW_DISABLE_TELEMETRY");
            const models = containers.filter((c) => c.owner.startsWith("mlflow-model-"));
            expect(models).to.not.be.empty;
            for (const c of models) {
                expect(c.value, `${c.owner}/${c.name}: model code runs there`).to.equal("true");
            }
        });
    });

    describe("the component alone", () => {
        /** Builds the component under mocks whose auto-names end in `suffix`; returns the resume Job's inputs. */
        async function resumeInputs(suffix: string): Promise<any> {
            const inputs = new Map<string, any>();
            await pulumi.runtime.setMocks({
                newResource(args: pulumi.runtime.MockResourceArgs) {
                    inputs.set(args.name, args.inputs);
                    const name = args.inputs.metadata?.name ?? `${args.name}-${suffix}`;
                    return { id: name, state: { ...args.inputs, metadata: { ...args.inputs.metadata, name } } };
                },
                call() {
                    throw new Error("no calls");
                },
            }, PROJECT, "schema-rollout-spec", false);
            const rollout = new SchemaRollout("mlflow-rollout", {
                namespace: "mlflow", instance: "mlflow", deploymentName: "mlflow-tracking-server", cronJobNames: ["mlflow-db-backup"],
                databaseUris: { tracking: "postgresql+psycopg2://db:5432/mlflow", auth: "postgresql+psycopg2://db:5432/mlflow_auth" },
                pod: { podSpec: {}, container: { image: MLFLOW_IMAGE }, env: [], volumes: [], volumeMounts: [], script: "/opt/mlflow/server/rollout.py" },
            });
            const resume = rollout.resumeAfter("mlflow-rollout-resume", []);
            await new Promise((resolve) => resume.urn.apply(resolve));
            await new Promise((resolve) => setTimeout(resolve, 50));
            return inputs.get("mlflow-rollout-resume");
        }

        it("gives the resume Job a new spec whenever the quiesce Job gets a new name", async () => {
            const [first, second] = [await resumeInputs("aaaa1111"), await resumeInputs("bbbb2222")];
            const quiesceEnv = (i: any) => i.spec.template.spec.containers[0].env.find((e: any) => e.name === "ROLLOUT_QUIESCE_JOB").value;
            expect(quiesceEnv(first)).to.equal("mlflow-rollout-quiesce-aaaa1111");
            expect(quiesceEnv(second)).to.equal("mlflow-rollout-quiesce-bbbb2222");
            expect(JSON.stringify(first.spec.template)).to.not.equal(JSON.stringify(second.spec.template));
        });
    });
});
