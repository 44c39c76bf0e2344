/**
 * Contract test of garbage collection: the stack rendered with `gcSchedule` on, runs logged through
 * the server with the real client, some deleted, then the rendered `mlflow-gc` CronJob's pod run
 * against PostgreSQL and moto. What was deleted longer than `gcOlderThan` ago loses its rows and its
 * S3 objects; a run deleted more recently and an active run keep every row and object.
 */
import { expect } from "chai";
import * as path from "path";
import { ROOT, RecordedResource } from "../harness";
import { CACHE, Platform, phase, printPhases } from "./lib/platform";
import { setPidFile, stopAll } from "./lib/processes";
import { TYPES } from "./lib/rendered";

const RUN = path.join(CACHE, "run-gc");
const STACK = process.env.CONTRACT_STACK ?? "minikube";
const OLDER_THAN_DAYS = 7;

describe(`contract: garbage collection by the rendered ${STACK} configuration`, function () {
    this.timeout(900000);

    const p = new Platform({ stack: STACK, dir: RUN, overrides: { gcSchedule: "30 3 * * *", gcOlderThan: `${OLDER_THAN_DAYS}d` } });
    let gcCronJob: RecordedResource;
    let seeded: { experimentId: string; runs: Record<string, { id: string; artifactUri: string }> };
    const id = (name: string) => seeded.runs[name]!.id;

    /** Rows per run in every table of the tracking database that has a run_uuid column. */
    async function rowsPerRun(): Promise<Record<string, Record<string, number>>> {
        const tables = (await p.sql(p.db.tracking,
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'run_uuid' ORDER BY 1")).map(([t]) => t!);
        expect(tables, "the tables holding a run's records").to.include.members(["runs", "params", "metrics", "latest_metrics", "tags"]);
        const out: Record<string, Record<string, number>> = {};
        for (const name of Object.keys(seeded.runs)) {
            out[name] = {};
            for (const table of tables) {
                const [[count]] = (await p.sql(p.db.tracking, `SELECT count(*) FROM "${table}" WHERE run_uuid = '${id(name)}'`)) as [[string]];
                out[name]![table] = Number(count);
            }
        }
        return out;
    }

    /** The S3 objects of each run, listed with the deployer's key (not the identity under test). */
    async function objectsPerRun(): Promise<Record<string, { objects: Array<{ key: string; size: number; etag: string }>; versions: number; deleteMarkers: number }>> {
        const out: Record<string, any> = {};
        for (const [name, run] of Object.entries(seeded.runs)) {
            const prefix = `${p.artifactPrefix}/${run.artifactUri.replace(/^mlflow-artifacts:\//, "")}/`;
            out[name] = await p.python("artifact-objects", { endpoint: p.moto.url, region: p.region, bucket: p.bucket, prefix, deployer: p.deployer },
                { AWS_CA_BUNDLE: p.moto.caBundle });
        }
        return out;
    }

    const total = (perRun: Record<string, Record<string, number>>, name: string) => Object.values(perRun[name]!).reduce((a, b) => a + b, 0);
    const runsThroughServerFor = (runIds: string[]) => p.python("gc-runs", { runIds }, p.clientEnv());
    const runsThroughServer = () => runsThroughServerFor(Object.keys(seeded.runs).map(id));

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        await phase("gc spec: moto, render (gcSchedule on), provision, PostgreSQL, migration, server", () => p.bringUp());
        gcCronJob = p.r.one(TYPES.cronJob, /^mlflow-gc$/);
    });

    after(async function () {
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it("renders the CronJob with the server's database and artifact destination and gcOlderThan", () => {
        const args: string[] = gcCronJob.inputs.spec.jobTemplate.spec.template.spec.containers[0].args;
        expect(args.slice(2)).to.deep.equal([p.r.run.outputs.artifactUri, `${OLDER_THAN_DAYS}d`]);
    });

    it("purges a run deleted longer than gcOlderThan ago, rows and S3 objects; a run deleted since and an active run keep everything", async function () {
        seeded = await phase("log three runs with artifacts through the server, delete two", () => p.python("gc-seed", {
            workDir: path.join(RUN, "gc-seed"), tag: "contract", runs: ["kept", "purged", "recent"], delete: ["purged", "recent"],
        }, p.clientEnv()));
        // "purged" was deleted OLDER_THAN_DAYS + 1 days ago, as far as the database knows; "recent" just now.
        await p.sql(p.db.tracking, `UPDATE runs SET deleted_time = deleted_time - ${(OLDER_THAN_DAYS + 1) * 86400000} WHERE run_uuid = '${id("purged")}'`);

        const rowsBefore = await rowsPerRun();
        const objectsBefore = await objectsPerRun();
        for (const name of ["kept", "purged", "recent"]) {
            expect(rowsBefore[name]!.runs, name).to.equal(1);
            expect(rowsBefore[name]!.params, name).to.equal(2);
            expect(rowsBefore[name]!.metrics, name).to.equal(5);
            expect(objectsBefore[name]!.objects.map((o) => o.key.split("/artifacts/")[1]).sort(), name)
                .to.deep.equal(["notes/readme.txt", "outputs/model.txt", "outputs/nested/data.csv"]);
        }
        const serverBefore = await runsThroughServer();
        expect(serverBefore[id("purged")].lifecycle).to.equal("deleted");

        const results = await phase("garbage collection (rendered CronJob)", () => p.runPodToSuccess(gcCronJob, { label: "gc" }));
        const log = results[0]!.stdout;
        expect(log).to.include(`Run with ID ${id("purged")} has been permanently deleted.`);
        const deletion = new RegExp(`deleted 3 objects under s3://${p.bucket}/${p.artifactPrefix}/${seeded.experimentId}/${id("purged")}/artifacts/( \\((\\d+) one by one[^)]*\\))?`).exec(log);
        expect(deletion, "the script's own account of the deletion").to.not.equal(null);
        // moto refuses the prefix-scoped s3:DeleteObject inside DeleteObjects (200, per-key AccessDenied) but
        // allows it on DeleteObject: the script deletes those keys one by one.
        console.log(`      gc: ${deletion![0]}`);
        expect(log).to.not.include(id("recent"));
        expect(log).to.not.include(id("kept"));

        const rowsAfter = await rowsPerRun();
        const objectsAfter = await objectsPerRun();
        expect(rowsAfter.purged, "every row of the purged run is gone").to.deep.equal(Object.fromEntries(Object.keys(rowsBefore.purged!).map((t) => [t, 0])));
        expect(objectsAfter.purged!.objects, "its objects are gone").to.deep.equal([]);
        expect(objectsAfter.purged!.deleteMarkers, "deleted in the versioned bucket: a marker per object").to.equal(objectsBefore.purged!.objects.length);
        expect(objectsAfter.purged!.versions, "the old versions stay until noncurrentVersionExpirationDays").to.equal(objectsBefore.purged!.versions);
        for (const name of ["kept", "recent"]) {
            expect(rowsAfter[name], `${name}: rows untouched`).to.deep.equal(rowsBefore[name]);
            expect(objectsAfter[name], `${name}: objects untouched`).to.deep.equal(objectsBefore[name]);
        }
        const serverAfter = await runsThroughServer();
        expect(serverAfter[id("purged")]).to.deep.equal({ error: "RESOURCE_DOES_NOT_EXIST" });
        expect(serverAfter[id("kept")]).to.deep.equal(serverBefore[id("kept")]);
        expect(serverAfter[id("recent")]).to.deep.equal(serverBefore[id("recent")]);
        expect(serverAfter[id("kept")].files).to.have.length(3);

        const count = (rows: typeof rowsBefore, objects: typeof objectsBefore) => ["kept", "purged", "recent"]
            .map((n) => `${n} ${total(rows, n)} rows/${objects[n]!.objects.length} objects`).join(", ");
        console.log(`      before gc: ${count(rowsBefore, objectsBefore)}`);
        console.log(`      after gc:  ${count(rowsAfter, objectsAfter)}`);
        console.log(`      purged run: ${objectsAfter.purged!.deleteMarkers} delete markers over ${objectsAfter.purged!.versions} versions kept for noncurrentVersionExpirationDays`);
    });

    it("purges the other deleted run once it is old enough too, and leaves the active run alone", async function () {
        await p.sql(p.db.tracking, `UPDATE runs SET deleted_time = deleted_time - ${(OLDER_THAN_DAYS + 1) * 86400000} WHERE run_uuid = '${id("recent")}'`);
        const rowsBefore = await rowsPerRun();
        const objectsBefore = await objectsPerRun();
        const results = await p.runPodToSuccess(gcCronJob, { label: "gc-again" });
        expect(results[0]!.stdout).to.include(`Run with ID ${id("recent")} has been permanently deleted.`);
        const rowsAfter = await rowsPerRun();
        const objectsAfter = await objectsPerRun();
        expect(total(rowsAfter, "recent")).to.equal(0);
        expect(objectsAfter.recent!.objects).to.deep.equal([]);
        expect(rowsAfter.kept).to.deep.equal(rowsBefore.kept);
        expect(objectsAfter.kept).to.deep.equal(objectsBefore.kept);
        const [[runs]] = (await p.sql(p.db.tracking, "SELECT count(*) FROM runs")) as [[string]];
        expect(Number(runs), "only the active run is left").to.equal(1);
    });

    it("keeps every row of a run whose objects S3 refuses to delete, fails the Job naming the key, and purges it once S3 allows it", async function () {
        const locked = await phase("log a run with artifacts, delete it, backdate it", () => p.python("gc-seed", {
            workDir: path.join(RUN, "gc-locked"), tag: "locked", runs: ["locked"], delete: ["locked"],
        }, p.clientEnv()));
        const runId: string = locked.runs.locked.id;
        await p.sql(p.db.tracking, `UPDATE runs SET deleted_time = deleted_time - ${(OLDER_THAN_DAYS + 1) * 86400000} WHERE run_uuid = '${runId}'`);
        const prefix = `${p.artifactPrefix}/${locked.runs.locked.artifactUri.replace(/^mlflow-artifacts:\//, "")}/`;
        const s3 = { endpoint: p.moto.url, region: p.region, bucket: p.bucket, deployer: p.deployer };
        const objects = async () => (await p.python("artifact-objects", { ...s3, prefix }, { AWS_CA_BUNDLE: p.moto.caBundle })).objects
            .map((o: any) => o.key.slice(prefix.length)).sort();
        const rows = async () => Number((await p.sql(p.db.tracking,
            `SELECT (SELECT count(*) FROM runs WHERE run_uuid = '${runId}') + (SELECT count(*) FROM params WHERE run_uuid = '${runId}') + (SELECT count(*) FROM metrics WHERE run_uuid = '${runId}') + (SELECT count(*) FROM tags WHERE run_uuid = '${runId}')`))[0]![0]);
        const rowsBefore = await rows();
        expect(await objects()).to.deep.equal(["notes/readme.txt", "outputs/model.txt", "outputs/nested/data.csv"]);

        // The server's identity may no longer delete the run's outputs (say, a retention hold of the team's).
        const user = p.r.run.outputs.iamUserName as string;
        const deny = { user, name: "gc-spec-hold", ...s3 };
        await p.python("user-policy", { ...deny, document: {
            Version: "2012-10-17",
            Statement: [{ Effect: "Deny", Action: "s3:DeleteObject", Resource: `arn:aws:s3:::${p.bucket}/${prefix}outputs/*` }],
        } }, { AWS_CA_BUNDLE: p.moto.caBundle });
        const [failed] = await phase("garbage collection, S3 refusing", () => p.runPod(gcCronJob, { label: "gc-refused" }));
        const output = failed!.stdout + failed!.stderr;
        expect(failed!.code, output.slice(-2000)).to.not.equal(0);
        expect(output, "the Job's last words name the object and what S3 said").to.match(
            new RegExp(`S3 refused to delete s3://${p.bucket}/${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}outputs/\\S+ \\(AccessDenied\\); the run's rows are kept`));
        expect(output).to.not.include(`Run with ID ${runId} has been permanently deleted.`);
        expect(await rows(), "every row of the run is kept").to.equal(rowsBefore);
        const left = await objects();
        expect(left, "the refused objects are still there").to.include.members(["outputs/model.txt", "outputs/nested/data.csv"]);
        expect((await runsThroughServerFor([runId]))[runId].lifecycle, "still a deleted run, restorable").to.equal("deleted");
        console.log(`      gc refused by S3: exit ${failed!.code}, ${rowsBefore} rows kept, objects left: ${left.join(", ")}`);

        await p.python("user-policy", { ...deny, document: null }, { AWS_CA_BUNDLE: p.moto.caBundle });
        const [done] = await phase("garbage collection, S3 allowing again", () => p.runPodToSuccess(gcCronJob, { label: "gc-allowed" }));
        expect(done!.stdout).to.include(`Run with ID ${runId} has been permanently deleted.`);
        expect(await rows()).to.equal(0);
        expect(await objects()).to.deep.equal([]);
    });
});
