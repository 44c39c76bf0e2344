import { expect } from "chai";
import { CommandResult, Kubectl, OBJECTS, parseArgs, restore, restoreJob } from "../scripts/restore";
import { renderedRun } from "./support/runs";

/** The rendered restore CronJob, as the API server would return it (with a uid). */
async function restoreCronJob(): Promise<any> {
    const { objects } = await renderedRun("dev");
    const cronJob = objects.find((o) => o.kind === "CronJob" && o.metadata.name === OBJECTS.restoreCronJob);
    return { ...structuredClone(cronJob), metadata: { ...cronJob.metadata, uid: "0b5e1c2a-restore" } };
}

/**
 * A stand-in for kubectl over a cluster of one Deployment and the restore CronJob: it records
 * every command and plays a restore Job that ends with the given container exit code.
 */
function fakeCluster(cronJob: any, deployment: any, exitCode: number) {
    const calls: string[] = [];
    let replicas: number = deployment.spec.replicas;
    let created: any;
    let polls = 0;
    const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
    const kubectl: Kubectl = async (args, input) => {
        const [, context, , namespace, verb, ...rest] = args;
        expect([context, namespace], "every command names the context and namespace").to.deep.equal(["dev-cluster", "mlflow"]);
        calls.push([verb, ...rest].join(" "));
        switch (`${verb} ${rest[0]}`) {
            case "get cronjob": return ok(JSON.stringify(cronJob));
            case "get deployment": return ok(JSON.stringify({ ...deployment, spec: { ...deployment.spec, replicas } }));
            case "scale deployment": replicas = Number(/--replicas=(\d+)/.exec(rest.join(" "))![1]); return ok();
            case "wait --for=delete": return ok();
            case "create -f": created = JSON.parse(input!); return ok();
            case "get job": {
                polls++;
                const done = polls >= 2;
                return ok(JSON.stringify({ status: done ? (exitCode === 0 ? { succeeded: 1 } : { failed: 1 }) : { active: 1 } }));
            }
            case "get pods": return ok(JSON.stringify({ items: [{ status: { containerStatuses: [{ state: { terminated: { exitCode } } }] } }] }));
            case `logs job/${created?.metadata.name}`: return ok("[restore] restored mlflow\n");
            case "rollout status": return ok();
            default: return { code: 1, stdout: "", stderr: `unexpected kubectl ${args.join(" ")}` };
        }
    };
    return { kubectl, calls, created: () => created, replicas: () => replicas };
}

describe("restore (scripts/restore.ts)", () => {
    let cronJob: any;
    let deployment: any;
    before(async () => {
        cronJob = await restoreCronJob();
        const { objects } = await renderedRun("dev");
        deployment = { ...objects.find((o) => o.kind === "Deployment"), spec: { ...objects.find((o) => o.kind === "Deployment").spec, replicas: 3 } };
    });
    const options = { context: "dev-cluster", namespace: "mlflow", backup: "20260101T023000Z", force: false };

    describe("command line", () => {
        it("takes a stack, or a context and a namespace, and defaults to the latest backup without force", () => {
            expect(parseArgs(["--stack", "dev"])).to.deep.equal({ stack: "dev", backup: "latest", force: false });
            expect(parseArgs(["--context", "c", "--namespace", "n", "--backup", "20260101T023000Z", "--force"]))
                .to.deep.equal({ context: "c", namespace: "n", backup: "20260101T023000Z", force: true });
        });

        it("refuses what it does not understand, with the usage", () => {
            expect(() => parseArgs([])).to.throw(/either --stack/);
            expect(() => parseArgs(["--stack", "dev", "--context", "c", "--namespace", "n"])).to.throw(/either --stack/);
            expect(() => parseArgs(["--stack"])).to.throw(/--stack needs a value/);
            expect(() => parseArgs(["--stack", "dev", "--backup", "yesterday"])).to.throw(/UTC timestamp/);
            expect(() => parseArgs(["--stack", "dev", "--yes"])).to.throw(/unknown argument --yes.*\n.*usage/);
        });
    });

    describe("the Job", () => {
        it("is the restore CronJob's template with the backup and the force flag set, nothing else changed", () => {
            const job = restoreJob(cronJob, { name: "restore-1", backup: "20260101T023000Z", force: true });
            expect(job.kind).to.equal("Job");
            expect(job.metadata.ownerReferences[0]).to.deep.include({ kind: "CronJob", name: OBJECTS.restoreCronJob, uid: "0b5e1c2a-restore" });
            const env = (c: any) => Object.fromEntries(c.env.map((e: any) => [e.name, e.value]));
            const [fetch] = job.spec.template.spec.initContainers;
            const [pg] = job.spec.template.spec.containers;
            expect(env(fetch).BACKUP_ID).to.equal("20260101T023000Z");
            expect(env(pg).RESTORE_FORCE).to.equal("true");
            // Everything else is the template as deployed.
            const reset = structuredClone(job.spec);
            reset.template.spec.initContainers[0].env.find((e: any) => e.name === "BACKUP_ID").value = "latest";
            reset.template.spec.containers[0].env.find((e: any) => e.name === "RESTORE_FORCE").value = "false";
            expect(reset).to.deep.equal(cronJob.spec.jobTemplate.spec);
            expect(job.spec.template.metadata.labels).to.deep.equal(cronJob.spec.jobTemplate.spec.template.metadata.labels);
        });

        it("refuses a CronJob that is not a restore template", async () => {
            const { objects } = await renderedRun("dev");
            const backup = objects.find((o) => o.kind === "CronJob" && o.metadata.name === "mlflow-db-backup");
            expect(() => restoreJob(backup, { name: "x", backup: "latest", force: false })).to.throw(/not a restore template/);
        });
    });

    describe("the run", () => {
        it("scales the server to zero, waits for its pods, restores, then scales it back", async () => {
            const cluster = fakeCluster(cronJob, deployment, 0);
            const outcome = await restore(cluster.kubectl, options, () => undefined, 1);
            expect(outcome).to.deep.include({ succeeded: true, serverRestored: true });
            const calls = cluster.calls.map((c) => c.split(" ").slice(0, 2).join(" "));
            expect(calls).to.deep.equal([
                "get cronjob", "get deployment", "scale deployment", "wait --for=delete", "create -f",
                "get job", "get job", `logs job/${outcome.job}`, "scale deployment", "rollout status",
            ]);
            expect(cluster.calls[2]).to.include("--replicas=0");
            expect(cluster.calls[3]).to.include("app.kubernetes.io/name=tracking-server");
            expect(cluster.calls[8]).to.include("--replicas=3");
            expect(cluster.replicas()).to.equal(3);
            expect(cluster.created().spec.template.spec.initContainers[0].env.find((e: any) => e.name === "BACKUP_ID").value).to.equal(options.backup);
        });

        it("brings the server back when the restore refused to run (a database not empty): nothing changed", async () => {
            const cluster = fakeCluster(cronJob, deployment, 3);
            const outcome = await restore(cluster.kubectl, options, () => undefined, 1);
            expect(outcome).to.deep.include({ succeeded: false, serverRestored: true });
            expect(cluster.replicas()).to.equal(3);
        });

        it("leaves the server at zero when the restore failed part way, and says how to go on", async () => {
            const cluster = fakeCluster(cronJob, deployment, 1);
            const lines: string[] = [];
            const outcome = await restore(cluster.kubectl, options, (l) => lines.push(l), 1);
            expect(outcome).to.deep.include({ succeeded: false, serverRestored: false });
            expect(cluster.replicas()).to.equal(0);
            expect(lines.at(-1)).to.match(/stays at 0 replicas.*--force.*scale deployment mlflow-tracking-server --replicas=3/);
        });
    });
});
