/**
 * Contract test of the schema rollout (components/schemaRollout.ts, docs/adr/0012): upgrades and
 * config changes run as Kubernetes orders them while data scientists keep logging.
 *
 * The stack as rendered with the previous MLflow release serves eight writer threads (the real
 * MLflow client: runs, log_batch, params, tags, an artifact each) through a stand-in for the
 * Service. The rendered rollout objects (ServiceAccount, Role, RoleBinding), the Deployment and the
 * CronJobs live in a real kube-apiserver: the quiesce and resume Jobs run with a token it issued,
 * under the rendered Role, and this file plays the Deployment controller and the kubelet for the
 * server's pods (a scale to zero stops them as the kubelet does). Then, in the order `pulumi up`
 * runs them: the quiesce Job, the migration Job (backup, migrate), Pulumi's apply of the new
 * Deployment, its pods, the new CronJobs, the resume Job.
 *
 * Proven: every acknowledged write is there afterwards; no old server process was alive when the
 * migration began; a config-only change stops nothing and fails no request; the documented rollback serves every record written before the upgrade with the previous
 * release; a migration that fails leaves the server stopped, and the next run completes it.
 */
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { MLFLOW_PREVIOUS_RELEASE, MLFLOW_VERSION } from "../../components/versions";
import { ROLLOUT_SERVICE_ACCOUNT } from "../../components/lib/names";
import { kubernetesManifests } from "../../scripts/render";
import { restoreJob } from "../../scripts/restore";
import { RecordedResource, ROOT } from "../harness";
import { ENDPOINT_LAG_MS } from "./lib/ingress";
import { KubeApi } from "./lib/kubeApi";
import { CACHE, MLFLOW_VENV, Platform, ServerPod, StepResult, phase, printPhases } from "./lib/platform";
import { Service, setPidFile, startService, stopAll, waitUntil } from "./lib/processes";
import { TYPES } from "./lib/rendered";
import { ServiceProxy, startServiceProxy } from "./lib/serviceProxy";

const RUN = path.join(CACHE, "run-rollout");
const STACK = process.env.CONTRACT_STACK ?? "minikube";
const PREVIOUS_VENV = path.join(CACHE, "venv-mlflow-previous");
const WRITERS = path.join(__dirname, "writers.py");
const CLIENTS = 8;
const PREVIOUS_VERSIONS = Object.freeze({
    MLFLOW_VERSION: MLFLOW_PREVIOUS_RELEASE,
    MLFLOW_IMAGE: `ghcr.io/mlflow/mlflow:v${MLFLOW_PREVIOUS_RELEASE}-full`,
});
const HELD = "mlflow-k8s/held-for-migration";
const REPLICAS_BEFORE = "mlflow-k8s/replicas-before-migration";

describe(`contract: the schema rollout of the ${STACK} stack under load (MLflow ${MLFLOW_PREVIOUS_RELEASE} → ${MLFLOW_VERSION})`, function () {
    this.timeout(900000);

    const p = new Platform({ stack: STACK, dir: RUN, versions: PREVIOUS_VERSIONS, mlflowVenv: PREVIOUS_VENV });
    let api: KubeApi;
    let service: ServiceProxy;
    let namespace: string;
    let deploymentName: string;
    /** When each old pod's server process ended (ms since the epoch). */
    const exits: number[] = [];
    /** When the Service last had no endpoint, and when it got one again. */
    let downSince: number | undefined;
    const downtimes: number[] = [];
    let stopController: (() => Promise<void>) | undefined;

    const deploymentPath = () => `/apis/apps/v1/namespaces/${namespace}/deployments/${deploymentName}`;
    const manifests = () => kubernetesManifests(p.r.run).map((m) => m.object);
    const setBackends = (pods: readonly ServerPod[]) => {
        service.setBackends(pods.map((x) => x.port));
        if (pods.length === 0 && downSince === undefined) {
            downSince = Date.now();
        } else if (pods.length > 0 && downSince !== undefined) {
            downtimes.push((Date.now() - downSince) / 1000);
            downSince = undefined;
        }
    };

    /** What `pulumi up` applies of the current render, by kind (and name), as Pulumi's field manager. */
    async function applyRendered(filter: (o: any) => boolean, options: { force?: boolean } = {}): Promise<Array<{ object: any; status: number; body: any }>> {
        const out = [];
        for (const object of manifests().filter(filter)) {
            const reply = await api.apply(object, options);
            out.push({ object, status: reply.status, body: reply.body });
        }
        return out;
    }
    const isServerDeployment = (o: any) => o.kind === "Deployment" && o.metadata.name === deploymentName;
    const isRolloutAccess = (o: any) => ["ServiceAccount", "Role", "RoleBinding"].includes(o.kind) && (o.kind !== "ServiceAccount" || o.metadata.name === ROLLOUT_SERVICE_ACCOUNT)
        && (o.kind === "ServiceAccount" || /schema-rollout/.test(JSON.stringify(o)));

    /**
     * The Deployment controller and the kubelet for the server's pods: when the Deployment's replicas
     * drop below the pods running, the surplus leave the Service and stop as the kubelet stops them,
     * and the status says so (terminating pods counted apart, as Kubernetes 1.34 reports them).
     */
    const controllerErrors: string[] = [];
    /** Set while the test itself rolls pods (a rolling update surges above the replicas for a while). */
    let rolling = false;
    function startController(): () => Promise<void> {
        let running = true;
        const loop = (async () => {
            while (running) {
              try {
                const d = await api.get(deploymentPath());
                const desired: number = d.spec.replicas ?? 1;
                if (!rolling && desired < p.pods.length) {
                    const stopping = p.pods.slice(desired);
                    p.pods = p.pods.slice(0, desired);
                    await api.setDeploymentStatus(namespace, deploymentName, {
                        replicas: desired, readyReplicas: desired, availableReplicas: desired, updatedReplicas: desired, terminatingReplicas: stopping.length,
                    });
                    const stops = stopping.map((pod) => p.stopPod(pod).then(() => { exits.push(Date.now()); }));
                    await new Promise((r) => setTimeout(r, ENDPOINT_LAG_MS));
                    setBackends(p.pods);
                    await Promise.all(stops);
                    await api.setDeploymentStatus(namespace, deploymentName, { terminatingReplicas: 0 });
                    console.log(`      [controller] ${stopping.length} pod(s) stopped after the Deployment went to ${desired}`);
                }
              } catch (e) {
                controllerErrors.push(String(e));
                console.log(`      [controller] ${String(e).slice(0, 300)}`);
              }
                await new Promise((r) => setTimeout(r, 200));
            }
        })();
        return async () => { running = false; await loop; };
    }

    /** Eight writers through the Service, until stopped, with MLflow's default retries. */
    function startWriters(label: string, venv: string): { stop: () => Promise<any>; out: string; service: Service } {
        const out = path.join(RUN, `writers-${label}`);
        fs.mkdirSync(out, { recursive: true });
        const stopFile = path.join(out, "stop");
        const config = path.join(out, "config.json");
        fs.writeFileSync(config, JSON.stringify({ clients: CLIENTS, experiment: `writers-${label}`, out, stopFile, maxSeconds: 600 }));
        const env: NodeJS.ProcessEnv = {
            PATH: process.env.PATH, HOME: path.join(RUN, "home"),
            ...p.clientEnv({ MLFLOW_TRACKING_URI: `http://localhost:${service.port}` }),
        };
        const proc = startService(`writers-${label}`, path.join(venv, "bin", "python"), [WRITERS, config], { env, logFile: path.join(p.logs, `writers-${label}.log`) });
        return {
            out,
            service: proc,
            stop: async () => {
                fs.writeFileSync(stopFile, "");
                const code = await proc.exited;
                expect(code, `writers ${label} exited:\n${fs.readFileSync(proc.logFile, "utf8").slice(-3000)}`).to.equal(0);
                return JSON.parse(fs.readFileSync(path.join(out, "summary.json"), "utf8"));
            },
        };
    }

    const failedWrites = (out: string) => {
        const f = path.join(out, "failed.jsonl");
        return fs.existsSync(f) ? fs.readFileSync(f, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l)) : [];
    };
    const ackedOps = (out: string) => fs.readFileSync(path.join(out, "acked.jsonl"), "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
    const step = (results: StepResult[], container: string) => results.find((r) => r.container === container)!;
    const epoch = (output: string, what: string): number => {
        const m = new RegExp(`migrate: ${what} started at ([0-9.]+)`).exec(output);
        expect(m, `migrate.py logs when "${what}" started`).to.not.equal(null);
        return Number(m![1]) * 1000;
    };
    const cronJobs = async () => (await api.get(`/apis/batch/v1/namespaces/${namespace}/cronjobs`)).items as any[];
    const rolloutJob = (stepName: string): RecordedResource => p.r.one(TYPES.job, new RegExp(`rollout-${stepName}$`));

    /** The new pods of a rollout: as many as the Deployment asks for, in the Service once ready. */
    async function startNewPods(): Promise<void> {
        const d = await api.get(deploymentPath());
        const count: number = d.spec.replicas;
        const pods = await Promise.all(Array.from({ length: count }, () => p.startServer()));
        p.pods = [...p.pods, ...pods];
        setBackends(p.pods);
        await api.setDeploymentStatus(namespace, deploymentName, { replicas: count, readyReplicas: count, availableReplicas: count, updatedReplicas: count });
    }

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        api = await phase("kube-apiserver (built once) and etcd", () => KubeApi.start(ROOT, path.join(RUN, "kube"), p.logs));
        p.attachKubeApi(api);
        await phase(`previous release (${MLFLOW_PREVIOUS_RELEASE}): moto, render, provision, PostgreSQL, migration, server`, () => p.bringUp());
        namespace = p.r.run.outputs.namespaceName as string;
        deploymentName = p.r.one(TYPES.deployment, /^mlflow-deployment$/).state.metadata.name;
        service = await startServiceProxy([]);
        setBackends(p.pods);
        downtimes.length = 0;
        // The cluster as the previous release left it: the namespace, the Deployment and the CronJobs.
        for (const r of await applyRendered((o) => o.kind === "Namespace" || isServerDeployment(o) || o.kind === "CronJob")) {
            expect(r.status, `${r.object.kind} ${r.object.metadata.name}: ${JSON.stringify(r.body).slice(0, 400)}`).to.be.oneOf([200, 201]);
        }
        await api.setDeploymentStatus(namespace, deploymentName, { replicas: p.pods.length, readyReplicas: p.pods.length, availableReplicas: p.pods.length, updatedReplicas: p.pods.length });
        stopController = startController();
    });

    after(async function () {
        console.log("      [after] stopping the controller");
        await stopController?.();
        console.log("      [after] controller stopped");
        expect(controllerErrors, "the stand-in controller's errors").to.deep.equal([]);
        await service?.close();
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    let preUpgradeOut: string;
    let quiesceStartedAt: number;
    let upgradeBackupId: string;

    it(`upgrades to ${MLFLOW_VERSION} while ${CLIENTS} clients log: every writer stops before the backup, and every acknowledged write is there`, async function () {
        const writers = startWriters("upgrade", PREVIOUS_VENV);
        preUpgradeOut = writers.out;
        await new Promise((r) => setTimeout(r, 8000));
        const [[revisionBefore]] = (await p.sql(p.db.tracking, "SELECT version_num FROM alembic_version")) as [[string]];

        // `pulumi up` with the new release: the rollout's access first, then the quiesce Job.
        await p.rerender({ mlflowVenv: MLFLOW_VENV });
        for (const r of await applyRendered(isRolloutAccess)) {
            expect(r.status, `${r.object.kind} ${r.object.metadata.name}`).to.be.oneOf([200, 201]);
        }
        quiesceStartedAt = Date.now();
        const t0 = Date.now();
        const quiesce = await phase("quiesce Job (writers stopped)", () => p.runPodToSuccess(rolloutJob("quiesce"), { label: "quiesce" }));
        const quiesceSeconds = (Date.now() - t0) / 1000;
        expect(quiesce[0]!.stdout).to.match(/tracking database at \S+, this image migrates it to/);
        expect(quiesce[0]!.stdout).to.match(/no writer left after/);
        expect(p.pods, "no server pod is left").to.have.length(0);
        const held = (await cronJobs()).filter((c) => c.metadata.annotations?.[HELD] === "true");
        expect(held.map((c) => c.spec.suspend)).to.deep.equal(held.map(() => true));
        const writerCronJobs = (await cronJobs()).filter((c) => !/restore/.test(c.metadata.name));
        expect(held.map((c) => c.metadata.name).sort(), "every CronJob that writes is held").to.deep.equal(writerCronJobs.map((c) => c.metadata.name).sort());

        const t1 = Date.now();
        const migration = await phase("migration Job (pre-migration backup, migrate)", () => p.runMigrationJob());
        const migrationSeconds = (Date.now() - t1) / 1000;
        const migrate = step(migration, "migrate").stdout;
        upgradeBackupId = migration.map((r) => /"id": "([^"]+)"/.exec(r.stdout)?.[1]).find((x) => x !== undefined)!;
        expect(upgradeBackupId, "the pre-migration backup's id").to.be.a("string");
        const migrationStart = epoch(migrate, "tracking schema");
        expect(exits.length, "the old pods stopped").to.be.greaterThan(0);
        expect(Math.max(...exits), "the last old server process ended before the migration began").to.be.lessThan(epoch(migrate, "writers stopped"));
        expect(Math.max(...exits)).to.be.lessThan(migrationStart);

        // Pulumi's apply of the new Deployment: the replicas belong to the quiesce step's field
        // manager now; without the patchForce annotation the apply would fail on that conflict.
        const unforced = await applyRendered(isServerDeployment, { force: false });
        expect(unforced[0]!.status, "an apply without force conflicts with the scale to zero").to.equal(409);
        expect(JSON.stringify(unforced[0]!.body)).to.match(/spec\.replicas/);
        const applied = await applyRendered(isServerDeployment);
        expect(applied[0]!.object.metadata.annotations["pulumi.com/patchForce"]).to.equal("true");
        expect(applied[0]!.status).to.equal(200);
        const t2 = Date.now();
        await phase(`new server (${MLFLOW_VERSION}) ready`, () => startNewPods());
        const startSeconds = (Date.now() - t2) / 1000;
        for (const r of await applyRendered((o) => o.kind === "CronJob")) {
            expect(r.status, `CronJob ${r.object.metadata.name}`).to.equal(200);
        }
        const resume = await phase("resume Job", () => p.runPodToSuccess(rolloutJob("resume"), { label: "resume" }));
        expect(resume[0]!.stdout).to.match(/CronJobs resumed: /);
        expect((await cronJobs()).filter((c) => c.metadata.annotations?.[HELD] !== undefined), "no CronJob is left held").to.have.length(0);
        for (const c of await cronJobs()) {
            expect(c.spec.suspend ?? false, c.metadata.name).to.equal(/restore/.test(c.metadata.name));
        }
        const d = await api.get(deploymentPath());
        expect(d.spec.replicas).to.equal(p.pods.length);
        expect(d.metadata.annotations?.[REPLICAS_BEFORE]).to.equal(undefined);

        await new Promise((r) => setTimeout(r, 8000));
        const summary = await writers.stop();
        const [[revisionAfter]] = (await p.sql(p.db.tracking, "SELECT version_num FROM alembic_version")) as [[string]];
        const verified = await phase("every acknowledged write read back", () => p.python("verify-writes", { out: writers.out, workDir: RUN }, p.clientEnv()));
        expect(verified.problems).to.deep.equal([]);
        expect(failedWrites(writers.out), "writes that failed after the client's retries").to.deep.equal([]);
        expect(summary.failed).to.equal(0);
        expect(summary.runs).to.be.greaterThan(CLIENTS);
        const down = downtimes.reduce((a, b) => a + b, 0);
        expect(down, "the server was down during the migration").to.be.greaterThan(0);
        console.log(`      schema ${revisionBefore} -> ${revisionAfter}: ${summary.runs} runs, ${verified.writes} acknowledged writes present ` +
            `(${verified.writes}/${verified.writes}), 0 failed; client retries seen ${summary.retries} over ` +
            `${summary.retriesFirst ? (summary.retriesLast - summary.retriesFirst).toFixed(1) : 0} s`);
        console.log(`      no writable server for ${down.toFixed(1)} s: quiesce ${quiesceSeconds.toFixed(1)} s (old pods stopped, sessions gone), ` +
            `backup + migration ${migrationSeconds.toFixed(1)} s, new server to ready ${startSeconds.toFixed(1)} s; ` +
            `connections refused by the Service meanwhile: ${service.counts.rejected}`);
        if (summary.retrySamples.length > 0) {
            console.log(`      e.g. ${summary.retrySamples[0]}`);
        }
    });

    it("rolls out a config-only change under the same load with nothing stopped and no failed request", async function () {
        const writers = startWriters("config-change", MLFLOW_VENV);
        await new Promise((r) => setTimeout(r, 5000));
        await p.rerender({ mlflowVenv: MLFLOW_VENV, overrides: { mlflowAuthCacheTtlSeconds: 20 } });
        const quiesce = await p.runPodToSuccess(rolloutJob("quiesce"), { label: "quiesce-config" });
        expect(quiesce[0]!.stdout).to.match(/schema up to date .*: no writer stopped/);
        expect((await cronJobs()).some((c) => c.metadata.annotations?.[HELD] !== undefined)).to.equal(false);
        expect((await api.get(deploymentPath())).spec.replicas).to.equal(p.pods.length);
        const migration = await phase("migration Job with the server up (no migration)", () => p.runMigrationJob());
        expect(step(migration, "migrate").stdout).to.match(/both schemas are at this image's heads: no migration/);
        const applied = await applyRendered(isServerDeployment, { force: false });
        expect(applied[0]!.status, "nothing else owns the replicas: the apply needs no force").to.equal(200);
        // A rolling update, maxSurge 1 and maxUnavailable 0: a new pod ready first, then an old one deleted.
        const old = [...p.pods];
        const rejectedBefore = service.counts.rejected;
        rolling = true;
        for (const pod of old) {
            const fresh = await p.startServer();
            p.pods = [...p.pods, fresh];
            setBackends(p.pods);
            const stopping = p.stopPod(pod);
            await new Promise((r) => setTimeout(r, ENDPOINT_LAG_MS));
            p.pods = p.pods.filter((x) => x !== pod);
            setBackends(p.pods);
            expect(await stopping, "the old pod drained on SIGTERM").to.equal(0);
        }
        rolling = false;
        await p.runPodToSuccess(rolloutJob("resume"), { label: "resume-config" });
        await new Promise((r) => setTimeout(r, 5000));
        const summary = await writers.stop();
        expect(failedWrites(writers.out), "requests that failed during the rolling update").to.deep.equal([]);
        expect(service.counts.rejected - rejectedBefore, "the Service always had an endpoint").to.equal(0);
        const verified = await p.python("verify-writes", { out: writers.out, workDir: RUN }, p.clientEnv());
        expect(verified.problems).to.deep.equal([]);
        // A request sent on a kept-alive connection just as the old pod's server closes it at SIGTERM
        // gets no answer; the client retries it on a new connection, through the Service, to the new pod.
        console.log(`      config-only rollout: 0 of ${summary.calls + summary.failed} requests failed (${summary.runs} runs), ` +
            `${summary.retries} retried by the client (${summary.retrySamples[0]?.replace(/.*after connection broken by /, "") ?? "none"}), ` +
            `${verified.writes}/${verified.writes} acknowledged writes present; no writer stopped`);
    });

    it(`rolls back as README says (restore the pre-migration backup, pin ${MLFLOW_PREVIOUS_RELEASE}): every write acknowledged before the upgrade is served by the previous release`, async function () {
        // 1. Scale the server to zero (`npm run restore` does it first); 2. the restore Job from the
        // rendered template, over the migrated databases (--force); 3. the previous release's stack.
        await api.ok("PATCH", deploymentPath(), { spec: { replicas: 0 } }, { contentType: "application/merge-patch+json" });
        await waitUntil("the server's pods to stop", 60000, 200, async () => p.pods.length === 0);
        const template = p.r.one(TYPES.cronJob, /^mlflow-db-backup-restore$/);
        // The rollback point: the backup the upgrade's migration Job took before migrating (newer
        // ones, the config change's, hold the upgraded schema).
        const job = restoreJob({ ...template.inputs, metadata: template.state.metadata }, { name: "rollback", backup: upgradeBackupId, force: true });
        const restore = await phase("restore of the pre-migration backup", () => p.runPodToSuccess({ ...template, type: TYPES.job, inputs: job }, { label: "rollback-restore" }));
        expect(restore.length).to.be.greaterThan(0);
        await p.rerender({ versions: PREVIOUS_VERSIONS, mlflowVenv: PREVIOUS_VENV });
        const quiesce = await p.runPodToSuccess(rolloutJob("quiesce"), { label: "quiesce-rollback" });
        expect(quiesce[0]!.stdout, "the restored schema is the previous release's").to.match(/schema up to date/);
        await p.runMigrationJob();
        await applyRendered(isServerDeployment);
        await startNewPods();
        await p.runPodToSuccess(rolloutJob("resume"), { label: "resume-rollback" });
        // Every write acknowledged before the quiesce Job began is in the pre-migration backup.
        const before = path.join(RUN, "writes-before-upgrade");
        fs.mkdirSync(before, { recursive: true });
        const acked = ackedOps(preUpgradeOut);
        const early = acked.filter((w) => w.t * 1000 < quiesceStartedAt);
        fs.writeFileSync(path.join(before, "acked.jsonl"), early.map((w) => JSON.stringify(w)).join("\n") + "\n");
        const verified = await phase(`writes before the upgrade read back with ${MLFLOW_PREVIOUS_RELEASE}`,
            () => p.python("verify-writes", { out: before, workDir: RUN }, p.clientEnv(), PREVIOUS_VENV));
        expect(verified.problems).to.deep.equal([]);
        expect(verified.writes).to.equal(early.length);
        console.log(`      rollback: ${verified.writes}/${early.length} writes acknowledged before the upgrade served by ${MLFLOW_PREVIOUS_RELEASE}; ` +
            `${acked.length - early.length} acknowledged later (to the upgraded server) are not in the rollback point, as README says`);
    });

    it("leaves the server stopped with a clear message when a migration fails, and the next run completes it", async function () {
        const [[previousHead]] = (await p.sql(p.db.tracking, "SELECT version_num FROM alembic_version")) as [[string]];
        // A table the second migration of the upgrade creates, made beforehand: that migration fails
        // after the first one has run.
        await p.sql(p.db.tracking, "CREATE TABLE scheduler_leases (lease_key varchar(255) PRIMARY KEY)");
        await p.rerender({ mlflowVenv: MLFLOW_VENV });
        await p.runPodToSuccess(rolloutJob("quiesce"), { label: "quiesce-failing" });
        expect(p.pods).to.have.length(0);
        const failed = await p.runPod(p.r.one(TYPES.job, /migrate/), { label: "job-failing" });
        const migrate = step(failed, "migrate");
        expect(migrate.code, "the migration Job fails").to.not.equal(0);
        expect(migrate.stderr).to.match(/scheduler_leases.*already exists/);
        // On PostgreSQL MLflow runs the whole upgrade in one transaction: the first migration is
        // rolled back with the second, and the schema is the previous release's, not half of each.
        const [[revision]] = (await p.sql(p.db.tracking, "SELECT version_num FROM alembic_version")) as [[string]];
        expect(revision).to.equal(previousHead);
        // The server stays at zero, its writers held: Pulumi stops at the failed Job.
        expect((await api.get(deploymentPath())).spec.replicas).to.equal(0);
        expect((await cronJobs()).filter((c) => c.metadata.annotations?.[HELD] === "true").length).to.be.greaterThan(0);
        // And the new release would not serve that schema (its pods could not start yet either).
        const refusal = await p.python("schema-check", { uri: `postgresql://127.0.0.1:${p.postgres.port}/${p.db.tracking}` },
            { PGUSER: p.db.user, PGPASSWORD: p.db.password }, MLFLOW_VENV);
        expect(refusal.error).to.match(/out-of-date database schema/);
        // The operator removes the cause and runs `pulumi up` again: the failed Job is replaced.
        await p.sql(p.db.tracking, "DROP TABLE scheduler_leases");
        const retried = await p.runMigrationJob();
        expect(step(retried, "migrate").stdout).to.match(new RegExp(`tracking schema ${revision} -> `));
        await applyRendered(isServerDeployment);
        await startNewPods();
        await p.runPodToSuccess(rolloutJob("resume"), { label: "resume-after-failure" });
        expect((await cronJobs()).some((c) => c.metadata.annotations?.[HELD] !== undefined)).to.equal(false);
        console.log(`      failed migration: "${migrate.stderr.split("\n").filter((l) => /already exists/.test(l))[0]?.slice(0, 160)}"; ` +
            `schema rolled back whole to ${revision}; server at 0 replicas until the retry, which completed it`);
    });
});
