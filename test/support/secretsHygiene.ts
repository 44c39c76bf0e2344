/**
 * Hunts a program run for its own generated credentials (random passwords, the access key) in
 * places they must never be: inputs of any resource but a Kubernetes Secret (ConfigMaps, env
 * literals, annotations, component args, AWS resources), Secret values not marked secret, and
 * stack outputs that are not secret. Both the raw value and its base64 form are looked for.
 */
import type { ProgramRun, RecordedResource } from "../harness";

/** What the hunt reads of a run. */
export type HygieneInput = Pick<ProgramRun, "resources" | "outputs" | "secretOutputs" | "credentials">;

/** Resource types that generate credentials: their outputs hold them by design. */
export const GENERATOR_TYPES: readonly string[] = ["random:index/randomPassword:RandomPassword", "aws:iam/accessKey:AccessKey"];

/** Every string in a value, with its dotted path. */
function strings(value: any, at: string, out: Array<[string, string]> = []): Array<[string, string]> {
    if (typeof value === "string") {
        out.push([at, value]);
    } else if (Array.isArray(value)) {
        value.forEach((v, i) => strings(v, at === "" ? String(i) : `${at}.${i}`, out));
    } else if (value !== null && typeof value === "object") {
        for (const [k, v] of Object.entries(value)) {
            strings(v, at === "" ? k : `${at}.${k}`, out);
        }
    }
    return out;
}

function holds(text: string, credentials: readonly string[]): boolean {
    return credentials.some((c) => text.includes(c) || text.includes(Buffer.from(c).toString("base64")));
}

const isUnder = (path: string, roots: readonly string[]): boolean =>
    roots.some((r) => r === "" || path === r || path.startsWith(`${r}.`));

/** Where each leak is, one line per leak; empty when the run is clean. */
export function credentialLeaks(run: HygieneInput): string[] {
    const leaks: string[] = [];
    const where = (r: RecordedResource, path: string) => `${r.type}::${r.name} ${path}`;
    if (run.credentials.length === 0) {
        return ["the run generated no credential to look for"];
    }
    for (const r of run.resources) {
        if (GENERATOR_TYPES.includes(r.type)) {
            for (const [path, s] of strings(r.inputs, "")) {
                if (holds(s, run.credentials)) {
                    leaks.push(`${where(r, path)}: a generator's input holds a credential`);
                }
            }
            continue;
        }
        const isSecret = r.type === "kubernetes:core/v1:Secret";
        for (const [path, s] of strings(r.inputs, "")) {
            if (!holds(s, run.credentials)) {
                continue;
            }
            if (!isSecret) {
                const what = /\.env\.\d+\.value$/.test(path) ? "an env literal"
                    : r.type === "kubernetes:core/v1:ConfigMap" ? "a ConfigMap"
                        : r.type.startsWith("mlflow-k8s:") ? "component args"
                            : "a non-Secret object";
                leaks.push(`${where(r, path)}: ${what} holds a credential`);
            } else if (!/^(data|stringData)\./.test(path)) {
                leaks.push(`${where(r, path)}: a Secret holds a credential outside data/stringData`);
            } else if (!isUnder(path, r.secretPaths)) {
                leaks.push(`${where(r, path)}: a Secret value is not marked secret`);
            }
        }
    }
    for (const [key, value] of Object.entries(run.outputs)) {
        if (!run.secretOutputs.includes(key) && strings(value, key).some(([, s]) => holds(s, run.credentials))) {
            leaks.push(`output ${key}: holds a credential but is not a secret`);
        }
    }
    return leaks;
}
