/**
 * The README's stack-file examples are valid configuration: every YAML block that sets `mlflow-k8s:`
 * keys passes the same validation as a stack, so a reader who copies one gets a working stack.
 */
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { ConfigError, PROJECT, parseConfig } from "../components/config";
import { ROOT, stackConfig } from "./harness";

/** The YAML blocks of a Markdown text that set keys of the project, with the line each starts on. */
function configExamples(markdown: string): Array<{ line: number; values: Record<string, string> }> {
    const out: Array<{ line: number; values: Record<string, string> }> = [];
    const fence = /^( *)```yaml\n([\s\S]*?)^\1```$/gm;
    for (const m of markdown.matchAll(fence)) {
        const indent = m[1]!.length;
        const body = m[2]!.split("\n").map((l) => l.slice(indent)).join("\n");
        if (!body.includes(`${PROJECT}:`)) {
            continue;
        }
        const doc = parseYaml(body) as Record<string, unknown>;
        const settings = (doc.config ?? doc) as Record<string, unknown>;
        const values: Record<string, string> = {};
        for (const [key, value] of Object.entries(settings)) {
            if (key.startsWith(`${PROJECT}:`)) {
                // As the SDK hands config to the program: structured values as JSON, the rest as strings.
                values[key.slice(PROJECT.length + 1)] = typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
            }
        }
        out.push({ line: markdown.slice(0, m.index).split("\n").length, values });
    }
    return out;
}

/** Validates example values on the minikube stack (with a host, which the publishing examples need). */
function validate(values: Record<string, string>): void {
    const config = stackConfig("minikube", { ingressHost: "mlflow.example.com", ...values });
    parseConfig((key) => config[`${PROJECT}:${key}`], () => false);
}

describe("README configuration examples", () => {
    const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
    const examples = configExamples(readme);

    it("finds the stack-file examples: served models, escape hatches, Ingress annotations", () => {
        const keys = examples.flatMap((e) => Object.keys(e.values));
        expect(keys).to.include.members(["servedModels", "mlflowDefaultPermission", "extraEnv", "imageMirrors", "tolerations", "ingressAnnotations"]);
    });

    for (const example of examples) {
        it(`accepts the example at README.md line ${example.line} (${Object.keys(example.values).join(", ")})`, () => {
            expect(() => validate(example.values)).to.not.throw();
        });
    }

    it("would catch a broken example: the same check refuses one with a reserved variable", () => {
        const hatches = examples.find((e) => e.values.extraEnv !== undefined)!;
        const broken = { ...hatches.values, extraEnv: JSON.stringify([{ name: "PGHOST", value: "elsewhere" }]) };
        expect(() => validate(broken)).to.throw(ConfigError, /extraEnv\[0\] \(PGHOST\)\.name/);
    });
});
