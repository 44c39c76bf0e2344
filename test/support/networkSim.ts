/**
 * A small evaluator of Kubernetes NetworkPolicy semantics, to test which connections the
 * rendered policies allow: a connection needs the source's egress and the destination's ingress
 * to allow it, and a pod selected by no policy of a direction is open in that direction.
 *
 * `ipBlock` peers match only endpoints outside the cluster here; whether they also match pod IPs
 * depends on the network plugin, so no test relies on that.
 */
import { selects } from "../../policy/checks/networkPolicy";

/** A pod, by namespace and labels. */
export interface PodEndpoint {
    readonly namespace: string;
    readonly labels: Readonly<Record<string, string>>;
}
/** An address outside the cluster. */
export interface ExternalEndpoint {
    readonly ip: string;
}
export type Endpoint = PodEndpoint | ExternalEndpoint;

const isPod = (e: Endpoint): e is PodEndpoint => (e as PodEndpoint).namespace !== undefined;
const namespaceLabels = (ns: string): Record<string, string> => ({ "kubernetes.io/metadata.name": ns });

function inCidr(ip: string, cidr: string): boolean {
    const [base, bits] = cidr.split("/") as [string, string];
    if (ip.includes(":") !== base.includes(":")) {
        return false;
    }
    if (ip.includes(":")) {
        return Number(bits) === 0;
    }
    const toInt = (a: string) => a.split(".").reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
    const mask = Number(bits) === 0 ? 0 : (~0 << (32 - Number(bits))) >>> 0;
    return ((toInt(ip) & mask) >>> 0) === ((toInt(base) & mask) >>> 0);
}

function peerMatches(peer: any, policyNamespace: string, other: Endpoint): boolean {
    if (peer.ipBlock !== undefined) {
        return !isPod(other) && inCidr(other.ip, peer.ipBlock.cidr)
            && !(peer.ipBlock.except ?? []).some((c: string) => inCidr(other.ip, c));
    }
    if (!isPod(other)) {
        return false;
    }
    const nsOk = peer.namespaceSelector !== undefined
        ? selects(peer.namespaceSelector, namespaceLabels(other.namespace))
        : other.namespace === policyNamespace;
    const podOk = peer.podSelector !== undefined ? selects(peer.podSelector, other.labels) : true;
    return nsOk && podOk;
}

function portMatches(ports: any[] | undefined, port: number, protocol: string): boolean {
    return ports === undefined || ports.length === 0
        || ports.some((p) => (p.protocol ?? "TCP") === protocol && (p.port === undefined || p.port === port));
}

function types(np: any): string[] {
    return np.spec?.policyTypes ?? (np.spec?.egress !== undefined ? ["Ingress", "Egress"] : ["Ingress"]);
}

function sideAllows(policies: any[], pod: PodEndpoint, direction: "Ingress" | "Egress", other: Endpoint, port: number, protocol: string): boolean {
    const applying = policies.filter((np) => np.metadata?.namespace === pod.namespace
        && types(np).includes(direction) && selects(np.spec?.podSelector, pod.labels));
    if (applying.length === 0) {
        return true;
    }
    const rulesField = direction === "Ingress" ? "ingress" : "egress";
    const peersField = direction === "Ingress" ? "from" : "to";
    return applying.some((np) => (np.spec?.[rulesField] ?? []).some((rule: any) => {
        const peers: any[] | undefined = rule[peersField];
        const peerOk = peers === undefined || peers.length === 0 || peers.some((p) => peerMatches(p, np.metadata.namespace, other));
        return peerOk && portMatches(rule.ports, port, protocol);
    }));
}

/** Whether the policies among `objects` let `from` open a connection to `to` on `port`. */
export function connectionAllowed(objects: readonly any[], from: Endpoint, to: Endpoint, port: number, protocol = "TCP"): boolean {
    const policies = objects.filter((o) => o.kind === "NetworkPolicy");
    const egressOk = !isPod(from) || sideAllows(policies, from, "Egress", to, port, protocol);
    const ingressOk = !isPod(to) || sideAllows(policies, to, "Ingress", from, port, protocol);
    return egressOk && ingressOk;
}
