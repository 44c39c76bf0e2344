import { expect } from "chai";
import { DataIdentity, dataGuardProvider, dataIdentityProblems } from "../components/dataGuard";

const BEFORE: DataIdentity = Object.freeze({
    databaseMode: "inCluster",
    kubeContext: "minikube",
    namespace: "mlflow",
    postgresStorageClass: "",
    postgresStorageSize: "8Gi",
    postgresMajor: "17",
    awsRegion: "us-east-1",
    awsEndpoint: "",
    bucketPrefix: "mlflow-artifacts-",
    artifactPrefix: "mlflow",
    backupPrefix: "backups",
});

describe("data guard", () => {
    it("lets the first update through, whatever the settings", () => {
        expect(dataIdentityProblems({}, BEFORE)).to.deep.equal([]);
    });

    it("lets an unchanged configuration through", () => {
        expect(dataIdentityProblems({ ...BEFORE }, BEFORE)).to.deep.equal([]);
    });

    it("lets the volume grow, in any unit", () => {
        expect(dataIdentityProblems(BEFORE, { ...BEFORE, postgresStorageSize: "20Gi" })).to.deep.equal([]);
        expect(dataIdentityProblems(BEFORE, { ...BEFORE, postgresStorageSize: "10G" })).to.deep.equal([]);
        expect(dataIdentityProblems({ ...BEFORE, postgresStorageSize: "8192Mi" }, BEFORE), "same size, other unit").to.deep.equal([]);
    });

    it("refuses a smaller volume, naming the key and the way to shrink", () => {
        const [problem] = dataIdentityProblems(BEFORE, { ...BEFORE, postgresStorageSize: "4Gi" });
        expect(problem).to.include("mlflow-k8s:postgresStorageSize cannot change from \"8Gi\" to \"4Gi\"");
        expect(problem).to.include("never shrink");
        expect(problem).to.include("npm run restore");
    });

    const refused: ReadonlyArray<[keyof DataIdentity, string, RegExp]> = [
        ["kubeContext", "other-cluster", /mlflow-k8s:kubeContext .*cluster of the current context.*backup/],
        ["namespace", "mlflow-prod", /mlflow-k8s:namespace .*new, empty volume.*restore/],
        ["postgresStorageClass", "fast-ssd", /mlflow-k8s:postgresStorageClass cannot change from "" to "fast-ssd".*StorageClass is fixed/],
        ["postgresMajor", "18", /PostgreSQL major version cannot change from "17" to "18".*own major version.*restore/],
        ["awsRegion", "eu-west-1", /mlflow-k8s:awsRegion .*aws s3 sync/],
        ["awsEndpoint", "http://minio:9000", /mlflow-k8s:awsEndpoint .*aws s3 sync/],
        ["bucketPrefix", "mlflow-new-", /mlflow-k8s:bucketPrefix .*replaces the bucket/],
        ["artifactPrefix", "artifacts", /mlflow-k8s:artifactPrefix .*keeps its artifacts under the current prefix/],
        ["backupPrefix", "db-backups", /mlflow-k8s:backupPrefix .*copy them to the new prefix first/],
    ];
    for (const [field, value, message] of refused) {
        it(`refuses a change of ${field}, saying why and how to do it safely`, () => {
            const problems = dataIdentityProblems(BEFORE, { ...BEFORE, [field]: value });
            expect(problems).to.have.length(1);
            expect(problems[0]).to.match(message);
            expect(problems[0]).to.include(`Set it back to ${JSON.stringify(BEFORE[field])}`);
        });
    }

    /** What an external-database stack records: nothing of the data is in the cluster. */
    const EXTERNAL: DataIdentity = Object.freeze({
        ...BEFORE, databaseMode: "external", kubeContext: "", namespace: "", postgresStorageClass: "", postgresStorageSize: "", postgresMajor: "",
    });

    it("refuses moving the metadata store in or out of the cluster, in one message naming the key and the way", () => {
        for (const [before, after] of [[BEFORE, EXTERNAL], [EXTERNAL, BEFORE]] as const) {
            const problems = dataIdentityProblems(before, after);
            expect(problems, `${before.databaseMode} -> ${after.databaseMode}`).to.have.length(1);
            expect(problems[0]).to.match(/^mlflow-k8s:databaseMode cannot change from .*backup.*npm run restore.*External PostgreSQL/);
        }
    });

    it("treats a stack recorded before databaseMode existed as in-cluster", () => {
        const { databaseMode: _, ...legacy } = BEFORE;
        expect(dataIdentityProblems(legacy, BEFORE), "the first update after the upgrade").to.deep.equal([]);
        expect(dataIdentityProblems(legacy, EXTERNAL)).to.have.length(1);
        expect(dataIdentityProblems(legacy, EXTERNAL)[0]).to.include('cannot change from "inCluster" to "external"');
    });

    it("lets an external-database stack move to another cluster or namespace: its data is not there", () => {
        expect(dataIdentityProblems(EXTERNAL, { ...EXTERNAL })).to.deep.equal([]);
    });

    it("lists every refused change at once", () => {
        const problems = dataIdentityProblems(BEFORE, { ...BEFORE, namespace: "other", postgresStorageSize: "1Gi", bucketPrefix: "x-" });
        expect(problems).to.have.length(3);
    });

    describe("as a dynamic provider", () => {
        it("fails the check step with the problems, which the engine reports before touching dependents", async () => {
            const result = await dataGuardProvider.check!({ ...BEFORE, __provider: "p" }, { ...BEFORE, namespace: "other", __provider: "p" });
            expect(result.failures).to.have.length(1);
            expect(result.failures![0]!.reason).to.include("mlflow-k8s:namespace");
        });

        it("passes the check step of a safe change and updates in place, never replacing", async () => {
            const next = { ...BEFORE, postgresStorageSize: "16Gi", __provider: "p" };
            const result = await dataGuardProvider.check!({ ...BEFORE, __provider: "p" }, next);
            expect(result.failures).to.deep.equal([]);
            const diff = await dataGuardProvider.diff!("data-identity", { ...BEFORE, __provider: "p" }, next);
            expect(diff).to.deep.include({ changes: true, replaces: [] });
            const same = await dataGuardProvider.diff!("data-identity", next, next);
            expect(same.changes).to.equal(false);
        });
    });
});
