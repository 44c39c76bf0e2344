/**
 * Validation of Kubernetes objects against the upstream OpenAPI schema as `kubernetes-models`
 * compiles it (Kubernetes 1.33), plus the API versions that 1.33 no longer serves, which the
 * package still ships models for; and the custom resources in {@link CRD_MODELS}, against the
 * schemas of their CRDs.
 */
import * as path from "path";
import { ROOT } from "../harness";

/**
 * Custom resources the program may create, with the package of models compiled from their CRDs:
 * Gateway API's HTTPRoute (standard channel) and Prometheus Operator's ServiceMonitor.
 */
export const CRD_MODELS: Readonly<Record<string, string>> = Object.freeze({
    "gateway.networking.k8s.io/v1": "@kubernetes-models/gateway-api",
    "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator",
});

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
    const crd = CRD_MODELS[apiVersion];
    try {
        model = crd === undefined ? require(`kubernetes-models/${apiVersion}`)[kind]
            // These packages export ES modules only, to `import`: reach the file itself, which
            // Node 22 can `require`.
            : require(path.join(ROOT, "node_modules", crd, apiVersion, `${kind}.js`))[kind];
    } catch {
        model = undefined;
    }
    if (typeof model !== "function") {
        return [`${apiVersion} ${kind}: no such kind in the Kubernetes 1.33 API${crd === undefined ? "" : ` nor in ${crd}`}`];
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
