import { expect } from "chai";
import { DNS_NAMESPACE, dnsEgress, s3EgressPorts } from "../components/networkPolicies";
import { describe as describeFindings, rulesOf } from "../policy/checks/findings";
import { NETWORK_RULES, networkIsolationFindings, selects } from "../policy/checks/networkPolicy";
import { podTemplates } from "../policy/checks/podSecurity";
import { connectionAllowed, Endpoint, PodEndpoint } from "./support/networkSim";
import { RenderedRun, renderedRun, RUN_LABELS } from "./support/runs";
import { kubernetesManifests } from "../scripts/render";
import { runProgram, stackConfig } from "./harness";
import { PROJECT, parseConfig } from "../components/config";

const podsOf = (objects: readonly any[], kind: string, name?: RegExp): PodEndpoint => {
    const obj = objects.find((o) => o.kind === kind && (name === undefined || name.test(o.metadata.name)));
    return { namespace: obj.metadata.namespace, labels: podTemplates(obj)[0]!.labels };
};

describe("NetworkPolicies", () => {
    for (const label of RUN_LABELS) {
        describe(`${label} run`, () => {
            let r: RenderedRun;
            let policies: any[];
            let server: PodEndpoint, migration: PodEndpoint, postgres: PodEndpoint, backup: PodEndpoint, restore: PodEndpoint;
            // The schema rollout's two Jobs: they stop and restart the writers through the API server.
            let quiesce: PodEndpoint, resume: PodEndpoint;
            let stranger: PodEndpoint, otherNamespace: PodEndpoint, dns: PodEndpoint;
            // The variant's served models and their grants CronJob; none on the shipped stacks.
            let models: PodEndpoint[], grants: PodEndpoint[];
            // The garbage collection CronJob: on dev and the variant, not on minikube.
            let gc: PodEndpoint[];
            const internet: Endpoint = { ip: "52.216.8.1" };
            before(async () => {
                r = await renderedRun(label);
                policies = r.objects.filter((o) => o.kind === "NetworkPolicy");
                server = podsOf(r.objects, "Deployment", /-tracking-server$/);
                migration = podsOf(r.objects, "Job", /^mlflow-migrate-/);
                quiesce = podsOf(r.objects, "Job", /^mlflow-rollout-quiesce-/);
                resume = podsOf(r.objects, "Job", /^mlflow-rollout-resume-/);
                postgres = podsOf(r.objects, "StatefulSet");
                backup = podsOf(r.objects, "CronJob", /backup$/);
                restore = podsOf(r.objects, "CronJob", /restore$/);
                stranger = { namespace: server.namespace, labels: { "app.kubernetes.io/name": "debug-shell" } };
                otherNamespace = { namespace: "data-science", labels: { app: "notebook" } };
                dns = { namespace: DNS_NAMESPACE, labels: { "k8s-app": "kube-dns" } };
                models = r.objects.filter((o) => o.kind === "Deployment" && o.metadata.name.startsWith("mlflow-model-"))
                    .map((o) => podsOf(r.objects, "Deployment", new RegExp(`^${o.metadata.name}$`)));
                grants = r.objects.some((o) => o.kind === "CronJob" && /serving-grants$/.test(o.metadata.name))
                    ? [podsOf(r.objects, "CronJob", /serving-grants$/)] : [];
                expect(models.length, "the variant serves two models").to.equal(label === "variant" ? 2 : 0);
                expect(grants.length).to.equal(models.length > 0 ? 1 : 0);
                gc = r.objects.some((o) => o.kind === "CronJob" && /^mlflow-gc$/.test(o.metadata.name))
                    ? [podsOf(r.objects, "CronJob", /^mlflow-gc$/)] : [];
                expect(gc.length, "gcSchedule is set on dev and the variant only").to.equal(["dev", "variant"].includes(label) ? 1 : 0);
            });

            it("creates seven policies in the stack's namespace, and one per served model, for their grants and for garbage collection, children of one component using the stack's provider", () => {
                // PostgreSQL, the server, the migration, backups, restores, the schema rollout, the default deny.
                expect(policies).to.have.length(7 + models.length + grants.length + gc.length);
                const recorded = r.run.ofType("kubernetes:networking.k8s.io/v1:NetworkPolicy");
                const component = r.run.one("mlflow-k8s:kubernetes:NetworkPolicies");
                for (const np of recorded) {
                    expect(np.parent).to.equal(component.urn);
                    expect(np.provider).to.match(/::pulumi:providers:kubernetes::/);
                    expect(np.inputs.metadata.namespace).to.equal(r.run.outputs.namespaceName);
                }
            });

            it("denies all ingress and egress by default, created after the allow rules", () => {
                const deny = policies.filter((p) => Object.keys(p.spec.podSelector).length === 0);
                expect(deny).to.have.length(1);
                expect(deny[0].spec).to.deep.equal({ podSelector: {}, policyTypes: ["Ingress", "Egress"], ingress: [], egress: [] });
                const recorded = r.run.ofType("kubernetes:networking.k8s.io/v1:NetworkPolicy");
                const denyUrn = recorded.find((p) => p.name.endsWith("-default-deny"))!;
                const others = recorded.filter((p) => p !== denyUrn).map((p) => p.urn);
                expect(denyUrn.dependencies).to.include.members(others);
            });

            it("gives each workload exactly one policy of its own besides the default deny", () => {
                for (const pod of [server, migration, postgres, backup, restore, quiesce, resume, ...models, ...grants, ...gc]) {
                    const own = policies.filter((p) => Object.keys(p.spec.podSelector).length > 0 && selects(p.spec.podSelector, pod.labels));
                    expect(own, JSON.stringify(pod.labels)).to.have.length(1);
                }
                const rolloutPolicy = (pod: PodEndpoint) => policies.find((p) => Object.keys(p.spec.podSelector).length > 0 && selects(p.spec.podSelector, pod.labels));
                expect(rolloutPolicy(quiesce), "quiesce and resume share the rollout's policy").to.equal(rolloutPolicy(resume));
            });

            it("lets only the tracking server, the migration Job, the schema rollout, backups, restores, the serving grants and garbage collection reach PostgreSQL, on 5432 only", () => {
                for (const client of [server, migration, quiesce, resume, backup, restore, ...grants, ...gc]) {
                    expect(connectionAllowed(r.objects, client, postgres, 5432), JSON.stringify(client.labels)).to.equal(true);
                }
                for (const model of models) {
                    expect(connectionAllowed(r.objects, model, postgres, 5432), "a model server has no business with the database").to.equal(false);
                }
                expect(connectionAllowed(r.objects, server, postgres, 5433)).to.equal(false);
                expect(connectionAllowed(r.objects, stranger, postgres, 5432)).to.equal(false);
                expect(connectionAllowed(r.objects, otherNamespace, postgres, 5432)).to.equal(false);
                expect(connectionAllowed(r.objects, postgres, postgres, 5432)).to.equal(false);
            });

            it("lets PostgreSQL open no connection at all", () => {
                expect(connectionAllowed(r.objects, postgres, dns, 53, "UDP")).to.equal(false);
                expect(connectionAllowed(r.objects, postgres, internet, 443)).to.equal(false);
                expect(connectionAllowed(r.objects, postgres, server, 5000)).to.equal(false);
            });

            it("opens the server's container port to pods anywhere in the cluster, and nothing else", () => {
                const port = r.objects.find((o) => o.kind === "Deployment" && o.metadata.name.endsWith("-tracking-server")).spec.template.spec.containers[0].ports[0].containerPort;
                expect(port).to.equal(5000);
                expect(connectionAllowed(r.objects, otherNamespace, server, port)).to.equal(true);
                expect(connectionAllowed(r.objects, stranger, server, port)).to.equal(false, "egress of an unlisted pod in the namespace is denied");
                expect(connectionAllowed(r.objects, otherNamespace, server, 22)).to.equal(false);
                expect(connectionAllowed(r.objects, internet, server, port)).to.equal(false);
                expect(connectionAllowed(r.objects, otherNamespace, migration, port)).to.equal(false);
            });

            it("opens the server's metrics port to scrapers anywhere in the cluster, and to no one outside", () => {
                const containers = r.objects.find((o) => o.kind === "Deployment" && o.metadata.name.endsWith("-tracking-server")).spec.template.spec.containers;
                const port = containers.find((c: any) => c.name === "metrics").ports[0].containerPort;
                expect(port).to.equal(9090);
                const prometheus: PodEndpoint = { namespace: "monitoring", labels: { "app.kubernetes.io/name": "prometheus" } };
                expect(connectionAllowed(r.objects, prometheus, server, port)).to.equal(true);
                expect(connectionAllowed(r.objects, otherNamespace, server, port)).to.equal(true);
                expect(connectionAllowed(r.objects, internet, server, port)).to.equal(false);
                expect(connectionAllowed(r.objects, stranger, server, port)).to.equal(false, "egress of an unlisted pod in the namespace is denied");
                // Only the server's pods have the port open: PostgreSQL and the Jobs stay closed on it.
                expect(connectionAllowed(r.objects, prometheus, postgres, port)).to.equal(false);
                expect(connectionAllowed(r.objects, prometheus, migration, port)).to.equal(false);
                expect(connectionAllowed(r.objects, prometheus, server, port + 1)).to.equal(false);
            });

            it("limits the server's egress to DNS in kube-system, PostgreSQL and HTTPS", () => {
                expect(connectionAllowed(r.objects, server, dns, 53, "UDP")).to.equal(true);
                expect(connectionAllowed(r.objects, server, dns, 53, "TCP")).to.equal(true);
                expect(connectionAllowed(r.objects, server, { namespace: "default", labels: { "k8s-app": "kube-dns" } }, 53, "UDP")).to.equal(false);
                expect(connectionAllowed(r.objects, server, internet, 443)).to.equal(true);
                expect(connectionAllowed(r.objects, server, internet, 80)).to.equal(false);
                expect(connectionAllowed(r.objects, server, otherNamespace, 443)).to.equal(false);
            });

            it("limits the egress of the migration Job, backups, restores and garbage collection to DNS, PostgreSQL and HTTPS (S3), and admits nothing", () => {
                for (const job of [migration, backup, restore, ...gc]) {
                    const what = JSON.stringify(job.labels);
                    expect(connectionAllowed(r.objects, job, dns, 53, "UDP"), what).to.equal(true);
                    expect(connectionAllowed(r.objects, job, postgres, 5432), what).to.equal(true);
                    expect(connectionAllowed(r.objects, job, internet, 443), what).to.equal(true);
                    expect(connectionAllowed(r.objects, job, internet, 80), what).to.equal(false);
                    expect(connectionAllowed(r.objects, job, server, 5000), what).to.equal(false);
                    expect(connectionAllowed(r.objects, otherNamespace, job, 8080), what).to.equal(false);
                }
                for (const job of gc) {
                    // It deletes artifacts in S3 itself, as the server's identity: it never calls the server.
                    expect(connectionAllowed(r.objects, job, server, 5000), "gc does not go through the tracking server").to.equal(false);
                    expect(connectionAllowed(r.objects, job, dns, 53, "TCP")).to.equal(true);
                    expect(connectionAllowed(r.objects, job, otherNamespace, 443), "HTTPS to the outside, not to pods").to.equal(false);
                }
            });

            it("opens each model server's scoring port to pods anywhere in the cluster, and lets it reach only DNS and the tracking server", () => {
                for (const model of models) {
                    const what = JSON.stringify(model.labels);
                    expect(connectionAllowed(r.objects, otherNamespace, model, 8080), what).to.equal(true);
                    expect(connectionAllowed(r.objects, otherNamespace, model, 5000), what).to.equal(false);
                    expect(connectionAllowed(r.objects, internet, model, 8080), what).to.equal(false);
                    expect(connectionAllowed(r.objects, model, dns, 53, "UDP"), what).to.equal(true);
                    expect(connectionAllowed(r.objects, model, server, 5000), what).to.equal(true);
                    expect(connectionAllowed(r.objects, model, server, 8080), what).to.equal(false);
                    expect(connectionAllowed(r.objects, model, internet, 443), "the model comes through the tracking server, not from S3").to.equal(false);
                    expect(connectionAllowed(r.objects, model, otherNamespace, 8080), what).to.equal(false);
                    for (const other of models.filter((m) => m !== model)) {
                        expect(connectionAllowed(r.objects, model, other, 8080), "model servers do not call each other").to.equal(false);
                    }
                }
                for (const job of grants) {
                    expect(connectionAllowed(r.objects, job, internet, 443), "grants are kept in the database alone").to.equal(false);
                    expect(connectionAllowed(r.objects, job, server, 5000)).to.equal(false);
                    expect(connectionAllowed(r.objects, otherNamespace, job, 8080)).to.equal(false);
                }
            });

            it("limits the schema rollout's egress to exactly DNS, PostgreSQL and the API server's endpoints from config, and admits nothing", () => {
                const policy = policies.find((p) => selects(p.spec.podSelector, quiesce.labels) && Object.keys(p.spec.podSelector).length > 0);
                const config = stackConfig(label === "dev" ? "dev" : "minikube");
                const apiServer = parseConfig((key) => config[`${PROJECT}:${key}`]).network.apiServer;
                // minikube (and the variants, which are minikube with settings turned) 8443; dev the default 443.
                expect(apiServer).to.deep.equal({ cidrs: ["0.0.0.0/0", "::/0"], port: label === "dev" ? 443 : 8443 });
                const postgresPolicy = policies.find((p) => selects(p.spec.podSelector, postgres.labels) && Object.keys(p.spec.podSelector).length > 0);
                expect(policy.metadata.name).to.match(/^mlflow-network-schema-rollout-[0-9a-f]{8}$/);
                expect(policy.spec).to.deep.equal({
                    podSelector: { matchLabels: { "app.kubernetes.io/name": "schema-rollout", "app.kubernetes.io/instance": "mlflow" } },
                    policyTypes: ["Ingress", "Egress"],
                    ingress: [],
                    egress: [
                        dnsEgress(config[`${PROJECT}:nodeLocalDnsAddress`] || undefined),
                        { to: [{ podSelector: postgresPolicy.spec.podSelector }], ports: [{ protocol: "TCP", port: 5432 }] },
                        { to: [{ ipBlock: { cidr: "0.0.0.0/0" } }, { ipBlock: { cidr: "::/0" } }], ports: [{ protocol: "TCP", port: apiServer.port }] },
                    ],
                });
            });

            it("lets the schema rollout reach PostgreSQL and the API server, and not the tracking server, S3 elsewhere, or another pod", () => {
                const apiServer: Endpoint = { ip: label === "dev" ? "10.0.12.34" : "192.168.49.2" };
                const apiPort = label === "dev" ? 443 : 8443;
                for (const job of [quiesce, resume]) {
                    const what = JSON.stringify(job.labels);
                    expect(connectionAllowed(r.objects, job, dns, 53, "UDP"), what).to.equal(true);
                    expect(connectionAllowed(r.objects, job, postgres, 5432), what).to.equal(true);
                    expect(connectionAllowed(r.objects, job, postgres, 5433), what).to.equal(false);
                    expect(connectionAllowed(r.objects, job, apiServer, apiPort), `${what}: the API server`).to.equal(true);
                    expect(connectionAllowed(r.objects, job, apiServer, 6443), `${what}: another port`).to.equal(false);
                    expect(connectionAllowed(r.objects, job, server, 5000), `${what}: it scales the server, never calls it`).to.equal(false);
                    expect(connectionAllowed(r.objects, job, server, 9090), what).to.equal(false);
                    expect(connectionAllowed(r.objects, job, internet, 80), what).to.equal(false);
                    expect(connectionAllowed(r.objects, job, otherNamespace, apiPort), `${what}: pods are not the API server`).to.equal(false);
                    for (const model of models) {
                        expect(connectionAllowed(r.objects, job, model, 8080), what).to.equal(false);
                    }
                    // Nothing connects to it: not the server, not another namespace, not the internet.
                    expect(connectionAllowed(r.objects, server, job, 8080), what).to.equal(false);
                    expect(connectionAllowed(r.objects, otherNamespace, job, 8080), what).to.equal(false);
                    expect(connectionAllowed(r.objects, internet, job, apiPort), what).to.equal(false);
                    // S3 is HTTPS on 443: closed where the API server listens elsewhere (minikube's 8443). On
                    // dev the API server's default, every address on 443, lets HTTPS out to anywhere,
                    // S3 included, until kubeApiServerCidrs is narrowed (below, "fitted to the cluster").
                    expect(connectionAllowed(r.objects, job, internet, 443), `${what}: S3`).to.equal(label === "dev");
                }
            });

            it("passes the isolation rules", () => {
                const findings = networkIsolationFindings(r.objects);
                expect(findings, describeFindings(findings)).to.deep.equal([]);
            });
        });
    }

    describe("with an Ingress and an S3 emulator (variant run)", () => {
        it("names the ingress controller's namespace and opens the emulator's port", async () => {
            const r = await renderedRun("variant");
            const server = r.objects.find((o) => o.kind === "NetworkPolicy" && o.metadata.name.includes("tracking-server"));
            // The API port from anywhere in the cluster, the metrics port likewise, then the controller's namespace.
            expect(server.spec.ingress.map((i: any) => [i.from[0].namespaceSelector, i.ports.map((p: any) => p.port)])).to.deep.equal([
                [{}, [5000]], [{}, [9090]], [{ matchLabels: { "kubernetes.io/metadata.name": "ingress-nginx" } }, [5000]],
            ]);
            const ports = server.spec.egress.at(-1).ports.map((p: any) => p.port);
            expect(ports).to.deep.equal([443, 5000]);
        });

        it("has no ingress controller rule on the stacks without an Ingress", async () => {
            for (const stack of ["dev", "minikube"]) {
                const r = await renderedRun(stack);
                const server = r.objects.find((o) => o.kind === "NetworkPolicy" && o.metadata.name.includes("tracking-server"));
                // The API port and the metrics port, both from pods anywhere in the cluster.
                expect(server.spec.ingress.map((i: any) => i.ports[0].port), stack).to.deep.equal([5000, 9090]);
            }
        });
    });

    describe("fitted to the cluster by config", () => {
        it("admits the configured ingress controller namespace, and load balancers from the source ranges only", async () => {
            const run = await runProgram("dev", { ingressHost: "mlflow.example.com", ingressControllerNamespace: "traefik", ingressSourceRanges: "10.20.0.0/16" });
            const objects = kubernetesManifests(run).map((m) => m.object);
            const server = podsOf(objects, "Deployment");
            const port = 5000;
            expect(connectionAllowed(objects, { namespace: "traefik", labels: { app: "traefik" } }, server, port)).to.equal(true);
            expect(connectionAllowed(objects, { ip: "10.20.3.4" }, server, port), "a load balancer in IP mode").to.equal(true);
            expect(connectionAllowed(objects, { ip: "10.21.3.4" }, server, port)).to.equal(false);
            expect(connectionAllowed(objects, { ip: "10.20.3.4" }, server, 22)).to.equal(false);
        });

        it("lets the schema rollout reach exactly the API server's endpoints and port set in config, and not S3", async () => {
            const run = await runProgram("dev", { kubeApiServerCidrs: "10.0.12.0/24,10.0.13.7/32", kubeApiServerPort: 6443 });
            const objects = kubernetesManifests(run).map((m) => m.object);
            const policy = objects.find((o) => o.kind === "NetworkPolicy" && /schema-rollout/.test(o.metadata.name));
            expect(policy!.spec.egress.at(-1)).to.deep.equal({
                to: [{ ipBlock: { cidr: "10.0.12.0/24" } }, { ipBlock: { cidr: "10.0.13.7/32" } }], ports: [{ protocol: "TCP", port: 6443 }],
            });
            for (const job of [podsOf(objects, "Job", /^mlflow-rollout-quiesce-/), podsOf(objects, "Job", /^mlflow-rollout-resume-/)]) {
                expect(connectionAllowed(objects, job, { ip: "10.0.12.200" }, 6443)).to.equal(true);
                expect(connectionAllowed(objects, job, { ip: "10.0.13.7" }, 6443)).to.equal(true);
                expect(connectionAllowed(objects, job, { ip: "10.0.13.8" }, 6443), "outside the CIDRs").to.equal(false);
                expect(connectionAllowed(objects, job, { ip: "10.0.12.200" }, 443), "another port").to.equal(false);
                expect(connectionAllowed(objects, job, { ip: "52.216.8.1" }, 443), "S3").to.equal(false);
            }
            // The other workloads do not get the API server.
            const migration = podsOf(objects, "Job", /^mlflow-migrate-/);
            expect(connectionAllowed(objects, migration, { ip: "10.0.12.200" }, 6443)).to.equal(false);
            expect(connectionAllowed(objects, podsOf(objects, "Deployment"), { ip: "10.0.12.200" }, 6443)).to.equal(false);
        });

        it("lets pods resolve names through NodeLocal DNSCache, or only kube-system when it is not used", async () => {
            const withCache = (await renderedRun("dev")).objects;
            const server = podsOf(withCache, "Deployment");
            expect(connectionAllowed(withCache, server, { ip: "169.254.20.10" }, 53, "UDP")).to.equal(true);
            expect(connectionAllowed(withCache, server, { ip: "169.254.20.10" }, 80)).to.equal(false);
            const without = kubernetesManifests(await runProgram("dev", { nodeLocalDnsAddress: "" })).map((m) => m.object);
            expect(connectionAllowed(without, podsOf(without, "Deployment"), { ip: "169.254.20.10" }, 53, "UDP")).to.equal(false);
        });
    });

    describe("s3EgressPorts", () => {
        it("always opens 443 and adds an endpoint's port, explicit or by scheme", () => {
            expect(s3EgressPorts()).to.deep.equal([443]);
            expect(s3EgressPorts("http://minio.storage:9000")).to.deep.equal([443, 9000]);
            expect(s3EgressPorts("http://127.0.0.1")).to.deep.equal([443, 80]);
            expect(s3EgressPorts("https://s3.example.com")).to.deep.equal([443]);
        });
    });

    describe("isolation rules on broken fixtures", () => {
        const ns = "mlflow";
        const workload = (labels: Record<string, string>) => ({
            apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "app", namespace: ns },
            spec: { template: { metadata: { labels }, spec: { containers: [] } } },
        });
        const denyAll = {
            kind: "NetworkPolicy", metadata: { name: "deny", namespace: ns },
            spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"], ingress: [], egress: [] },
        };
        const isolationRules = (objects: any[]) => rulesOf(networkIsolationFindings(objects));

        it("passes an isolated namespace", () => {
            expect(isolationRules([workload({ app: "a" }), denyAll])).to.deep.equal([]);
        });
        it("fails a namespace with pods and no default deny", () => {
            const egressOnly = { ...denyAll, spec: { podSelector: {}, policyTypes: ["Egress"], egress: [] } };
            expect(isolationRules([workload({ app: "a" }), egressOnly])).to.deep.equal(["netpol.defaultDenyIngress"]);
        });
        it("fails pods whose egress no policy restricts", () => {
            const ingressOnly = { ...denyAll, spec: { podSelector: {}, policyTypes: ["Ingress"], ingress: [] } };
            expect(isolationRules([workload({ app: "a" }), ingressOnly])).to.deep.equal(["netpol.egressRestricted"]);
        });
        it("fails a default deny in another namespace", () => {
            const elsewhere = { ...denyAll, metadata: { name: "deny", namespace: "other" } };
            expect(isolationRules([workload({ app: "a" }), elsewhere])).to.deep.equal(["netpol.defaultDenyIngress", "netpol.egressRestricted"]);
        });
        it("fails ingress from anywhere", () => {
            const open = { kind: "NetworkPolicy", metadata: { name: "open", namespace: ns }, spec: { podSelector: { matchLabels: { app: "a" } }, ingress: [{ ports: [{ port: 5000 }] }] } };
            const world = { kind: "NetworkPolicy", metadata: { name: "world", namespace: ns }, spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "0.0.0.0/0" } }] }] } };
            expect(isolationRules([workload({ app: "a" }), denyAll, open])).to.deep.equal(["netpol.ingressFromAnywhere"]);
            expect(isolationRules([workload({ app: "a" }), denyAll, world])).to.deep.equal(["netpol.ingressFromAnywhere"]);
        });
        it("fails egress to anywhere on any port", () => {
            const open = { kind: "NetworkPolicy", metadata: { name: "open", namespace: ns }, spec: { podSelector: {}, policyTypes: ["Egress"], egress: [{}] } };
            expect(isolationRules([workload({ app: "a" }), denyAll, open])).to.deep.equal(["netpol.egressAnywhere"]);
        });
        it("has a fixture for every rule above", () => {
            expect([...NETWORK_RULES].sort()).to.deep.equal(["netpol.defaultDenyIngress", "netpol.egressAnywhere", "netpol.egressRestricted", "netpol.ingressFromAnywhere"]);
        });
        it("understands matchExpressions", () => {
            const labels = { app: "a", tier: "web" };
            expect(selects({ matchExpressions: [{ key: "tier", operator: "In", values: ["web"] }] }, labels)).to.equal(true);
            expect(selects({ matchExpressions: [{ key: "tier", operator: "NotIn", values: ["web"] }] }, labels)).to.equal(false);
            expect(selects({ matchExpressions: [{ key: "zone", operator: "Exists" }] }, labels)).to.equal(false);
            expect(selects({ matchExpressions: [{ key: "zone", operator: "DoesNotExist" }] }, labels)).to.equal(true);
            expect(selects({ matchLabels: { app: "b" } }, labels)).to.equal(false);
            expect(selects({}, labels)).to.equal(true);
        });
    });
});
