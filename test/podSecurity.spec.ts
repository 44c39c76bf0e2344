import { expect } from "chai";
import { describe as describeFindings, rulesOf } from "../policy/checks/findings";
import {
    HARDENING_RULES, hardeningFindings, isPinnedImage, podTemplates, RESTRICTED_RULES, restrictedFindings, workloadFindings,
} from "../policy/checks/podSecurity";
import { ROLLOUT_SERVICE_ACCOUNT } from "../components/schemaRollout";
import { servedModelNames } from "./harness";
import { renderedRun, RUN_LABELS } from "./support/runs";

describe("Pod Security Standards restricted and hardening", () => {
    for (const label of RUN_LABELS) {
        describe(`${label} run`, () => {
            it("checks every pod template, init containers included: server, PostgreSQL, migration Job, schema rollout, backups, restores, model servers and their grants, garbage collection", async () => {
                const { objects, run } = await renderedRun(label);
                const templates = objects.flatMap((o) => podTemplates(o).map((t) => ({ ...t, name: o.metadata.name })));
                // Each served model adds a Deployment; having any adds the grants CronJob.
                const served = servedModelNames(run).length;
                expect(served, "the variant serves models").to.equal(label === "variant" ? 2 : 0);
                // gcSchedule adds the garbage collection CronJob (dev and the variant).
                const gc = ["dev", "variant"].includes(label) ? 1 : 0;
                expect(templates.filter((t) => t.name === "mlflow-gc"), "the gc CronJob").to.have.length(gc);
                const expected = ["CronJob", "CronJob", ...(served > 0 ? ["CronJob"] : []), ...Array(gc).fill("CronJob"), ...Array(1 + served).fill("Deployment"), "Job", "Job", "Job", "StatefulSet"];
                expect(templates.map((t) => t.kind).sort()).to.deep.equal(expected);
                for (const model of templates.filter((t) => t.name.startsWith("mlflow-model-"))) {
                    expect(model.spec.initContainers.map((c: any) => c.name)).to.deep.equal(["download"]);
                    expect(model.spec.containers.map((c: any) => c.name)).to.deep.equal(["serve"]);
                }
                const job = templates.find((t) => t.kind === "Job" && t.name.startsWith("mlflow-migrate-"))!;
                expect(job.spec.initContainers.map((c: any) => c.name)).to.deep.equal(["backup-dump", "backup-upload"]);
                expect(job.spec.containers.map((c: any) => c.name)).to.deep.equal(["migrate"]);
                // The schema rollout: one container each, and the only pods that mount an API token.
                const rollout = templates.filter((t) => t.kind === "Job" && t.name.startsWith("mlflow-rollout-"));
                expect(rollout.map((t) => t.spec.containers.map((c: any) => c.name)).sort()).to.deep.equal([["quiesce"], ["resume"]]);
                for (const t of templates) {
                    const isRollout = rollout.includes(t);
                    expect(t.spec.automountServiceAccountToken, `${t.kind} ${t.name}`).to.equal(isRollout ? true : false);
                    expect(t.spec.serviceAccountName === ROLLOUT_SERVICE_ACCOUNT, `${t.kind} ${t.name}`).to.equal(isRollout);
                    if (isRollout) {
                        expect(t.spec.initContainers ?? [], t.name).to.deep.equal([]);
                    }
                }
                const postgres = templates.find((t) => t.kind === "StatefulSet")!;
                expect(postgres.spec.initContainers.map((c: any) => c.name)).to.deep.equal(["sync-passwords"]);
            });

            it("passes restricted on every pod template, init containers included", async () => {
                const { objects } = await renderedRun(label);
                for (const t of objects.flatMap(podTemplates)) {
                    const findings = restrictedFindings(t.spec, t.path);
                    expect(findings, `${t.kind}: ${describeFindings(findings)}`).to.deep.equal([]);
                }
            });

            it("passes the hardening rules on every pod template", async () => {
                const { objects } = await renderedRun(label);
                for (const t of objects.flatMap(podTemplates)) {
                    const findings = hardeningFindings(t);
                    expect(findings, `${t.kind}: ${describeFindings(findings)}`).to.deep.equal([]);
                }
            });

            it("runs in a namespace that enforces restricted", async () => {
                const { objects } = await renderedRun(label);
                const ns = objects.find((o) => o.kind === "Namespace");
                expect(ns.metadata.labels["pod-security.kubernetes.io/enforce"]).to.equal("restricted");
            });
        });
    }

    describe("fails each rule on a broken fixture", () => {
        let deployment: any;
        let job: any;
        let rollout: any;
        before(async () => {
            const { objects } = await renderedRun("dev");
            deployment = objects.find((o) => o.kind === "Deployment");
            job = objects.find((o) => o.kind === "Job" && o.metadata.name.startsWith("mlflow-migrate-"));
            // The quiesce Job: a token mounted, as the rollout's ServiceAccount, which the rules allow it alone.
            rollout = objects.find((o) => o.kind === "Job" && o.metadata.name.startsWith("mlflow-rollout-quiesce-"));
        });
        const pod = (o: any) => o.spec.template.spec;
        const main = (o: any) => pod(o).containers[0];
        const init = (o: any) => pod(o).initContainers[0];

        type Fixture = [rule: string, description: string, target: "deployment" | "job" | "rollout", mutate: (o: any) => void];
        const fixtures: Fixture[] = [
            ["pss.hostNamespaces", "shares the host network", "deployment", (o) => { pod(o).hostNetwork = true; }],
            ["pss.hostNamespaces", "shares the host PID namespace", "job", (o) => { pod(o).hostPID = true; }],
            ["pss.privileged", "runs privileged", "deployment", (o) => { main(o).securityContext.privileged = true; }],
            ["pss.capabilities", "adds SYS_ADMIN", "deployment", (o) => { main(o).securityContext.capabilities.add = ["SYS_ADMIN"]; }],
            ["pss.capabilities", "drops nothing in an init container", "job", (o) => { delete init(o).securityContext.capabilities; }],
            ["pss.hostPathVolumes", "mounts a hostPath", "deployment", (o) => { pod(o).volumes.push({ name: "host", hostPath: { path: "/" } }); }],
            ["pss.hostPorts", "binds a host port", "deployment", (o) => { main(o).ports[0].hostPort = 5000; }],
            ["pss.appArmor", "runs AppArmor unconfined", "deployment", (o) => { main(o).securityContext.appArmorProfile = { type: "Unconfined" }; }],
            ["pss.seLinux", "sets a privileged SELinux type", "deployment", (o) => { main(o).securityContext.seLinuxOptions = { type: "spc_t" }; }],
            ["pss.procMount", "unmasks /proc", "deployment", (o) => { main(o).securityContext.procMount = "Unmasked"; }],
            ["pss.sysctls", "sets an unsafe sysctl", "deployment", (o) => { pod(o).securityContext.sysctls = [{ name: "kernel.msgmax", value: "1" }]; }],
            ["pss.hostProcess", "is a Windows host process", "deployment", (o) => { pod(o).securityContext.windowsOptions = { hostProcess: true }; }],
            ["pss.volumeTypes", "mounts an NFS volume", "deployment", (o) => { pod(o).volumes.push({ name: "nfs", nfs: { server: "nfs.local", path: "/" } }); }],
            ["pss.allowPrivilegeEscalation", "allows privilege escalation in an init container", "job", (o) => { init(o).securityContext.allowPrivilegeEscalation = true; }],
            ["pss.allowPrivilegeEscalation", "leaves privilege escalation unset", "deployment", (o) => { delete main(o).securityContext.allowPrivilegeEscalation; }],
            ["pss.runAsNonRoot", "sets runAsNonRoot nowhere", "deployment", (o) => { delete pod(o).securityContext.runAsNonRoot; delete main(o).securityContext.runAsNonRoot; }],
            ["pss.runAsNonRoot", "sets runAsNonRoot false on a container", "job", (o) => { init(o).securityContext.runAsNonRoot = false; }],
            ["pss.runAsUser", "runs as uid 0", "deployment", (o) => { main(o).securityContext.runAsUser = 0; }],
            ["pss.seccomp", "sets no seccomp profile", "deployment", (o) => { delete pod(o).securityContext.seccompProfile; delete main(o).securityContext.seccompProfile; }],
            ["pss.seccomp", "runs seccomp unconfined", "job", (o) => { init(o).securityContext.seccompProfile = { type: "Unconfined" }; }],
            ["hardening.readOnlyRootFilesystem", "writes to its root filesystem", "job", (o) => { init(o).securityContext.readOnlyRootFilesystem = false; }],
            ["hardening.resources", "has no memory limit", "deployment", (o) => { delete main(o).resources.limits.memory; }],
            ["hardening.resources", "has no CPU request in an init container", "job", (o) => { delete init(o).resources.requests.cpu; }],
            ["hardening.serviceAccountToken", "mounts a service-account token", "deployment", (o) => { delete pod(o).automountServiceAccountToken; }],
            // The exception is for the rollout's Jobs, as its ServiceAccount, with the token asked for explicitly.
            ["hardening.serviceAccountToken", "mounts a token in a Deployment running as the rollout's ServiceAccount", "deployment", (o) => {
                pod(o).serviceAccountName = ROLLOUT_SERVICE_ACCOUNT; pod(o).automountServiceAccountToken = true;
            }],
            ["hardening.serviceAccountToken", "mounts a token in a Job running as another ServiceAccount", "rollout", (o) => { pod(o).serviceAccountName = "mlflow-tracking-server"; }],
            ["hardening.serviceAccountToken", "mounts a token in a Job running as the namespace's default ServiceAccount", "rollout", (o) => { delete pod(o).serviceAccountName; }],
            ["hardening.serviceAccountToken", "leaves the token of the rollout's Job to the ServiceAccount's default", "rollout", (o) => { delete pod(o).automountServiceAccountToken; }],
            ["hardening.imagePinned", "runs :latest", "deployment", (o) => { main(o).image = "ghcr.io/mlflow/mlflow:latest"; }],
            ["hardening.imagePinned", "runs an untagged image", "job", (o) => { init(o).image = "ghcr.io/mlflow/mlflow"; }],
            ["hardening.probes", "has no liveness probe", "deployment", (o) => { delete main(o).livenessProbe; }],
            ["hardening.probes", "has identical probes", "deployment", (o) => { main(o).livenessProbe = structuredClone(main(o).readinessProbe); }],
            ["hardening.gracefulShutdown", "has no preStop hook", "deployment", (o) => { delete main(o).lifecycle; }],
            ["hardening.gracefulShutdown", "sleeps as long as the grace period", "deployment", (o) => { pod(o).terminationGracePeriodSeconds = 5; }],
            ["hardening.gracefulShutdown", "sleeps past the default grace period", "deployment", (o) => { delete pod(o).terminationGracePeriodSeconds; main(o).lifecycle.preStop = { sleep: { seconds: 30 } }; }],
            ["hardening.gracefulShutdown", "runs a preStop command that is not a sleep", "deployment", (o) => { main(o).lifecycle.preStop.exec.command = ["nginx", "-s", "quit"]; }],
            ["hardening.secretEnvByReference", "puts a password in an env literal", "job", (o) => { init(o).env.push({ name: "DB_PASSWORD", value: "hunter2" }); }],
        ];

        for (const [rule, description, target, mutate] of fixtures) {
            it(`${rule}: ${description}`, () => {
                const obj = structuredClone({ deployment, job, rollout }[target]);
                expect(workloadFindings(obj), "the unmodified fixture must pass").to.deep.equal([]);
                mutate(obj);
                expect(rulesOf(workloadFindings(obj))).to.deep.equal([rule]);
            });
        }

        it("covers every rule with a fixture", () => {
            const covered = new Set(fixtures.map((f) => f[0]));
            expect([...RESTRICTED_RULES, ...HARDENING_RULES].filter((r) => !covered.has(r))).to.deep.equal([]);
        });

        it("finds pod templates in CronJobs too", () => {
            const cron = {
                apiVersion: "batch/v1", kind: "CronJob", metadata: { name: "backup", namespace: "mlflow" },
                spec: { schedule: "0 3 * * *", jobTemplate: { spec: structuredClone(job.spec) } },
            };
            expect(workloadFindings(cron)).to.deep.equal([]);
            cron.spec.jobTemplate.spec.template.spec.hostIPC = true;
            const findings = workloadFindings(cron);
            expect(rulesOf(findings)).to.deep.equal(["pss.hostNamespaces"]);
            expect(findings[0]!.path).to.equal("spec.jobTemplate.spec.template.spec.hostIPC");
        });

        it("allows the token only in a Job's pod: the rollout's pod spec in a CronJob is refused", () => {
            expect(workloadFindings(rollout)).to.deep.equal([]);
            const cron = {
                apiVersion: "batch/v1", kind: "CronJob", metadata: { name: "rollout", namespace: "mlflow" },
                spec: { schedule: "0 3 * * *", jobTemplate: { spec: structuredClone(rollout.spec) } },
            };
            const findings = workloadFindings(cron);
            expect(rulesOf(findings)).to.deep.equal(["hardening.serviceAccountToken"]);
            expect(findings[0]!.path).to.equal("spec.jobTemplate.spec.template.spec.automountServiceAccountToken");
            expect(findings[0]!.message).to.include(ROLLOUT_SERVICE_ACCOUNT);
        });

        it("does not ask Jobs for probes", () => {
            expect(pod(job).containers[0].livenessProbe).to.equal(undefined);
            expect(rulesOf(workloadFindings(job))).to.deep.equal([]);
        });
    });

    describe("isPinnedImage", () => {
        it("accepts digests and exact version tags", () => {
            expect(isPinnedImage("ghcr.io/mlflow/mlflow:v3.17.2-full")).to.equal(true);
            expect(isPinnedImage("docker.io/library/postgres:17.6-bookworm")).to.equal(true);
            expect(isPinnedImage(`postgres@sha256:${"a".repeat(64)}`)).to.equal(true);
            expect(isPinnedImage("registry:5000/team/app:1.2.3")).to.equal(true);
        });
        it("rejects missing, floating and major-only tags", () => {
            for (const image of ["postgres", "postgres:latest", "postgres:17", "registry:5000/team/app", "app:stable", "app:bookworm"]) {
                expect(isPinnedImage(image), image).to.equal(false);
            }
        });
    });
});
