/**
 * The program runs the security specs check, each rendered once: both shipped stacks and the
 * harness's variant (Ingress, emulator endpoint, KMS, autoscaling), so every optional object is
 * covered too.
 */
import { kubernetesManifests } from "../../scripts/render";
import { ProgramRun, stackRun, STACKS, variantRun } from "../harness";

/** A named run and its Kubernetes objects as the API server would receive them. */
export interface RenderedRun {
    readonly label: string;
    readonly run: ProgramRun;
    readonly objects: readonly any[];
}

/** Labels of the runs {@link renderedRuns} gives, for declaring one `describe` per run. */
export const RUN_LABELS: readonly string[] = [...STACKS, "variant"];

const cache = new Map<string, Promise<RenderedRun>>();

/** One run by label (a stack name or `variant`), rendered. */
export function renderedRun(label: string): Promise<RenderedRun> {
    let found = cache.get(label);
    if (found === undefined) {
        const run = label === "variant" ? variantRun() : stackRun(label as (typeof STACKS)[number]);
        found = run.then((r) => ({ label, run: r, objects: kubernetesManifests(r).map((m) => m.object) }));
        cache.set(label, found);
    }
    return found;
}
