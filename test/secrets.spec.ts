import { expect } from "chai";
import * as pulumi from "@pulumi/pulumi";
import { RecordedResource, servedModelNames } from "./harness";
import { credentialLeaks, HygieneInput } from "./support/secretsHygiene";
import { renderedRun, RUN_LABELS } from "./support/runs";

describe("secrets hygiene", () => {
    for (const label of RUN_LABELS) {
        describe(`${label} run`, () => {
            it("generates the credentials it hunts for: passwords and access keys, one more password per served model", async () => {
                const { run } = await renderedRun(label);
                const expected = 9 + servedModelNames(run).length;
                expect(run.credentials).to.have.length(expected);
                expect(new Set(run.credentials).size).to.equal(expected);
            });

            it("leaks no credential into a non-Secret object, env literal, ConfigMap, component args or plain output", async () => {
                const { run } = await renderedRun(label);
                const leaks = credentialLeaks(run);
                expect(leaks, leaks.join("\n")).to.deep.equal([]);
            });

            it("puts every credential into some Secret, marked secret", async () => {
                const { run } = await renderedRun(label);
                const secrets = run.ofType("kubernetes:core/v1:Secret");
                for (const c of run.credentials) {
                    const holders = secrets.filter((s) => Object.values(s.inputs.stringData ?? {}).includes(c));
                    expect(holders.length, "a credential no Secret carries").to.be.greaterThan(0);
                    for (const s of holders) {
                        expect(s.secretPaths).to.include("stringData");
                    }
                }
            });

            it("hands credentials to containers only by secretKeyRef", async () => {
                const { objects } = await renderedRun(label);
                const env = objects.flatMap((o) => {
                    const spec = o.spec?.template?.spec;
                    return spec === undefined ? [] : [...(spec.initContainers ?? []), ...spec.containers].flatMap((c: any) => c.env ?? []);
                });
                const byRef = env.filter((e: any) => e.valueFrom?.secretKeyRef !== undefined).map((e: any) => e.name);
                expect(byRef).to.include.members(["PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "POSTGRES_PASSWORD"]);
            });

            it("exports every credential-bearing output as a Pulumi secret", async () => {
                const { run } = await renderedRun(label);
                expect(run.secretOutputs).to.include("adminPassword");
                expect(await pulumi.isSecret(run.rawOutputs.adminPassword as pulumi.Output<string>)).to.equal(true);
                const bearing = Object.entries(run.outputs)
                    .filter(([, v]) => run.credentials.some((c) => JSON.stringify(v ?? "").includes(c)))
                    .map(([k]) => k);
                expect(bearing).to.deep.equal(["adminPassword"]);
                expect(run.secretOutputs.filter((k) => !bearing.includes(k))).to.deep.equal([]);
            });
        });
    }

    describe("catches each kind of leak on a broken fixture", () => {
        const credential = "fixture-pass-9Qv3Lm7x";
        const resource = (type: string, name: string, inputs: any, secretPaths: string[] = []): RecordedResource => ({
            type, name, urn: `urn:${name}`, id: name, inputs, secretPaths, unknownPaths: [], parent: "", dependencies: [], protect: false, retainOnDelete: false, state: inputs,
        });
        type MutableRun = HygieneInput & { credentials: string[]; resources: RecordedResource[]; outputs: Record<string, unknown>; secretOutputs: string[] };
        const clean = (): MutableRun => ({
            credentials: [credential],
            resources: [
                resource("random:index/randomPassword:RandomPassword", "pw", { length: 20 }),
                resource("kubernetes:core/v1:Secret", "creds", { stringData: { password: credential } }, ["stringData"]),
                resource("kubernetes:core/v1:ConfigMap", "settings", { data: { user: "mlflow" } }),
            ],
            outputs: { user: "mlflow", password: credential },
            secretOutputs: ["password"],
        });
        const leaksAfter = (mutate: (run: MutableRun) => void): string[] => {
            const run = clean();
            mutate(run);
            return credentialLeaks(run);
        };

        it("passes the clean fixture (the control)", () => {
            expect(credentialLeaks(clean())).to.deep.equal([]);
        });
        it("a credential in a ConfigMap", () => {
            expect(leaksAfter((r) => r.resources.push(resource("kubernetes:core/v1:ConfigMap", "leaky", { data: { "app.ini": `password = ${credential}` } }))).join())
                .to.include("a ConfigMap holds a credential");
        });
        it("a credential base64-encoded in a ConfigMap's binaryData", () => {
            const encoded = Buffer.from(credential).toString("base64");
            expect(leaksAfter((r) => r.resources.push(resource("kubernetes:core/v1:ConfigMap", "leaky", { binaryData: { key: encoded } }))).join())
                .to.include("a ConfigMap holds a credential");
        });
        it("a credential in an env literal", () => {
            const deployment = { spec: { template: { spec: { containers: [{ name: "c", env: [{ name: "DB_PASS", value: credential }] }] } } } };
            expect(leaksAfter((r) => r.resources.push(resource("kubernetes:apps/v1:Deployment", "app", deployment))).join())
                .to.include("an env literal holds a credential");
        });
        it("a credential in a database URI on a command line", () => {
            const job = { spec: { template: { spec: { containers: [{ name: "c", args: [`postgresql://mlflow:${credential}@db/mlflow`] }] } } } };
            expect(leaksAfter((r) => r.resources.push(resource("kubernetes:batch/v1:Job", "migrate", job))).join())
                .to.include("a non-Secret object holds a credential");
        });
        it("a credential in component args", () => {
            expect(leaksAfter((r) => r.resources.push(resource("mlflow-k8s:kubernetes:Postgres", "pg", { password: credential }))).join())
                .to.include("component args holds a credential");
        });
        it("a Secret value not marked secret", () => {
            expect(leaksAfter((r) => { (r.resources[1] as any).secretPaths = []; }).join()).to.include("not marked secret");
        });
        it("a credential in a Secret's labels", () => {
            expect(leaksAfter((r) => { r.resources[1]!.inputs.metadata = { labels: { hint: credential } }; }).join()).to.include("outside data/stringData");
        });
        it("a credential in a plain output", () => {
            expect(leaksAfter((r) => { r.secretOutputs = []; }).join()).to.include("output password");
        });
        it("a credential among a generator's inputs", () => {
            expect(leaksAfter((r) => { r.resources[0]!.inputs.keepers = { seed: credential }; }).join()).to.include("generator");
        });
        it("refuses to pass a run with nothing to look for", () => {
            expect(leaksAfter((r) => { r.credentials = []; })).to.have.length(1);
        });
    });
});
