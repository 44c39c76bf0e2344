/**
 * Runs CrossGuard policies offline on recorded resources: builds the arguments the policy
 * analyzer would pass (props, URN, dependencies) and collects the violations reported.
 */
import type {
    PolicyResource, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy,
} from "@pulumi/policy";
import type { RecordedResource } from "../harness";

/** A resource as a policy sees it: its props are the checked inputs plus known outputs. */
export type PolicyTarget = Pick<RecordedResource, "type" | "name" | "urn" | "state" | "dependencies" | "protect">;

const unsupported = (what: string) => (): never => {
    throw new Error(`${what} is not available offline; policies here must read props only`);
};

function opts(r: PolicyTarget) {
    return {
        protect: r.protect, ignoreChanges: [], aliases: [], additionalSecretOutputs: [],
        customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
    };
}

/** The arguments of `validateResource` for one resource. */
export function resourceArgs(r: PolicyTarget): ResourceValidationArgs {
    return {
        type: r.type, props: structuredClone(r.state), urn: r.urn, name: r.name, opts: opts(r),
        stackTags: new Map(),
        isType: unsupported("isType") as any,
        asType: unsupported("asType") as any,
        getConfig: () => ({}) as any,
        notApplicable: unsupported("notApplicable"),
    };
}

/** The arguments of `validateStack` for a set of resources, dependencies resolved. */
export function stackArgs(resources: readonly PolicyTarget[]): StackValidationArgs {
    const byUrn = new Map<string, PolicyResource>();
    const list: PolicyResource[] = resources.map((r) => {
        const p: PolicyResource = {
            type: r.type, props: structuredClone(r.state), urn: r.urn, name: r.name, opts: opts(r),
            dependencies: [], propertyDependencies: {},
            isType: unsupported("isType") as any,
            asType: unsupported("asType") as any,
        };
        byUrn.set(r.urn, p);
        return p;
    });
    resources.forEach((r, i) => {
        list[i]!.dependencies = r.dependencies.map((u) => byUrn.get(u)).filter((d): d is PolicyResource => d !== undefined);
    });
    return { resources: list, stackTags: new Map(), getConfig: () => ({}) as any, notApplicable: unsupported("notApplicable") };
}

/** Every violation one policy reports on a set of resources, as `urn-or-name: message`. */
export async function violations(policy: ResourceValidationPolicy | StackValidationPolicy, resources: readonly PolicyTarget[]): Promise<string[]> {
    const out: string[] = [];
    if ("validateStack" in policy) {
        await policy.validateStack(stackArgs(resources), (message, urn) => out.push(`${urn ?? "stack"}: ${message}`));
        return out;
    }
    const validations = [policy.validateResource ?? []].flat();
    for (const r of resources) {
        for (const validate of validations) {
            await validate(resourceArgs(r), (message) => out.push(`${r.name}: ${message}`));
        }
    }
    return out;
}
