/**
 * `servedModels`: the list of registered models served beside the tracking server, validated
 * entry by entry before anything is created.
 */
import { expect } from "chai";
import { ConfigError, PROJECT, SERVED_MODEL_DEFAULTS, parseConfig, parseServedModels } from "../components/config";
import { stackConfig } from "./harness";

/** Parses a list of entries as the CLI hands it over (a JSON string). */
function parse(entries: unknown) {
    const problems: string[] = [];
    const models = parseServedModels(JSON.stringify(entries), (key, value, allowed) => problems.push(`${PROJECT}:${key} = ${JSON.stringify(value)}: ${allowed}`));
    return { models, problems };
}

const IRIS = Object.freeze({ name: "iris", model: "models:/iris@champion" });

describe("servedModels config", () => {
    it("is empty by default", () => {
        const config = stackConfig("minikube");
        expect(parseConfig((k) => config[`${PROJECT}:${k}`]).servedModels).to.deep.equal([]);
    });

    it("reads an alias and a version, with defaults for what an entry leaves out", () => {
        const { models, problems } = parse([IRIS, { name: "churn-v3", model: "models:/Churn Model/3", minReplicas: 2, maxReplicas: 6, workers: 2, cpuLimit: "2", memoryLimit: "2Gi" }]);
        expect(problems).to.deep.equal([]);
        expect(models[0]).to.deep.equal({
            name: "iris", modelUri: "models:/iris@champion", registeredModel: "iris", reference: { alias: "champion" },
            minReplicas: 1, maxReplicas: 0, workers: 1, image: undefined, maxRequestBodyBytes: 16 * 2 ** 20,
            resources: { cpuRequest: SERVED_MODEL_DEFAULTS.cpuRequest, cpuLimit: "1", memoryRequest: "512Mi", memoryLimit: "1Gi" },
        });
        expect(models[1]).to.deep.include({ registeredModel: "Churn Model", reference: { version: 3 }, minReplicas: 2, maxReplicas: 6, workers: 2 });
    });

    it("takes a whole number of cores as a number, as `pulumi config set --path` stores it", () => {
        const { models, problems } = parse([{ ...IRIS, cpuRequest: 1, cpuLimit: 2, workers: 2 }]);
        expect(problems).to.deep.equal([]);
        expect(models[0]!.resources).to.include({ cpuRequest: "1", cpuLimit: "2" });
        expect(parse([{ ...IRIS, memoryLimit: 2 }]).problems.join("\n"), "a memory quantity needs its unit").to.match(/\.memoryLimit = 2: a positive Kubernetes memory quantity/);
    });

    const refused: ReadonlyArray<[string, unknown, RegExp]> = [
        ["a list that is not one", { iris: "models:/iris@champion" }, /servedModels = .*a list of models/],
        ["an entry that is not an object", ["iris"], /servedModels\[0\] = "iris": an object/],
        ["a name with capitals", [{ ...IRIS, name: "Iris" }], /servedModels\[0\] \(Iris\)\.name = "Iris": a DNS-1123 label/],
        ["a name too long for its objects", [{ ...IRIS, name: "a".repeat(41) }], /at most 40 characters/],
        ["two entries of the same name", [IRIS, { ...IRIS }], /servedModels\[1\] \(iris\)\.name = "iris": a name no other entry/],
        ["a run URI instead of a registered model", [{ ...IRIS, model: "runs:/abc/model" }], /\.model = "runs:\/abc\/model": models:\/<registered model>@<alias> or/],
        ["a stage (deprecated in MLflow)", [{ ...IRIS, model: "models:/iris/Production" }], /\.model = .*models:\/<registered model>\/<version>/],
        ["version 0", [{ ...IRIS, model: "models:/iris/0" }], /\.model = /],
        ["an alias with a slash", [{ ...IRIS, model: "models:/iris@prod/eu" }], /\.model = /],
        ["zero replicas", [{ ...IRIS, minReplicas: 0 }], /\.minReplicas = 0: an integer from 1 to 50/],
        ["a ceiling under the floor", [{ ...IRIS, minReplicas: 3, maxReplicas: 2 }], /\.maxReplicas = 2: 0 \(no autoscaling\) or at least minReplicas \(3\)/],
        ["fractional workers", [{ ...IRIS, workers: 1.5 }], /\.workers = 1.5: an integer from 1 to 16/],
        ["more workers than cores", [{ ...IRIS, workers: 3, cpuLimit: "2" }], /\.workers = 3: at most 2, the cores of its cpuLimit/],
        ["a memory quantity that is none", [{ ...IRIS, memoryLimit: "1GB" }], /\.memoryLimit = "1GB": a positive Kubernetes memory quantity/],
        ["a request above its limit", [{ ...IRIS, cpuRequest: "2", cpuLimit: "1" }], /\.cpuRequest = "2": must not exceed cpuLimit \(1\)/],
        ["an unpinned image", [{ ...IRIS, image: "registry.example.com/models/iris:latest" }], /\.image = .*pinned to an exact version tag or a digest/],
        ["a body limit that is no quantity", [{ ...IRIS, maxRequestBodySize: "16MB" }], /\.maxRequestBodySize = "16MB": a Kubernetes quantity from 64Ki to 1Gi.*413 beyond/],
        ["a body limit over 1Gi", [{ ...IRIS, maxRequestBodySize: "2Gi" }], /\.maxRequestBodySize = "2Gi": a Kubernetes quantity from 64Ki to 1Gi/],
        ["a body limit given as a number", [{ ...IRIS, maxRequestBodySize: 1048576 }], /\.maxRequestBodySize = 1048576: a Kubernetes quantity/],
        ["a misspelt field", [{ ...IRIS, replicas: 2 }], /servedModels\[0\] \(iris\)\.replicas = 2: not a field of a served model/],
    ];
    for (const [what, entries, message] of refused) {
        it(`refuses ${what}, naming the entry and the field`, () => {
            const { problems } = parse(entries);
            expect(problems.join("\n")).to.match(message);
        });
    }

    it("fails the whole configuration before anything is created, listing every problem", () => {
        const config = stackConfig("minikube", { servedModels: JSON.stringify([{ ...IRIS, minReplicas: 0 }, { name: "x", model: "nope" }]) });
        expect(() => parseConfig((k) => config[`${PROJECT}:${k}`])).to.throw(ConfigError)
            .with.property("problems").that.has.length(2);
    });
});
