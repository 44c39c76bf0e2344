import { expect } from "chai";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as YAML from "yaml";
import { isKubernetesObject } from "../policy/checks/resources";
import { REDACTED, writeRender } from "../scripts/render";
import { servedModelNames } from "./harness";
import { renderedRun, RUN_LABELS } from "./support/runs";

/** Paths of null or undefined values, which a YAML file would print as `null`. */
function nullPaths(value: unknown, at = ""): string[] {
    if (value === null || value === undefined) {
        return [at];
    }
    if (typeof value === "object") {
        return Object.entries(value as object).flatMap(([k, v]) => nullPaths(v, `${at}.${k}`));
    }
    return [];
}

describe("render", () => {
    for (const label of RUN_LABELS) {
        describe(`${label} run`, () => {
            let dir: string;
            let files: string[];
            let credentials: readonly string[];
            let expected: number;
            let servedModels: number;
            before(async () => {
                const r = await renderedRun(label);
                credentials = r.run.credentials;
                servedModels = servedModelNames(r.run).length;
                expected = r.run.resources.filter((x) => isKubernetesObject(x.type)).length;
                dir = fs.mkdtempSync(path.join(os.tmpdir(), "render-"));
                fs.writeFileSync(path.join(dir, "99-stale-object.yaml"), "kind: Stale\n");
                files = writeRender(r.run, dir).files;
            });
            after(() => fs.rmSync(dir, { recursive: true, force: true }));

            it("writes one YAML file per Kubernetes object, in apply order, and drops stale ones", () => {
                const yamls = fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort();
                expect(yamls).to.have.length(expected);
                expect(yamls).to.not.include("99-stale-object.yaml");
                expect(yamls[0]).to.match(/^01-namespace-/);
                const kinds = yamls.map((f) => YAML.parse(fs.readFileSync(path.join(dir, f), "utf8")).kind);
                expect(kinds.indexOf("NetworkPolicy")).to.be.lessThan(kinds.indexOf("Deployment"));
                expect(kinds.indexOf("Secret")).to.be.lessThan(kinds.indexOf("StatefulSet"));
            });

            it("writes each object whole, named and namespaced as the API server receives it", () => {
                for (const f of files.filter((x) => x.endsWith(".yaml"))) {
                    const docs = YAML.parseAllDocuments(fs.readFileSync(f, "utf8"));
                    expect(docs, f).to.have.length(1);
                    const obj = docs[0]!.toJS();
                    expect(obj.apiVersion, f).to.be.a("string");
                    expect(obj.metadata.name, f).to.be.a("string").and.not.equal("");
                    if (obj.kind !== "Namespace") {
                        expect(obj.metadata.namespace, f).to.equal("mlflow");
                    }
                    expect(nullPaths(obj), f).to.deep.equal([]);
                }
            });

            it("redacts every Secret value and leaks no credential into any file", () => {
                let secrets = 0;
                for (const f of files) {
                    const text = fs.readFileSync(f, "utf8");
                    for (const c of credentials) {
                        expect(text.includes(c), `${path.basename(f)} holds a credential`).to.equal(false);
                    }
                    if (f.endsWith(".yaml")) {
                        const obj = YAML.parse(text);
                        if (obj.kind === "Secret") {
                            secrets++;
                            const values = Object.values({ ...obj.data, ...obj.stringData });
                            expect(values.length).to.be.greaterThan(0);
                            expect(values.every((v) => v === REDACTED), path.basename(f)).to.equal(true);
                        }
                    }
                }
                // Postgres credentials, the server's S3 key and secrets, the backups' S3 key; each served model's login.
                expect(secrets).to.equal(4 + servedModels);
            });

            it("summarises the AWS resources with their key settings and the controls they pass", () => {
                const summary = JSON.parse(fs.readFileSync(path.join(dir, "aws-resources.json"), "utf8"));
                const types = summary.resources.map((x: any) => x.type);
                expect(types).to.include.members([
                    "pulumi:providers:aws", "aws:s3/bucket:Bucket", "aws:s3/bucketPolicy:BucketPolicy",
                    "aws:iam/user:User", "aws:iam/policy:Policy", "aws:iam/accessKey:AccessKey",
                ]);
                const policy = summary.resources.find((x: any) => x.type === "aws:iam/policy:Policy");
                expect(policy.settings.policy.Statement).to.be.an("array").that.is.not.empty;
                expect(summary.securityHub).to.have.length(1);
                expect(summary.securityHub[0].controls).to.deep.equal({
                    "S3.4": "PASSED", "S3.5": "PASSED", "S3.8": "PASSED", "S3.12": "PASSED", "S3.13": "PASSED", "S3.14": "PASSED",
                });
                expect(summary.iamPolicies.flatMap((p: any) => p.findings)).to.deep.equal([]);
            });
        });
    }
});
