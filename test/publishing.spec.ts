/**
 * Publishing and scraping the server (README, "Publishing the server" and "Monitoring"): an Ingress
 * with its controller's annotations, or an HTTPRoute to a Gateway, with the same host wiring into the
 * Host check and CORS; an optional ServiceMonitor that is absent unless asked for.
 */
import { expect } from "chai";
import { NGINX_INGRESS_ANNOTATIONS, PROJECT, parseConfig } from "../components/config";
import { METRICS_PATH } from "../components/mlflowSettings";
import { publicEndpoint, publicUrl } from "../components/publishing";
import { GATEWAY_VARIANT, VARIANT, runProgram, stackConfig, variantRun } from "./harness";
import { expectRejected as expectRejectedBy } from "./support/configErrors";
import { RUN_LABELS, renderedRun } from "./support/runs";
import { schemaErrors } from "./support/schema";
import { kubernetesManifests } from "../scripts/render";

const INGRESS = "kubernetes:networking.k8s.io/v1:Ingress";
const ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute";
const MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor";

function parse(overrides: Record<string, string | undefined>) {
    const config = stackConfig("minikube", overrides);
    return parseConfig((key) => config[`${PROJECT}:${key}`]);
}

function expectRejected(overrides: Record<string, string>, key: string, allowed: RegExp): string {
    return expectRejectedBy(() => parse(overrides), JSON.stringify(overrides), key, allowed);
}

/** The value after a flag in the server container's arguments. */
function flag(objects: readonly any[], name: string): string {
    const server = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "mlflow-tracking-server");
    const args: string[] = server.spec.template.spec.containers[0].args;
    return args[args.indexOf(name) + 1]!;
}

const host = { ingressHost: "mlflow.example.com" };

describe("publishing the server", () => {
    describe("config", () => {
        it("publishes ingressHost through an Ingress by default, through an HTTPRoute with gatewayName", () => {
            expect(parse(host).mlflow.httpRoute).to.equal(undefined);
            const c = parse({ ...host, gatewayName: "shared", gatewayNamespace: "gateway-system", gatewaySectionName: "https" });
            expect(c.mlflow.ingress).to.equal(undefined);
            expect(c.mlflow.httpRoute).to.deep.equal({
                host: "mlflow.example.com", gateway: { name: "shared", namespace: "gateway-system", sectionName: "https" }, https: true, requestTimeout: "1h",
            });
            expect(parse({ ...host, gatewayName: "shared", gatewayScheme: "http" }).mlflow.httpRoute!.https).to.equal(false);
        });

        it("refuses a Gateway without a host, or with the Ingress-only keys", () => {
            expectRejected({ gatewayName: "shared" }, "ingressHost", /required with mlflow-k8s:gatewayName/);
            expectRejected({ ...host, gatewayName: "shared", ingressClassName: "nginx" }, "ingressClassName", /the Gateway's listeners choose the controller/);
            expectRejected({ ...host, gatewayName: "shared", ingressTlsSecretName: "tls" }, "ingressTlsSecretName", /hold the certificate/);
            expectRejected({ ...host, gatewayName: "shared", ingressAnnotations: "{}" }, "ingressAnnotations", /carries its timeouts in its spec/);
        });

        it("refuses the Gateway's qualifiers without a Gateway, and bad names", () => {
            expectRejected({ ...host, gatewayNamespace: "gateway-system" }, "gatewayNamespace", /only with mlflow-k8s:gatewayName/);
            expectRejected({ ...host, gatewaySectionName: "https" }, "gatewaySectionName", /only with mlflow-k8s:gatewayName/);
            expectRejected({ ...host, gatewayName: "Shared_GW" }, "gatewayName", /DNS-1123 subdomain/);
            expectRejected({ ...host, gatewayName: "shared", gatewayNamespace: "gateway.system" }, "gatewayNamespace", /DNS-1123 label/);
            expectRejected({ ...host, gatewayName: "shared", gatewayScheme: "tcp" }, "gatewayScheme", /one of https, http/);
            for (const bad of ["10 minutes", "1d", "600", "-1s", "1h1h1h1h1h"]) {
                expectRejected({ ...host, gatewayName: "shared", gatewayRequestTimeout: bad }, "gatewayRequestTimeout", /a Gateway API duration/);
            }
        });

        it("gives the Ingress ingress-nginx's annotations unless ingressAnnotations says otherwise; {} gives none", () => {
            expect(parse(host).mlflow.ingress!.annotations).to.deep.equal(NGINX_INGRESS_ANNOTATIONS);
            expect(parse({ ...host, ingressAnnotations: "{}" }).mlflow.ingress!.annotations).to.deep.equal({});
            const traefik = { "traefik.ingress.kubernetes.io/router.entrypoints": "websecure", "example.com/timeout": 600 };
            expect(parse({ ...host, ingressAnnotations: JSON.stringify(traefik) }).mlflow.ingress!.annotations)
                .to.deep.equal({ "traefik.ingress.kubernetes.io/router.entrypoints": "websecure", "example.com/timeout": "600" });
            expectRejected({ ...host, ingressAnnotations: "proxy-body-size=0" }, "ingressAnnotations",
                /a map set in the stack file .* such as \{ traefik\.ingress\.kubernetes\.io\/router\.entrypoints: websecure \} for your ingress controller, \{\} for none/);
            expectRejected({ ...host, ingressAnnotations: JSON.stringify(["proxy-body-size=0"]) }, "ingressAnnotations", /a map of strings, such as/);
            expectRejected({ ...host, ingressAnnotations: JSON.stringify({ "bad key!": "x" }) }, "ingressAnnotations.bad key!", /an annotation key/);
            expectRejected({ ...host, ingressAnnotations: JSON.stringify({ a: { b: 1 } }) }, "ingressAnnotations.a", /a string/);
            expectRejected({ ingressAnnotations: "{}" }, "ingressAnnotations", /there is no Ingress to annotate/);
        });

        it("asks for a ServiceMonitor with serviceMonitor only, its labels label keys", () => {
            expect(parse({}).monitoring.serviceMonitor).to.equal(undefined);
            expect(parse({ serviceMonitor: "true", serviceMonitorLabels: JSON.stringify({ release: "prom" }) }).monitoring.serviceMonitor)
                .to.deep.equal({ labels: { release: "prom" } });
            expectRejected({ serviceMonitorLabels: JSON.stringify({ release: "prom" }) }, "serviceMonitorLabels", /only with mlflow-k8s:serviceMonitor true/);
            expectRejected({ serviceMonitor: "true", serviceMonitorLabels: JSON.stringify({ "app.kubernetes.io/name": "x" }) },
                "serviceMonitorLabels.app.kubernetes.io/name", /not under app.kubernetes.io\//);
            expectRejected({ serviceMonitor: "yes" }, "serviceMonitor", /true or false/);
        });
    });

    describe("an HTTPRoute (the gateway run)", () => {
        it("attaches to the configured Gateway's listener, for the host, to mlflow-service, with the proxy timeout and no Ingress", async () => {
            const run = await variantRun("gateway");
            expect(run.ofType(INGRESS)).to.deep.equal([]);
            const route = run.one(ROUTE);
            expect(route.inputs.metadata.namespace).to.equal("mlflow");
            expect(route.inputs.spec.parentRefs).to.deep.equal([{ group: "gateway.networking.k8s.io", kind: "Gateway", name: "shared", namespace: "gateway-system", sectionName: "https" }]);
            expect(route.inputs.spec.hostnames).to.deep.equal(["mlflow.example.com"]);
            const [rule] = route.inputs.spec.rules;
            expect(rule.matches, "the server's static prefix").to.deep.equal([{ path: { type: "PathPrefix", value: GATEWAY_VARIANT.mlflowStaticPrefix } }]);
            expect(rule.backendRefs).to.deep.equal([{ group: "", kind: "Service", name: "mlflow-service", port: 80, weight: 1 }]);
            expect(rule.timeouts, "gatewayRequestTimeout's default").to.deep.equal({ request: "1h", backendRequest: "1h" });
            const unlimited = await runProgram("minikube", { ...GATEWAY_VARIANT, gatewayRequestTimeout: "0s" });
            expect(unlimited.one(ROUTE).inputs.spec.rules[0].timeouts, "0s: no limit, as Gateway API defines it").to.deep.equal({ request: "0s", backendRequest: "0s" });
            expect(run.outputs.ingressUrl).to.equal("https://mlflow.example.com/mlflow");
        });

        it("wires the host into --allowed-hosts and CORS exactly as an Ingress with TLS does", async () => {
            const route = (await renderedRun("gateway")).objects;
            const ingressRun = await runProgram("minikube", {
                ...host, ingressTlsSecretName: "tls", corsAllowedOrigins: GATEWAY_VARIANT.corsAllowedOrigins, ingressControllerNamespace: "envoy-gateway-system",
                mlflowStaticPrefix: GATEWAY_VARIANT.mlflowStaticPrefix,
            });
            const ingress = kubernetesManifests(ingressRun).map((m) => m.object);
            for (const name of ["--allowed-hosts", "--cors-allowed-origins"]) {
                expect(flag(route, name), name).to.equal(flag(ingress, name));
            }
            expect(flag(route, "--cors-allowed-origins").split(",")).to.include.members(["https://mlflow.example.com", "https://notebooks.example.com"]);
            expect(flag(route, "--allowed-hosts").split(",")).to.include("mlflow.example.com");
            const plain = kubernetesManifests(await runProgram("minikube", { ...GATEWAY_VARIANT, gatewayScheme: "http" })).map((m) => m.object);
            expect(flag(plain, "--cors-allowed-origins").split(",")).to.include("http://mlflow.example.com").and.not.include("https://mlflow.example.com");
        });

        it("admits the Gateway's proxies (ingressControllerNamespace) to the server's port", async () => {
            const { objects } = await renderedRun("gateway");
            const policy = objects.find((o) => o.kind === "NetworkPolicy" && o.metadata.name.startsWith("mlflow-network-tracking-server"));
            const from = policy.spec.ingress.flatMap((r: any) => r.from ?? []);
            expect(from).to.deep.include({ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "envoy-gateway-system" } } });
        });

        it("is valid against the Gateway API schema, which refuses a broken route", async () => {
            const route = (await renderedRun("gateway")).objects.find((o) => o.kind === "HTTPRoute");
            expect(schemaErrors(route)).to.deep.equal([]);
            const broken = structuredClone(route);
            broken.spec.rules[0].timeouts.request = "ten minutes";
            expect(schemaErrors(broken).join()).to.include("/spec/rules/0/timeouts/request");
            const noParent = structuredClone(route);
            noParent.spec.parentRefs = [{ namespace: "gateway-system" }];
            expect(schemaErrors(noParent).join()).to.include("name");
        });
    });

    describe("an Ingress", () => {
        it("carries the configured annotations instead of nginx's", async () => {
            const run = await runProgram("minikube", { ...host, ingressAnnotations: JSON.stringify({ "traefik.ingress.kubernetes.io/router.entrypoints": "websecure" }) });
            expect(run.one(INGRESS).inputs.metadata.annotations).to.deep.equal({ "traefik.ingress.kubernetes.io/router.entrypoints": "websecure" });
            expect(run.ofType(ROUTE)).to.deep.equal([]);
            const variant = await variantRun();
            expect(variant.one(INGRESS).inputs.metadata.annotations, "the variant leaves them unset").to.deep.equal(NGINX_INGRESS_ANNOTATIONS);
        });
    });

    describe("a static prefix (mlflowStaticPrefix)", () => {
        it("is refused unless a clean absolute path without a trailing slash", () => {
            for (const bad of ["mlflow", "/mlflow/", "/", "/ml flow", "/mlflow?x=1", "//mlflow", `/${"a".repeat(128)}`]) {
                expectRejected({ mlflowStaticPrefix: bad }, "mlflowStaticPrefix", /a path of segments .* such as \/mlflow/);
            }
            expect(parse({ mlflowStaticPrefix: "/tools/mlflow-2.0" }).mlflow.staticPrefix).to.equal("/tools/mlflow-2.0");
            expect(parse({}).mlflow.staticPrefix).to.equal(undefined);
        });

        it("moves the server's routes, its probes, the route's path and every URL under the prefix (the gateway run)", async () => {
            const { objects, run } = await renderedRun("gateway");
            expect(flag(objects, "--static-prefix")).to.equal("/mlflow");
            const server = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "mlflow-tracking-server").spec.template.spec.containers[0];
            expect(server.startupProbe.httpGet.path).to.equal("/mlflow/health");
            expect(server.readinessProbe.httpGet.path).to.equal("/mlflow/health");
            expect(run.outputs.localUrl).to.equal("http://localhost:8080/mlflow");
            expect(run.outputs.internalTrackingUri).to.equal("http://mlflow-service.mlflow.svc.cluster.local:80/mlflow");
        });

        it("leaves the root to the server without one, and gives an Ingress the prefix as its path", async () => {
            const { objects, run } = await renderedRun("minikube");
            expect(objects.find((o) => o.kind === "Deployment" && o.metadata.name === "mlflow-tracking-server").spec.template.spec.containers[0].args)
                .to.not.include("--static-prefix");
            expect(run.outputs.localUrl).to.equal("http://localhost:8080");
            const ingress = await runProgram("minikube", { ...host, mlflowStaticPrefix: "/mlflow" });
            expect(ingress.one(INGRESS).inputs.spec.rules[0].http.paths[0]).to.include({ path: "/mlflow", pathType: "Prefix" });
            expect(ingress.outputs.ingressUrl).to.equal("http://mlflow.example.com/mlflow");
        });
    });

    describe("a ServiceMonitor", () => {
        for (const label of RUN_LABELS.filter((l) => l !== "variant")) {
            it(`is absent from the ${label} run, so clusters without Prometheus Operator's CRD need nothing`, async () => {
                const { objects, run } = await renderedRun(label);
                expect(run.ofType(MONITOR)).to.deep.equal([]);
                expect(objects.filter((o) => o.apiVersion === "monitoring.coreos.com/v1" || o.metadata.name === "mlflow-metrics")).to.deep.equal([]);
            });
        }

        it("selects only the headless metrics Service, whose port is the exporter's on the server's pods (the variant)", async () => {
            const { objects } = await renderedRun("variant");
            const [monitor, ...more] = objects.filter((o) => o.kind === "ServiceMonitor");
            expect(more).to.deep.equal([]);
            expect(monitor.metadata.labels.release, "serviceMonitorLabels").to.equal(JSON.parse(VARIANT.serviceMonitorLabels).release);
            const selected = objects.filter((o) => o.kind === "Service"
                && Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => o.metadata.labels?.[k] === v));
            expect(selected.map((s) => s.metadata.name)).to.deep.equal(["mlflow-metrics"]);
            const [service] = selected;
            expect(service.spec.clusterIP).to.equal("None");
            const [endpoint] = monitor.spec.endpoints;
            expect(endpoint).to.include({ port: "metrics", path: METRICS_PATH, scheme: "http" });
            const port = service.spec.ports.find((x: any) => x.name === endpoint.port);
            const server = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "mlflow-tracking-server");
            expect(server.spec.template.metadata.labels).to.include(service.spec.selector);
            const exporter = server.spec.template.spec.containers.find((c: any) => (c.ports ?? []).some((x: any) => x.name === port.targetPort));
            expect(exporter.name, "the port the monitor scrapes is the exporter's").to.equal("metrics");
            expect(exporter.ports[0].containerPort).to.equal(port.port);
            expect(endpoint.path, "the exporter's path").to.equal(METRICS_PATH);
            // One way to be scraped: a Prometheus that also reads the annotations would count every request twice.
            expect(server.spec.template.metadata.annotations).to.not.have.any.keys("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path");
        });

        it("is valid against Prometheus Operator's schema, which refuses a broken monitor", async () => {
            const monitor = (await renderedRun("variant")).objects.find((o) => o.kind === "ServiceMonitor");
            expect(schemaErrors(monitor)).to.deep.equal([]);
            const broken = structuredClone(monitor);
            broken.spec.endpoints[0].scheme = "gopher";
            expect(schemaErrors(broken).join()).to.include("/spec/endpoints/0/scheme");
        });
    });

    it("publicEndpoint and publicUrl: the Ingress's TLS or the Gateway's scheme makes the origin; nothing published, an empty URL", () => {
        const route = { host: "m.example.com", gateway: { name: "g" }, https: false, requestTimeout: "1h" };
        expect(publicUrl(publicEndpoint({ host: "m.example.com", tlsSecretName: "t", annotations: {} }, undefined))).to.equal("https://m.example.com");
        expect(publicUrl(publicEndpoint(undefined, route))).to.equal("http://m.example.com");
        expect(publicUrl(publicEndpoint(undefined, undefined))).to.equal("");
        expect(publicUrl(publicEndpoint(undefined, route), "/mlflow")).to.equal("http://m.example.com/mlflow");
        expect(publicUrl(undefined, "/mlflow"), "nothing published, even with a prefix").to.equal("");
    });
});
