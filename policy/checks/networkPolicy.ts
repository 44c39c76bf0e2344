/**
 * Network isolation rules over plain Kubernetes objects: every namespace that runs pods denies
 * ingress by default, every pod's egress is restricted by some NetworkPolicy, and no policy
 * opens a port to the whole world.
 */
import type { Finding } from "./findings";
import { podTemplates } from "./podSecurity";

type Obj = Record<string, any>;

/** Network rule ids, each with a fixture in the tests. */
export const NETWORK_RULES = [
    "netpol.defaultDenyIngress", "netpol.egressRestricted", "netpol.ingressFromAnywhere", "netpol.egressAnywhere",
] as const;

/** Whether a label selector selects pods with these labels. An empty selector selects all. */
export function selects(selector: Obj | undefined, labels: Readonly<Record<string, string>>): boolean {
    if (selector === undefined || selector === null) {
        return false;
    }
    for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
        if (labels[k] !== v) {
            return false;
        }
    }
    for (const e of (selector.matchExpressions ?? []) as Obj[]) {
        const has = Object.prototype.hasOwnProperty.call(labels, e.key);
        const values: string[] = e.values ?? [];
        const ok = e.operator === "In" ? has && values.includes(labels[e.key]!)
            : e.operator === "NotIn" ? !has || !values.includes(labels[e.key]!)
                : e.operator === "Exists" ? has
                    : e.operator === "DoesNotExist" ? !has
                        : false;
        if (!ok) {
            return false;
        }
    }
    return true;
}

const isEmptySelector = (s: Obj | undefined): boolean =>
    s !== undefined && s !== null && Object.keys(s.matchLabels ?? {}).length === 0 && (s.matchExpressions ?? []).length === 0;

const policyTypes = (np: Obj): string[] =>
    np.spec?.policyTypes ?? (np.spec?.egress !== undefined ? ["Ingress", "Egress"] : ["Ingress"]);

const worldCidr = (peer: Obj): boolean => ["0.0.0.0/0", "::/0"].includes(peer.ipBlock?.cidr);

/** Findings for a set of objects (one stack's worth). */
export function networkIsolationFindings(objects: readonly Obj[]): Finding[] {
    const out: Finding[] = [];
    const policies = objects.filter((o) => o.kind === "NetworkPolicy");
    const inNamespace = (ns: string | undefined) => policies.filter((p) => p.metadata?.namespace === ns);

    for (const np of policies) {
        const name = `NetworkPolicy ${np.metadata?.name ?? "?"}`;
        (np.spec?.ingress ?? []).forEach((rule: Obj, i: number) => {
            const from: Obj[] = rule.from ?? [];
            if (from.length === 0 || from.some(worldCidr)) {
                out.push({ rule: "netpol.ingressFromAnywhere", path: `${name}.spec.ingress[${i}]`, message: "ingress from anywhere: name the client pods or namespaces" });
            }
        });
        (np.spec?.egress ?? []).forEach((rule: Obj, i: number) => {
            const to: Obj[] = rule.to ?? [];
            if ((rule.ports ?? []).length === 0 && (to.length === 0 || to.some(worldCidr))) {
                out.push({ rule: "netpol.egressAnywhere", path: `${name}.spec.egress[${i}]`, message: "egress to anywhere on any port: limit the ports or the destinations" });
            }
        });
    }

    const namespaces = new Set<string | undefined>();
    for (const obj of objects) {
        for (const t of podTemplates(obj)) {
            const ns: string | undefined = obj.metadata?.namespace;
            namespaces.add(ns);
            const egressPolicies = inNamespace(ns).filter((p) => policyTypes(p).includes("Egress") && selects(p.spec?.podSelector, t.labels));
            if (egressPolicies.length === 0) {
                out.push({
                    rule: "netpol.egressRestricted",
                    path: `${obj.kind} ${obj.metadata?.name ?? "?"}.${t.path}`,
                    message: "no NetworkPolicy with policyType Egress selects these pods",
                });
            }
        }
    }
    for (const ns of namespaces) {
        const denies = inNamespace(ns).some((p) =>
            isEmptySelector(p.spec?.podSelector) && policyTypes(p).includes("Ingress") && (p.spec?.ingress ?? []).length === 0);
        if (!denies) {
            out.push({
                rule: "netpol.defaultDenyIngress",
                path: `Namespace ${ns ?? "(unset)"}`,
                message: "add a NetworkPolicy with an empty podSelector, policyType Ingress and no ingress rules",
            });
        }
    }
    return out;
}
