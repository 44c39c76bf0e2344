/**
 * Contract tests of an external PostgreSQL (`databaseMode: external`): a team's server that accepts
 * TLS connections only, its certificate issued for `localhost` by a CA of its own, the role and
 * databases created by its DBA. The stack is rendered against it with that CA (`verify-full`); the
 * rendered migration Job, server and backup run against it; every connection they open is
 * encrypted; a server whose certificate does not verify is refused.
 */
import { expect } from "chai";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { restoreJob } from "../../scripts/restore";
import { ROOT } from "../harness";
import { callOk } from "./lib/load";
import { CACHE, Platform, phase, printPhases } from "./lib/platform";
import { runToCompletion, setPidFile, stopAll } from "./lib/processes";
import { TYPES } from "./lib/rendered";
import { makeCa } from "./lib/services";

const RUN = path.join(CACHE, "run-external");
const ROLE = "mlflow_team";
const TRACKING_DB = "mlflow_tracking";
const AUTH_DB = "mlflow_users";

describe("contract: an external PostgreSQL over TLS (databaseMode external)", function () {
    this.timeout(900000);

    const p = new Platform({ stack: "minikube", dir: RUN });
    const password = crypto.randomBytes(24).toString("base64url");
    const overrides = () => ({
        databaseMode: "external",
        databaseHost: p.external!.host,
        databasePort: p.external!.port,
        databaseName: TRACKING_DB,
        databaseAuthName: AUTH_DB,
        databaseUsername: ROLE,
        databasePassword: password,
        databaseCaCertificate: fs.readFileSync(p.external!.caFile, "utf8"),
        databaseEgressCidrs: "127.0.0.1/32",
        databaseMaxConnections: 300,
    });
    const admin = () => ({ port: p.server.port, host: "mlflow-service", auth: `${p.admin.user}:${p.admin.password}` });
    /** The connections of the team's role right now: how many, and how many without TLS. */
    const connections = async () => {
        const [total, plain] = (await p.external!.admin(`SELECT count(*), count(*) FILTER (WHERE NOT s.ssl)
            FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = '${ROLE}'`)).split("|").map(Number);
        return { total: total!, plain: plain! };
    };

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        await phase("external PostgreSQL (TLS only), moto, render, provision, migration, server", async () => {
            await p.startExternalPostgres();
            // What the team's DBA runs once: a role and two databases it owns.
            await p.external!.admin(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${password}';
                CREATE DATABASE ${TRACKING_DB} OWNER ${ROLE}; CREATE DATABASE ${AUTH_DB} OWNER ${ROLE};
                REVOKE ALL ON DATABASE ${TRACKING_DB}, ${AUTH_DB} FROM PUBLIC;`);
            await p.startMoto();
            await p.render(undefined, overrides());
            await p.provision();
            p.generatePasswords();
            await p.runMigrationJob();
            await p.startServers();
        });
    });

    after(async function () {
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it("is a server that refuses connections without TLS", async () => {
        const result = await p.sql(TRACKING_DB, "SELECT 1").then(() => "ok", (e: Error) => e.message);
        expect(result, "verify-full against its CA").to.equal("ok");
        const plain = await runPlain();
        expect(plain).to.match(/pg_hba\.conf rejects connection .* no encryption/);
    });

    it("runs MLflow on it: the migration's schemas, a data scientist's records, all over TLS", async () => {
        const tables = await p.sql(TRACKING_DB, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'");
        expect(Number(tables[0]![0]), "the tracking schema in the team's database").to.be.greaterThan(20);
        const users = await p.sql(AUTH_DB, "SELECT username FROM users");
        expect(users.map((r) => r[0])).to.include(p.admin.user);

        const exp = await callOk(admin(), "POST", "/api/2.0/mlflow/experiments/create", { name: "on-the-team-database" });
        const run = await callOk(admin(), "POST", "/api/2.0/mlflow/runs/create", { experiment_id: exp.experiment_id, start_time: Date.now() });
        await callOk(admin(), "POST", "/api/2.0/mlflow/runs/log-metric", { run_id: run.run.info.run_id, key: "rmse", value: 0.25, timestamp: Date.now(), step: 1 });
        const stored = await p.sql(TRACKING_DB, `SELECT key, value FROM metrics WHERE run_uuid = '${run.run.info.run_id}'`);
        expect(stored).to.deep.equal([["rmse", "0.25"]]);

        const open = await connections();
        expect(open.total, "the server's pooled connections").to.be.greaterThan(0);
        expect(open.plain, "connections without TLS").to.equal(0);
        console.log(`      ${open.total} connections of ${ROLE}, all TLS; ${tables[0]![0]} tracking tables`);
    });

    it("backs the team's databases up over TLS, as the rendered CronJob does", async () => {
        const steps = await p.runPodToSuccess(p.r.one(TYPES.cronJob, /^mlflow-db-backup-cronjob$/), { label: "backup" });
        const dump = steps.find((s) => s.container === "backup-dump")!;
        expect(dump.stderr).to.match(new RegExp(`dumped ${TRACKING_DB}: \\d+ bytes`));
        expect(dump.stderr).to.match(new RegExp(`dumped ${AUTH_DB}: \\d+ bytes`));
    });

    it("restores into the team's databases with the login role alone: over their contents with --force; a missing one refused first", async () => {
        await callOk(admin(), "POST", "/api/2.0/mlflow/experiments/create", { name: "after-the-backup" });
        const count = async (name: string) => Number((await p.sql(TRACKING_DB, `SELECT count(*) FROM experiments WHERE name = '${name}'`))[0]![0]);
        expect(await count("after-the-backup")).to.equal(1);
        // As `npm run restore` does: the server scaled to zero first.
        await p.stopServers();
        const restore = p.r.one(TYPES.cronJob, /^mlflow-db-backup-restore$/);
        const runRestore = async (force: boolean) => {
            const job = restoreJob({ ...restore.inputs, metadata: restore.state.metadata }, { name: "restore", backup: "latest", force });
            const steps = await p.runPod({ ...restore, type: TYPES.job, inputs: job }, { label: `restore-${force}` });
            return steps.find((s) => s.container === "restore")!;
        };
        const restored = await runRestore(true);
        expect(restored.code, restored.stderr.slice(-2000)).to.equal(0);
        expect(await count("after-the-backup"), "the experiment created after the backup").to.equal(0);
        expect(await count("on-the-team-database"), "the backup's records").to.equal(1);

        await p.external!.admin(`DROP DATABASE ${AUTH_DB}`);
        const refused = await runRestore(true);
        expect(refused.code).to.equal(5);
        expect(refused.stderr).to.match(new RegExp(`database ${AUTH_DB} does not exist .* operators create it`));
        expect(await count("on-the-team-database"), "the tracking database untouched by the refused restore").to.equal(1);
        await p.external!.admin(`CREATE DATABASE ${AUTH_DB} OWNER ${ROLE}; REVOKE ALL ON DATABASE ${AUTH_DB} FROM PUBLIC;`);
        expect((await runRestore(false)).code, "into the recreated, empty database").to.equal(3);
    });

    it("refuses a server whose certificate does not verify: another CA, or another host name", async () => {
        const other = await makeCa(path.join(RUN, "other-ca"), "another-ca", p.logs);
        const cases: Array<[string, Record<string, string | number>, RegExp]> = [
            ["a CA that did not sign it", { databaseCaCertificate: fs.readFileSync(other.cert, "utf8") }, /certificate verify failed/],
            ["its address instead of its name", { databaseHost: "127.0.0.1" }, /server certificate for "localhost".* does not match host name "127\.0\.0\.1"/],
        ];
        for (const [what, change, error] of cases) {
            await p.rerender({ overrides: { ...overrides(), ...change } });
            const steps = await p.runPod(p.r.one(TYPES.cronJob, /^mlflow-db-backup-cronjob$/), { label: "backup-refused" });
            const dump = steps.find((s) => s.container === "backup-dump")!;
            expect(dump.code, what).to.not.equal(0);
            expect(dump.stderr, what).to.match(error);
        }
        await p.rerender({ overrides: overrides() });
    });

    /** A connection attempt with TLS off, as a misconfigured client would make: the server's answer. */
    async function runPlain(): Promise<string> {
        const r = await runToCompletion("psql", ["-X", "-A", "-t", "-c", "SELECT 1"], {
            env: {
                PATH: process.env.PATH, PGHOST: p.external!.host, PGPORT: String(p.external!.port), PGUSER: ROLE, PGPASSWORD: password,
                PGDATABASE: TRACKING_DB, PGSSLMODE: "disable", PGCONNECT_TIMEOUT: "10",
            },
            logFile: path.join(p.logs, "psql-plain.log"),
        });
        return r.code === 0 ? "connected" : r.stderr;
    }
});
