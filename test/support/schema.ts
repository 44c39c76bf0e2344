/**
 * Validation of Kubernetes objects against the upstream OpenAPI schema as `kubernetes-models`
 * compiles it (Kubernetes 1.33), plus the API versions that 1.33 no longer serves, which the
 * package still ships models for.
 */

/** Group/versions removed from the API server by 1.33, with the release that removed them. */
export const REMOVED_API_VERSIONS: Readonly<Record<string, string>> = Object.freeze({
    "extensions/v1beta1": "1.22",
    "apps/v1beta1": "1.16",
    "apps/v1beta2": "1.16",
    "networking.k8s.io/v1beta1": "1.22",
    "policy/v1beta1": "1.25",
    "batch/v1beta1": "1.25",
    "autoscaling/v2beta1": "1.25",
    "autoscaling/v2beta2": "1.26",
    "discovery.k8s.io/v1beta1": "1.25",
    "storage.k8s.io/v1beta1": "1.22",
    "rbac.authorization.k8s.io/v1beta1": "1.22",
    "flowcontrol.apiserver.k8s.io/v1beta2": "1.29",
    "flowcontrol.apiserver.k8s.io/v1beta3": "1.32",
});

/** Problems with one object: an empty list means the API server's schema accepts it. */
export function schemaErrors(obj: any): string[] {
    const apiVersion: unknown = obj?.apiVersion;
    const kind: unknown = obj?.kind;
    if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9.-]+(\/[A-Za-z0-9]+)?$/.test(apiVersion) || !/^[A-Za-z]+$/.test(kind)) {
        return [`apiVersion and kind must be set (got ${String(apiVersion)} ${String(kind)})`];
    }
    const removed = REMOVED_API_VERSIONS[apiVersion];
    if (removed !== undefined) {
        return [`${apiVersion} ${kind}: this API version is no longer served (removed in Kubernetes ${removed})`];
    }
    let model: any;
    try {
        model = require(`kubernetes-models/${apiVersion}`)[kind];
    } catch {
        model = undefined;
    }
    if (typeof model !== "function") {
        return [`${apiVersion} ${kind}: no such kind in the Kubernetes 1.33 API`];
    }
    try {
        new model(obj).validate();
        return [];
    } catch (e: any) {
        const details: any[] = e?.errors ?? [];
        return details.length > 0
            ? details.map((d) => `${d.instancePath || "/"} ${d.message ?? d.keyword} ${JSON.stringify(d.params ?? {})}`)
            : [String(e?.message ?? e)];
    }
}
