/**
 * Contract test of an upgrade: the stack as it was with the previous MLflow release creates data
 * (every kind of record), then this stack's migration Job (backup first) and server run on that
 * database, and every record is still there and readable with the current client.
 */
import { expect } from "chai";
import * as path from "path";
import { MLFLOW_PREVIOUS_RELEASE, MLFLOW_VERSION } from "../../components/versions";
import { ROOT } from "../harness";
import { generatePassword } from "./lib/credentials";
import { CACHE, MLFLOW_VENV, Platform, phase, printPhases } from "./lib/platform";
import { setPidFile, stopAll } from "./lib/processes";

const RUN = path.join(CACHE, "run-upgrade");
const STACK = process.env.CONTRACT_STACK ?? "minikube";
const PREVIOUS_VENV = path.join(CACHE, "venv-mlflow-previous");
/** components/versions.ts as it read when the stack pinned the previous release. */
const PREVIOUS_VERSIONS = Object.freeze({
    MLFLOW_VERSION: MLFLOW_PREVIOUS_RELEASE,
    MLFLOW_IMAGE: `ghcr.io/mlflow/mlflow:v${MLFLOW_PREVIOUS_RELEASE}-full`,
});

describe(`contract: upgrading the ${STACK} stack from MLflow ${MLFLOW_PREVIOUS_RELEASE} to ${MLFLOW_VERSION}`, function () {
    this.timeout(900000);

    const p = new Platform({ stack: STACK, dir: RUN, versions: PREVIOUS_VERSIONS, mlflowVenv: PREVIOUS_VENV });
    const passwords = { alice: generatePassword({ length: 20, special: true }), bob: generatePassword({ length: 20, special: true }) };
    let grants: Array<[string, string]>;
    let seeded: any;
    let recorded: any;
    let revisionBefore: string;

    const inventory = (venv: string) => p.python("inventory", {
        workDir: path.join(RUN, `inventory-${path.basename(venv)}`), passwords, grants, predictWith: `models:/${seeded.model}@champion`,
    }, p.clientEnv(), venv);

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
    });

    after(async function () {
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it(`runs the stack as rendered with MLflow ${MLFLOW_PREVIOUS_RELEASE}, and creates every kind of record with that release's client`, async function () {
        await phase(`previous release (${MLFLOW_PREVIOUS_RELEASE}): moto, render, provision, PostgreSQL, migration, server`, () => p.bringUp());
        seeded = await phase("seed records (previous client)", () => p.python("seed", { workDir: path.join(RUN, "seed"), tag: "upgrade", passwords }, p.clientEnv(), PREVIOUS_VENV));
        grants = [["experiment", seeded.experiments[0]], ["registered_model", seeded.model]];
        recorded = await inventory(PREVIOUS_VENV);
        expect(recorded.prediction).to.deep.equal([3, 6, 9]);
        [[revisionBefore]] = (await p.sql(p.db.tracking, "SELECT version_num FROM alembic_version")) as [[string]];
    });

    it(`upgrades with this stack's migration Job (a backup first) and server (${MLFLOW_VERSION}): every record there and readable`, async function () {
        await p.stopServers();
        await phase(`upgrade to ${MLFLOW_VERSION}: render, migration Job, server`, async () => {
            await p.rerender({ mlflowVenv: MLFLOW_VENV });
            await p.runMigrationJob();
            await p.startServers();
        });
        const [[revisionAfter]] = (await p.sql(p.db.tracking, "SELECT version_num FROM alembic_version")) as [[string]];
        const after = await inventory(MLFLOW_VENV);
        expect(after).to.deep.equal(recorded);
        const runs = after.experiments.flatMap((e: any) => e.runs);
        const metrics = runs.reduce((n: number, r: any) => n + Object.values<any[]>(r.metrics).reduce((m, h) => m + h.length, 0), 0);
        console.log(`      schema ${revisionBefore} -> ${revisionAfter}; ${after.experiments.length} experiments, ${runs.length} runs, ` +
            `${metrics} metric points, ${after.models.length} models, ${Object.keys(after.users).length} users identical through the ${MLFLOW_VERSION} client`);
    });

    it("kept a backup of the previous release's data, taken by the migration Job before it changed the schema", async function () {
        const prefix = (p.r.run.outputs.backupUri as string).replace(/^s3:\/\/[^/]+\//, "");
        const objects = await p.python("backup-objects", { endpoint: p.moto.url, region: p.region, bucket: p.bucket, prefix, deployer: p.deployer },
            { AWS_CA_BUNDLE: p.moto.caBundle });
        const manifests = objects.filter((o: any) => o.manifest).map((o: any) => o.manifest);
        expect(manifests.map((m: any) => m.reason)).to.deep.equal(["pre-migration", "pre-migration"]);
        // The second one holds the previous release's records: the rollback point of this upgrade.
        expect(manifests[1].files.map((f: any) => f.database)).to.deep.equal([p.db.tracking, p.db.auth]);
    });
});
