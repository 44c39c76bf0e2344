/**
 * Contract tests of day 2: the rendered backup CronJob and restore template, run for real against
 * PostgreSQL and moto, with every kind of record a team keeps. Backed up, both databases dropped,
 * restored, and every row compared; the backup identity's limits; a backup with PostgreSQL down;
 * the migration Job's backup; the passwords the data directory learns from the Secret.
 */
import { expect } from "chai";
import * as crypto from "crypto";
import * as path from "path";
import { restoreJob } from "../../scripts/restore";
import { ROOT, RecordedResource } from "../harness";
import { generatePassword } from "./lib/credentials";
import { CACHE, Platform, phase, printPhases, request } from "./lib/platform";
import { setPidFile, stopAll } from "./lib/processes";
import { TYPES } from "./lib/rendered";

const RUN = path.join(CACHE, "run-backup");
const STACK = process.env.CONTRACT_STACK ?? "minikube";

/** Every table of a database: its row count and a digest of its rows in a stable order; sequences' values. */
async function snapshot(p: Platform, database: string): Promise<Record<string, string>> {
    const tables = await p.sql(database, "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
    const out: Record<string, string> = {};
    for (const [t] of tables) {
        const [[count, digest]] = (await p.sql(database, `SELECT count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM ${t} x`)) as [[string, string]];
        out[t!] = `${count} rows, md5 ${digest}`;
    }
    for (const [seq, value] of await p.sql(database, "SELECT quote_ident(sequencename), coalesce(last_value, 0) FROM pg_sequences WHERE schemaname = 'public'")) {
        out[`sequence ${seq}`] = value!;
    }
    return out;
}

/** Tables, sequences and rows of snapshots, for the figures the run prints. */
function census(...snaps: Array<Record<string, string>>): { tables: number; sequences: number; rows: number } {
    const entries = snaps.flatMap((s) => Object.entries(s));
    const tables = entries.filter(([k]) => !k.startsWith("sequence "));
    return {
        tables: tables.length,
        sequences: entries.length - tables.length,
        rows: tables.reduce((n, [, v]) => n + Number(/^(\d+) rows/.exec(v)![1]), 0),
    };
}

describe(`contract: backups and restores of the rendered ${STACK} configuration`, function () {
    this.timeout(900000);

    const p = new Platform({ stack: STACK, dir: RUN });
    const passwords = { alice: generatePassword({ length: 20, special: true }), bob: generatePassword({ length: 20, special: true }) };
    let seeded: any;
    let grants: Array<[string, string]>;
    let baseline: { tracking: Record<string, string>; auth: Record<string, string> };
    let inventoryBefore: any;
    let backupCronJob: RecordedResource;
    let restoreCronJob: RecordedResource;
    let backupPrefix: string;
    const backupKey = () => p.keys.get("mlflow-artifacts-backup-access-key")!;

    const inventory = () => p.python("inventory", { workDir: path.join(RUN, `inventory-${crypto.randomBytes(4).toString("hex")}`), passwords, grants }, p.clientEnv());
    const backupObjects = () => p.python("backup-objects", { endpoint: p.moto.url, region: p.region, bucket: p.bucket, prefix: backupPrefix, deployer: p.deployer }, { AWS_CA_BUNDLE: p.moto.caBundle });
    const snapshots = async () => ({ tracking: await snapshot(p, p.db.tracking), auth: await snapshot(p, p.db.auth) });

    /** A Job from the suspended restore CronJob, exactly as `npm run restore` creates it, run as a pod. */
    async function runRestore(backup: string, force: boolean) {
        const job = restoreJob({ ...restoreCronJob.inputs, metadata: restoreCronJob.state.metadata }, { name: "restore", backup, force });
        const resource: RecordedResource = { ...restoreCronJob, type: TYPES.job, inputs: job };
        const t0 = Date.now();
        const results = await p.runPod(resource, { label: `restore-${backup}-${force}` });
        return { results, seconds: (Date.now() - t0) / 1000 };
    }

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        await phase("backup spec: moto, render, provision, PostgreSQL, migration, server", () => p.bringUp());
        backupCronJob = p.r.one(TYPES.cronJob, /^mlflow-db-backup-cronjob$/);
        restoreCronJob = p.r.one(TYPES.cronJob, /^mlflow-db-backup-restore$/);
        backupPrefix = (p.r.run.outputs.backupUri as string).replace(/^s3:\/\/[^/]+\//, "");
    });

    after(async function () {
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it("took a backup before the first migration, with the pre-migration reason", async function () {
        const objects = await backupObjects();
        const manifests = objects.filter((o: any) => o.manifest);
        expect(manifests).to.have.length(1);
        expect(manifests[0].manifest.reason).to.equal("pre-migration");
    });

    it("holds every kind of record: experiments, runs, params, metrics, tags, artifacts, models, versions, aliases, users, permissions", async function () {
        seeded = await phase("seed records", () => p.python("seed", { workDir: path.join(RUN, "seed"), tag: "day2", passwords }, p.clientEnv()));
        grants = [["experiment", seeded.experiments[0]], ["registered_model", seeded.model]];
        inventoryBefore = await inventory();
        const runs = inventoryBefore.experiments.flatMap((e: any) => e.runs);
        expect(runs.length).to.be.at.least(6);
        expect(runs.every((r: any) => Object.keys(r.artifacts).length > 0 || r.name.includes("model"))).to.equal(true);
        const model = inventoryBefore.models.find((m: any) => m.name === seeded.model);
        expect(model.versions).to.have.length(2);
        expect(model.aliases).to.deep.equal({ challenger: "1", champion: "2" });
        expect(inventoryBefore.users.alice).to.deep.include({ logsIn: "ok" });
        expect(inventoryBefore.users.alice.grants).to.deep.equal({ [`experiment/${seeded.experiments[0]}`]: "EDIT", [`registered_model/${seeded.model}`]: "EDIT" });
        baseline = await snapshots();
    });

    it("backs both databases up to S3 with the rendered CronJob: custom-format dumps, SSE, SHA-256, a manifest written last", async function () {
        const t0 = Date.now();
        const results = await phase("scheduled backup (rendered CronJob)", () => p.runPodToSuccess(backupCronJob, { label: "backup" }));
        const seconds = (Date.now() - t0) / 1000;
        const summary = JSON.parse(results.at(-1)!.stdout.trim().split("\n").at(-1)!);
        const objects = await backupObjects();
        const mine = objects.filter((o: any) => o.key.startsWith(`${backupPrefix}/${summary.id}/`));
        expect(mine.map((o: any) => o.key.split("/").pop()).sort()).to.deep.equal(["manifest.json", "mlflow.dump", "mlflow_auth.dump"]);
        const manifest = mine.find((o: any) => o.manifest).manifest;
        expect(manifest).to.deep.include({ id: summary.id, reason: "scheduled", format: "pg_dump custom" });
        for (const f of manifest.files) {
            const obj = mine.find((o: any) => o.key.endsWith(`/${f.key}`));
            expect(obj.sha256, `${f.key}: the object is the dumped file`).to.equal(f.sha256);
            expect(obj.size).to.equal(f.bytes);
            expect(obj.sse).to.equal("AES256");
            expect(obj.checksumSha256, `${f.key}: S3 checked a SHA-256 on arrival`).to.be.a("string");
            // A custom-format archive starts with PGDMP.
            expect(f.bytes).to.be.greaterThan(1000);
        }
        expect(manifest.postgres.pgDump).to.match(/pg_dump \(PostgreSQL\) \d+/);
        console.log(`      backup ${summary.id}: ${manifest.files.map((f: any) => `${f.database} ${f.bytes} B`).join(", ")} in ${seconds.toFixed(1)} s`);
    });

    it("limits the backup identity to the backup prefix: no artifact, no delete (moto's IAM enforcement)", async function () {
        const objects = await backupObjects();
        const dump = objects.find((o: any) => o.key.endsWith("/mlflow.dump")).key;
        const artifactRun = inventoryBefore.experiments.flatMap((e: any) => e.runs).find((r: any) => Object.keys(r.artifacts).length > 0);
        const artifactKey = `${p.artifactPrefix}/${artifactRun.artifactUri.replace(/^mlflow-artifacts:\//, "")}/${Object.keys(artifactRun.artifacts)[0]}`;
        const probe = await p.python("backup-probe", {
            endpoint: p.moto.url, region: p.region, bucket: p.bucket, artifactPrefix: p.artifactPrefix, backupPrefix,
            key: backupKey(), deployer: p.deployer, artifactKey, backupKey: dump,
        }, { AWS_CA_BUNDLE: p.moto.caBundle });
        const denied = ["deleteBackup", "deleteBackupVersion", "deleteOwnProbe", "getArtifact", "putArtifact", "deleteArtifact", "putBucketLifecycle", "iamListUsers"];
        for (const action of denied) {
            expect(probe[action], action).to.not.equal("ok");
        }
        for (const action of ["putBackup", "getBackup", "listBackups", "backupStillThere"]) {
            expect(probe[action], action).to.equal("ok");
        }
        console.log(`      backup identity denied: ${denied.map((a) => `${a} (${probe[a]})`).join(", ")}; not enforced by moto (s3:prefix): list artifacts -> ${probe.listArtifacts}`);
    });

    it("refuses to restore over databases that are not empty, and changes nothing", async function () {
        const { results } = await runRestore("latest", false);
        const restoreStep = results.find((r) => r.container === "restore")!;
        expect(restoreStep.code).to.equal(3);
        expect(restoreStep.stderr).to.match(/database mlflow is not empty .* refusing to restore over it/);
        expect(await snapshots()).to.deep.equal(baseline);
    });

    it("refuses a backup that does not exist, naming the ones that do", async function () {
        const { results } = await runRestore("20000101T000000Z", false);
        expect(results[0]!.code).to.equal(4);
        expect(results[0]!.stderr).to.match(/no complete backup 20000101T000000Z .* the newest are: \d{8}T\d{6}Z/);
    });

    it("restores both databases after they are dropped, with the server scaled to zero: every row identical", async function () {
        await p.stopServers();
        for (const database of [p.db.tracking, p.db.auth]) {
            await p.sql("postgres", `DROP DATABASE "${database}" WITH (FORCE)`, p.superuser);
        }
        const { results, seconds } = await phase("restore (rendered template, databases dropped)", () => runRestore("latest", false));
        for (const r of results) {
            expect(r.code, `${r.container}:\n${r.stderr.slice(-2000)}`).to.equal(0);
        }
        const after = await snapshots();
        expect(after.tracking).to.deep.equal(baseline.tracking);
        expect(after.auth).to.deep.equal(baseline.auth);
        const c = census(after.tracking, after.auth);
        console.log(`      restore: ${seconds.toFixed(1)} s; ${c.tables}/${c.tables} tables (${c.rows}/${c.rows} rows) and ${c.sequences}/${c.sequences} sequences identical`);
        // The owner and the PUBLIC revoke are back, as the init SQL made them.
        const owners = await p.sql("postgres", `SELECT datname, pg_get_userbyid(datdba), has_database_privilege('public', datname, 'CONNECT') FROM pg_database WHERE datname IN ('${p.db.tracking}', '${p.db.auth}') ORDER BY 1`, p.superuser);
        expect(owners).to.deep.equal([[p.db.tracking, p.db.user, "f"], [p.db.auth, p.db.user, "f"]].sort());
    });

    it("serves the restored records through the server: artifacts download, aliases resolve, users log in with their grants", async function () {
        await p.startServers();
        const after = await inventory();
        expect(after).to.deep.equal(inventoryBefore);
        const res = await request(p.server.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: `127.0.0.1:${p.server.port}`, auth: `alice:${passwords.alice}` });
        expect(res.status).to.equal(200);
    });

    it("replaces databases that are not empty when forced, again identical", async function () {
        await p.stopServers();
        const { results } = await runRestore("latest", true);
        for (const r of results) {
            expect(r.code, `${r.container}:\n${r.stderr.slice(-2000)}`).to.equal(0);
        }
        expect(await snapshots()).to.deep.equal(baseline);
        await p.startServers();
    });

    it("fails loudly, and uploads nothing, when PostgreSQL is down", async function () {
        const objectsBefore = await backupObjects();
        await p.stopServers();
        await p.stopPostgres();
        try {
            const results = await p.runPod(backupCronJob, { label: "backup-postgres-down" });
            const dump = results.find((r) => r.container === "backup-dump")!;
            expect(dump.code).to.not.equal(0);
            expect(dump.stderr).to.match(/pg_dump of mlflow failed; no backup was taken/);
            expect(results.map((r) => r.container), "the upload never ran").to.deep.equal(["backup-dump"]);
            expect(await backupObjects()).to.deep.equal(objectsBefore);
        } finally {
            await p.startPostgres();
        }
    });

    it("makes the data directory learn new passwords from the Secret at start (a volume kept across stacks)", async function () {
        const secret = p.r.one(TYPES.secret, /postgres-credentials/);
        const old = { ...p.db };
        const fresh = generatePassword(p.r.run.ofType("random:index/randomPassword:RandomPassword").find((x) => x.name === "mlflow-postgres-password")!.inputs);
        // As a new RandomPassword would: the Secret holds a new value, the pod restarts.
        p.r.substituteCredential(p.r.run.ofType("random:index/randomPassword:RandomPassword").find((x) => x.name === "mlflow-postgres-password")!.state.result, fresh);
        expect(p.r.secretValue(secret.state.metadata.name, "password")).to.equal(fresh);
        await p.stopPostgres();
        await p.startPostgres();
        const next = { ...p.db, password: fresh };
        expect(await p.sql(p.db.tracking, "SELECT current_user", next)).to.deep.equal([[p.db.user]]);
        await p.sql(p.db.tracking, "SELECT 1", old).then(
            () => expect.fail("the old password still logs in"), (e: Error) => expect(e.message).to.match(/password authentication failed/));
        p.db = next;
    });
});
