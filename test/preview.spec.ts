/**
 * `pulumi preview` of an unchanged stack must propose nothing. The mocks return what the real
 * providers return (the live objects, test/harness.ts), so a value derived from an output the
 * provider never returns (a Secret's `stringData`) is unknown in a preview and known in an update:
 * the engine would show a diff on every preview, and `pulumi preview --expect-no-changes` would fail.
 */
import { expect } from "chai";
import * as path from "path";
import { ProgramRun, STACKS, VARIANTS, VariantLabel, runProgram, stackRun, variantRun } from "./harness";

/** Resources whose inputs differ between a preview and an update of the same configuration. */
function previewDiffs(update: ProgramRun, preview: ProgramRun): string[] {
    const diffs: string[] = [];
    for (const p of preview.resources) {
        const u = update.resources.find((r) => r.urn === p.urn);
        if (u === undefined) {
            diffs.push(`${p.name}: only in the preview`);
        } else if (p.unknownPaths.length > 0) {
            diffs.push(`${p.name}: unknown in the preview: ${p.unknownPaths.join(", ")}`);
        } else if (JSON.stringify(p.inputs) !== JSON.stringify(u.inputs)) {
            diffs.push(`${p.name}: inputs differ`);
        }
    }
    for (const u of update.resources.filter((r) => !preview.resources.some((p) => p.urn === r.urn))) {
        diffs.push(`${u.name}: only in the update`);
    }
    return diffs;
}

describe("preview of an unchanged stack", () => {
    // The shipped stacks, and the variant for every optional object (model servers included).
    for (const stack of [...STACKS, ...Object.keys(VARIANTS) as VariantLabel[]]) {
        it(`${stack}: knows every input it knows in an update, so the engine sees no change`, async () => {
            const variant = stack in VARIANTS ? stack as VariantLabel : undefined;
            const update = await (variant !== undefined ? variantRun(variant) : stackRun(stack as (typeof STACKS)[number]));
            const preview = await (variant !== undefined ? runProgram("minikube", VARIANTS[variant], { preview: true }) : runProgram(stack, {}, { preview: true }));
            expect(preview.preview).to.equal(true);
            expect(preview.resources.length).to.equal(update.resources.length);
            const diffs = previewDiffs(update, preview);
            expect(diffs, diffs.join("\n")).to.deep.equal([]);
            expect(preview.unknownOutputs, "stack outputs unknown in the preview").to.deep.equal([]);
        });
    }

    it("fails a run whose program throws inside an apply, where a resource would silently be missing", async () => {
        const entry = path.join(__dirname, "fixtures", "throwsInApply");
        await runProgram("minikube", {}, { entry }).then(
            () => expect.fail("the run succeeded"), (e: Error) => expect(e.message).to.match(/failed while registering resources: .*computed value failed/));
    });

    it("catches a pod checksum taken from a Secret's stringData output (the provider returns data, never stringData)", async () => {
        const entry = path.join(__dirname, "fixtures", "checksumOfSecretOutput");
        const update = await runProgram("minikube", {}, { entry });
        const preview = await runProgram("minikube", {}, { entry, preview: true });
        const consumer = preview.one("kubernetes:core/v1:ConfigMap");
        expect(consumer.unknownPaths).to.deep.equal(["metadata.annotations.checksum/config"]);
        expect(update.one("kubernetes:core/v1:ConfigMap").unknownPaths).to.deep.equal([]);
        expect(previewDiffs(update, preview)).to.have.length(1);
    });
});
