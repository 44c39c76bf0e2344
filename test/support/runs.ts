/**
 * The program runs the security specs check, each rendered once: both shipped stacks and the
 * harness's variants (every optional object; the HTTPRoute in place of the Ingress), so every
 * optional object is covered too.
 */
import { kubernetesManifests } from "../../scripts/render";
import { ProgramRun, stackRun, STACKS, VARIANTS, VariantLabel, variantRun } from "../harness";

/** A named run and its Kubernetes objects as the API server would receive them. */
export interface RenderedRun {
    readonly label: string;
    readonly run: ProgramRun;
    readonly objects: readonly any[];
}

/** Labels of the runs {@link renderedRuns} gives, for declaring one `describe` per run. */
export const RUN_LABELS: readonly string[] = [...STACKS, ...Object.keys(VARIANTS)];

const cache = new Map<string, Promise<RenderedRun>>();

/** One run by label (a stack name or a variant's), rendered. */
export function renderedRun(label: string): Promise<RenderedRun> {
    let found = cache.get(label);
    if (found === undefined) {
        const run = label in VARIANTS ? variantRun(label as VariantLabel) : stackRun(label as (typeof STACKS)[number]);
        found = run.then((r) => ({ label, run: r, objects: kubernetesManifests(r).map((m) => m.object) }));
        cache.set(label, found);
    }
    return found;
}
