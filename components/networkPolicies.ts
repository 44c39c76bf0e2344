import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

/** Pod labels that select one workload's pods (a `selectorLabels()` result). */
export type PodSelector = Readonly<Record<string, string>>;

/** Arguments of {@link NetworkPolicies}. */
export interface NetworkPoliciesArgs {
    /** Namespace the policies isolate. */
    readonly namespace: pulumi.Input<string>;
    /** PostgreSQL's pods and port. */
    readonly postgres: { readonly podSelector: PodSelector; readonly port: number };
    /** The tracking server's pods and the container port clients reach. */
    readonly trackingServer: { readonly podSelector: PodSelector; readonly port: number };
    /** The schema migration Job's pods. */
    readonly migration: { readonly podSelector: PodSelector };
    /**
     * S3 endpoint override (an emulator such as MinIO or moto); its port is opened for egress
     * from the server.
     * @default undefined: AWS over HTTPS (443), which is always open
     */
    readonly s3Endpoint?: string;
    /**
     * Namespace of the ingress controller that forwards to the server.
     * @default undefined: no Ingress, no rule for a controller
     */
    readonly ingressControllerNamespace?: string;
}

/** Namespace the ingress-nginx controller installs into by default. */
export const DEFAULT_INGRESS_CONTROLLER_NAMESPACE = "ingress-nginx";
/** Namespace of the cluster DNS (CoreDNS or kube-dns) in every conformant cluster. */
export const DNS_NAMESPACE = "kube-system";
/** Label every namespace carries with its own name (Kubernetes 1.22 and later). */
const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

type Rule = k8s.types.input.networking.v1.NetworkPolicyIngressRule;
type EgressRule = k8s.types.input.networking.v1.NetworkPolicyEgressRule;

/** Egress to the cluster DNS on port 53, UDP and TCP (large answers fall back to TCP). */
export function dnsEgress(): EgressRule {
    return {
        to: [{ namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: DNS_NAMESPACE } } }],
        ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }],
    };
}

/**
 * TCP ports the tracking server must reach outside the cluster: 443 for S3 (and STS), plus the
 * port of an endpoint override (default 80 or 443 by scheme).
 */
export function s3EgressPorts(endpoint?: string): number[] {
    const ports = [443];
    if (endpoint !== undefined) {
        const url = new URL(endpoint);
        const port = url.port !== "" ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
        if (!ports.includes(port)) {
            ports.push(port);
        }
    }
    return ports;
}

/**
 * NetworkPolicies for the namespace: everything is denied by default, in both directions; then
 * PostgreSQL accepts its port only from the tracking server and the migration Job and talks to
 * no one; the server accepts its port from pods anywhere in the cluster (and the ingress
 * controller) and reaches only DNS, PostgreSQL and S3 over HTTPS; the migration Job reaches only
 * DNS and PostgreSQL.
 *
 * Policies are additive, so the default deny is created last: the allow rules are already in
 * place when isolation starts, and no pod loses a connection it needs during the first update.
 */
export class NetworkPolicies extends pulumi.ComponentResource {
    /** Names of the policies, for diagnostics. */
    public readonly policyNames: pulumi.Output<string[]>;

    constructor(name: string, args: NetworkPoliciesArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:kubernetes:NetworkPolicies", name, {}, opts);
        const child = { parent: this };
        const metadata = (component: string) => ({
            namespace: args.namespace,
            labels: {
                "app.kubernetes.io/name": component,
                "app.kubernetes.io/instance": name,
                "app.kubernetes.io/part-of": "mlflow",
                "app.kubernetes.io/managed-by": "pulumi",
            },
        });
        const pods = (selector: PodSelector) => ({ podSelector: { matchLabels: { ...selector } } });
        const tcp = (port: number) => ({ protocol: "TCP", port });
        const toPostgres: EgressRule = { to: [pods(args.postgres.podSelector)], ports: [tcp(args.postgres.port)] };

        const postgres = new k8s.networking.v1.NetworkPolicy(`${name}-postgres`, {
            metadata: metadata("postgres-network-policy"),
            spec: {
                podSelector: { matchLabels: { ...args.postgres.podSelector } },
                policyTypes: ["Ingress", "Egress"],
                ingress: [{
                    from: [pods(args.trackingServer.podSelector), pods(args.migration.podSelector)],
                    ports: [tcp(args.postgres.port)],
                }],
                // PostgreSQL opens no connections: no egress at all.
                egress: [],
            },
        }, child);

        const serverIngress: Rule[] = [{
            // Any pod in any namespace: in-cluster clients, but nothing from outside the cluster.
            from: [{ namespaceSelector: {} }],
            ports: [tcp(args.trackingServer.port)],
        }];
        if (args.ingressControllerNamespace !== undefined) {
            // Covered by the rule above today; kept explicit so narrowing in-cluster access
            // later cannot cut off the Ingress.
            serverIngress.push({
                from: [{ namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: args.ingressControllerNamespace } } }],
                ports: [tcp(args.trackingServer.port)],
            });
        }
        const server = new k8s.networking.v1.NetworkPolicy(`${name}-tracking-server`, {
            metadata: metadata("tracking-server-network-policy"),
            spec: {
                podSelector: { matchLabels: { ...args.trackingServer.podSelector } },
                policyTypes: ["Ingress", "Egress"],
                ingress: serverIngress,
                egress: [
                    dnsEgress(),
                    toPostgres,
                    {
                        // S3 has no fixed addresses; the port is the limit.
                        to: [{ ipBlock: { cidr: "0.0.0.0/0" } }, { ipBlock: { cidr: "::/0" } }],
                        ports: s3EgressPorts(args.s3Endpoint).map(tcp),
                    },
                ],
            },
        }, child);

        const migration = new k8s.networking.v1.NetworkPolicy(`${name}-db-migration`, {
            metadata: metadata("db-migration-network-policy"),
            spec: {
                podSelector: { matchLabels: { ...args.migration.podSelector } },
                policyTypes: ["Ingress", "Egress"],
                ingress: [],
                egress: [dnsEgress(), toPostgres],
            },
        }, child);

        const defaultDeny = new k8s.networking.v1.NetworkPolicy(`${name}-default-deny`, {
            metadata: metadata("default-deny-network-policy"),
            spec: {
                podSelector: {},
                policyTypes: ["Ingress", "Egress"],
                ingress: [],
                egress: [],
            },
        }, { ...child, dependsOn: [postgres, server, migration] });

        this.policyNames = pulumi.all([postgres, server, migration, defaultDeny].map((p) => p.metadata.name));
        this.registerOutputs({ policyNames: this.policyNames });
    }
}
