import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

/** Pod labels that select one workload's pods (a `selectorLabels()` result). */
export type PodSelector = Readonly<Record<string, string>>;

/** Arguments of {@link NetworkPolicies}. */
export interface NetworkPoliciesArgs {
    /** Namespace the policies isolate. */
    readonly namespace: pulumi.Input<string>;
    /**
     * The database: the in-cluster PostgreSQL's pods and port, or an external database's
     * addresses (CIDRs) and port.
     */
    readonly database:
        | { readonly podSelector: PodSelector; readonly port: number }
        | { readonly cidrs: readonly string[]; readonly port: number };
    /**
     * The tracking server's pods, the container port clients reach and the port of their metrics
     * exporter, which scrapers reach by pod IP.
     */
    readonly trackingServer: { readonly podSelector: PodSelector; readonly port: number; readonly metricsPort?: number };
    /** The schema migration Job's pods (which take a backup first, so they reach S3 too). */
    readonly migration: { readonly podSelector: PodSelector };
    /** The backup CronJob's pods. */
    readonly backup: { readonly podSelector: PodSelector };
    /** The restore Jobs' pods. */
    readonly restore: { readonly podSelector: PodSelector };
    /**
     * The schema rollout's Jobs (quiesce and resume): the database, and the API server at
     * `apiServer` (they scale the server's Deployment and suspend CronJobs).
     */
    readonly schemaRollout: { readonly podSelector: PodSelector; readonly apiServer: { readonly cidrs: readonly string[]; readonly port: number } };
    /**
     * The CronJob keeping the model servers' users' grants (database only).
     * @default undefined: no model servers
     */
    readonly servingGrants?: { readonly podSelector: PodSelector };
    /**
     * The garbage collection CronJob's pods (`mlflow gc`: the database, and S3 as the server's identity).
     * @default undefined: no garbage collection
     */
    readonly gc?: { readonly podSelector: PodSelector };
    /**
     * The model servers: their pods and the port clients reach. They download their model from the
     * tracking server and reach nothing else.
     * @default []
     */
    readonly modelServers?: ReadonlyArray<{ readonly name: string; readonly podSelector: PodSelector; readonly port: number }>;
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
    /**
     * CIDRs outside the cluster admitted to the server's port: load balancers that send traffic
     * straight to pod IPs (AWS load balancers in IP target mode, for one).
     * @default []: nothing from outside the cluster
     */
    readonly sourceRanges?: readonly string[];
    /**
     * Address of NodeLocal DNSCache, which answers DNS on every node at a link-local address
     * instead of the kube-system pods; admitted for DNS besides them.
     * @default undefined: cluster DNS in kube-system only
     */
    readonly nodeLocalDnsAddress?: string;
    /**
     * Whether the pods that reach S3 get their role through EKS Pod Identity, whose agent on every node
     * hands out credentials at a link-local address.
     * @default false
     */
    readonly podIdentityAgent?: boolean;
}

/** Where the EKS Pod Identity Agent serves credentials on every node (IPv4 and IPv6), on port 80. */
export const POD_IDENTITY_AGENT = Object.freeze({ cidrs: ["169.254.170.23/32", "fd00:ec2::23/128"], port: 80 });

/** Namespace of the cluster DNS (CoreDNS or kube-dns) in every conformant cluster. */
export const DNS_NAMESPACE = "kube-system";
/** Label every namespace carries with its own name (Kubernetes 1.22 and later). */
const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

type Rule = k8s.types.input.networking.v1.NetworkPolicyIngressRule;
type EgressRule = k8s.types.input.networking.v1.NetworkPolicyEgressRule;

/**
 * Egress to the cluster DNS on port 53, UDP and TCP (large answers fall back to TCP): the DNS pods
 * in kube-system, and NodeLocal DNSCache's node-local address when the cluster runs it.
 */
export function dnsEgress(nodeLocalDnsAddress?: string): EgressRule {
    const nodeLocal = nodeLocalDnsAddress === undefined ? [] : [{ ipBlock: { cidr: `${nodeLocalDnsAddress}/${nodeLocalDnsAddress.includes(":") ? 128 : 32}` } }];
    return {
        to: [{ namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: DNS_NAMESPACE } } }, ...nodeLocal],
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
 * PostgreSQL (in the cluster) accepts its port only from the tracking server, the migration Job and
 * the backup, restore, serving grants and garbage collection pods, and talks to no one (an external database is reached at its CIDRs); the server accepts its port and its metrics port from pods anywhere in the
 * cluster (and the ingress controller) and reaches only DNS, PostgreSQL and S3 over HTTPS; the
 * migration Job, backups, restores and garbage collection reach only DNS, PostgreSQL and S3, and
 * accept nothing.
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
        const db = args.database;
        const toPostgres: EgressRule = "podSelector" in db
            ? { to: [pods(db.podSelector)], ports: [tcp(db.port)] }
            : { to: db.cidrs.map((cidr) => ({ ipBlock: { cidr } })), ports: [tcp(db.port)] };
        const dns = dnsEgress(args.nodeLocalDnsAddress);
        const toS3: EgressRule[] = [{
            // S3 has no fixed addresses; the port is the limit.
            to: [{ ipBlock: { cidr: "0.0.0.0/0" } }, { ipBlock: { cidr: "::/0" } }],
            ports: s3EgressPorts(args.s3Endpoint).map(tcp),
        }, ...(args.podIdentityAgent ? [{
            to: POD_IDENTITY_AGENT.cidrs.map((cidr) => ({ ipBlock: { cidr } })),
            ports: [tcp(POD_IDENTITY_AGENT.port)],
        }] : [])];
        const databaseClients = [args.trackingServer, args.migration, args.backup, args.restore, args.schemaRollout,
            ...(args.servingGrants ? [args.servingGrants] : []),
            ...(args.gc ? [args.gc] : [])];

        const postgres = !("podSelector" in db) ? [] : [new k8s.networking.v1.NetworkPolicy(`${name}-postgres`, {
            metadata: metadata("postgres-network-policy"),
            spec: {
                podSelector: { matchLabels: { ...db.podSelector } },
                policyTypes: ["Ingress", "Egress"],
                ingress: [{
                    from: databaseClients.map((c) => pods(c.podSelector)),
                    ports: [tcp(db.port)],
                }],
                // PostgreSQL opens no connections: no egress at all.
                egress: [],
            },
        }, child)];

        const serverIngress: Rule[] = [{
            // Any pod in any namespace: in-cluster clients, but nothing from outside the cluster.
            from: [{ namespaceSelector: {} }],
            ports: [tcp(args.trackingServer.port)],
        }];
        if (args.trackingServer.metricsPort !== undefined) {
            // Prometheus runs in a namespace of its own, whichever the cluster chose; the exporter
            // serves counters only (no data, no credential), so any pod in the cluster may scrape it.
            serverIngress.push({
                from: [{ namespaceSelector: {} }],
                ports: [tcp(args.trackingServer.metricsPort)],
            });
        }
        if (args.ingressControllerNamespace !== undefined) {
            // Covered by the rule above today; kept explicit so narrowing in-cluster access
            // later cannot cut off the Ingress.
            serverIngress.push({
                from: [{ namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: args.ingressControllerNamespace } } }],
                ports: [tcp(args.trackingServer.port)],
            });
        }
        if ((args.sourceRanges ?? []).length > 0) {
            serverIngress.push({
                from: args.sourceRanges!.map((cidr) => ({ ipBlock: { cidr } })),
                ports: [tcp(args.trackingServer.port)],
            });
        }
        const server = new k8s.networking.v1.NetworkPolicy(`${name}-tracking-server`, {
            metadata: metadata("tracking-server-network-policy"),
            spec: {
                podSelector: { matchLabels: { ...args.trackingServer.podSelector } },
                policyTypes: ["Ingress", "Egress"],
                ingress: serverIngress,
                egress: [dns, toPostgres, ...toS3],
            },
        }, child);

        // Jobs: they open connections to PostgreSQL and S3 and accept none.
        const jobWorkloads: Array<readonly [string, { readonly podSelector: PodSelector }]> = [
            ["db-migration", args.migration], ["db-backup", args.backup], ["db-restore", args.restore],
            ...(args.gc ? [["artifact-gc", args.gc] as const] : []),
        ];
        const jobs = jobWorkloads
            .map(([component, workload]) => new k8s.networking.v1.NetworkPolicy(`${name}-${component}`, {
                metadata: metadata(`${component}-network-policy`),
                spec: {
                    podSelector: { matchLabels: { ...workload.podSelector } },
                    policyTypes: ["Ingress", "Egress"],
                    ingress: [],
                    egress: [dns, toPostgres, ...toS3],
                },
            }, child));

        // The serving grants CronJob: the database only.
        const grants = args.servingGrants === undefined ? [] : [new k8s.networking.v1.NetworkPolicy(`${name}-serving-grants`, {
            metadata: metadata("serving-grants-network-policy"),
            spec: {
                podSelector: { matchLabels: { ...args.servingGrants.podSelector } },
                policyTypes: ["Ingress", "Egress"],
                ingress: [],
                egress: [dns, toPostgres],
            },
        }, child)];

        // The schema rollout: the database (its revisions and sessions) and the API server, nothing else.
        const rollout = new k8s.networking.v1.NetworkPolicy(`${name}-schema-rollout`, {
            metadata: metadata("schema-rollout-network-policy"),
            spec: {
                podSelector: { matchLabels: { ...args.schemaRollout.podSelector } },
                policyTypes: ["Ingress", "Egress"],
                ingress: [],
                egress: [dns, toPostgres, {
                    to: args.schemaRollout.apiServer.cidrs.map((cidr) => ({ ipBlock: { cidr } })),
                    ports: [tcp(args.schemaRollout.apiServer.port)],
                }],
            },
        }, child);

        // Model servers: scoring requests from pods anywhere in the cluster (no credentials are asked
        // for: the Service is in-cluster only); the model comes from the tracking server.
        const toTrackingServer: EgressRule = { to: [pods(args.trackingServer.podSelector)], ports: [tcp(args.trackingServer.port)] };
        const models = (args.modelServers ?? []).map((m) => new k8s.networking.v1.NetworkPolicy(`${name}-model-${m.name}`, {
            metadata: metadata(`model-${m.name}-network-policy`),
            spec: {
                podSelector: { matchLabels: { ...m.podSelector } },
                policyTypes: ["Ingress", "Egress"],
                ingress: [{ from: [{ namespaceSelector: {} }], ports: [tcp(m.port)] }],
                egress: [dns, toTrackingServer],
            },
        }, child));

        const defaultDeny = new k8s.networking.v1.NetworkPolicy(`${name}-default-deny`, {
            metadata: metadata("default-deny-network-policy"),
            spec: {
                podSelector: {},
                policyTypes: ["Ingress", "Egress"],
                ingress: [],
                egress: [],
            },
        }, { ...child, dependsOn: [...postgres, server, ...jobs, rollout, ...grants, ...models] });

        this.policyNames = pulumi.all([...postgres, server, ...jobs, rollout, ...grants, ...models, defaultDeny].map((p) => p.metadata.name));
        this.registerOutputs({ policyNames: this.policyNames });
    }
}
