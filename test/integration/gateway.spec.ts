/**
 * Contract test of publishing through Gateway API (`gatewayName`) and scraping through a
 * ServiceMonitor (`serviceMonitor`): the minikube stack rendered with an HTTPRoute for
 * `mlflow.example.com/mlflow` on a shared Gateway's TLS listener (the server under a static prefix)
 * and a ServiceMonitor, its server run for real. The Gateway's proxies forward the browser's Host and Origin unchanged, as the Ingress's do,
 * so requests with those headers straight to the pod show what the server admits behind the route.
 */
import { expect } from "chai";
import * as path from "path";
import { ROOT, GATEWAY_VARIANT } from "../harness";
import { call } from "./lib/load";
import { parseMetrics, sum } from "./lib/metrics";
import { CACHE, Platform, phase, printPhases, request } from "./lib/platform";
import { setPidFile, stopAll } from "./lib/processes";
import { TYPES } from "./lib/rendered";

const RUN = path.join(CACHE, "run-gateway");
const HOST = GATEWAY_VARIANT.ingressHost;
const PREFIX = GATEWAY_VARIANT.mlflowStaticPrefix;

describe("contract: the server published through an HTTPRoute to a Gateway, scraped through a ServiceMonitor", function () {
    this.timeout(600000);

    // One served model, whose download goes through the tracking server's in-cluster URI, prefix included.
    const p = new Platform({
        stack: "minikube", dir: RUN,
        overrides: { ...GATEWAY_VARIANT, serviceMonitor: true, servedModels: JSON.stringify([{ name: "iris", model: "models:/iris@champion" }]) },
    });
    const admin = () => `${p.admin.user}:${p.admin.password}`;
    const createExperiment = (name: string, origin?: string, host = HOST) => request(p.server.port, {
        path: `${PREFIX}/api/2.0/mlflow/experiments/create`, method: "POST", host, auth: admin(), json: { name },
        headers: origin === undefined ? {} : { Origin: origin },
    });

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        await phase("gateway variant: moto, render, provision, PostgreSQL, migration, server", () => p.bringUp());
    });

    after(async function () {
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it("renders an HTTPRoute on the Gateway's listener for the host, to the Service in front of the running server, and no Ingress", function () {
        expect(p.r.all("kubernetes:networking.k8s.io/v1:Ingress")).to.deep.equal([]);
        const [route, ...more] = p.r.all("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute");
        expect(more).to.deep.equal([]);
        const spec = route!.inputs.spec;
        expect(spec.parentRefs).to.deep.equal([{
            group: "gateway.networking.k8s.io", kind: "Gateway",
            name: GATEWAY_VARIANT.gatewayName, namespace: GATEWAY_VARIANT.gatewayNamespace, sectionName: GATEWAY_VARIANT.gatewaySectionName,
        }]);
        expect(spec.hostnames).to.deep.equal([HOST]);
        const [backend] = spec.rules[0].backendRefs;
        const service = p.r.all(TYPES.service).find((s) => s.inputs.metadata.name === backend.name);
        expect(service, `the route's backend ${backend.name}`).to.not.equal(undefined);
        expect(service!.inputs.spec.ports.map((x: any) => x.port)).to.include(backend.port);
        const podLabels = p.r.one(TYPES.deployment, /^mlflow-deployment$/).inputs.spec.template.metadata.labels;
        expect(podLabels).to.include(service!.inputs.spec.selector);
    });

    it("serves the route's host under the prefix, and refuses any other Host, as behind an Ingress", async function () {
        const search = `${PREFIX}/api/2.0/mlflow/experiments/search?max_results=1`;
        const ok = await request(p.server.port, { path: search, host: HOST, auth: admin() });
        expect(ok.status, ok.body.toString().slice(0, 200)).to.equal(200);
        const other = await request(p.server.port, { path: search, host: "other.example.com", auth: admin() });
        expect(other.status).to.equal(403);
        const root = await request(p.server.port, { path: "/api/2.0/mlflow/experiments/search?max_results=1", host: HOST, auth: admin() });
        expect(root.status, "nothing is served outside the prefix").to.equal(404);
        // The probes the server became ready with (the harness runs the rendered ones) need no login.
        expect((await request(p.server.port, { path: `${PREFIX}/health`, host: HOST })).status).to.equal(200);
        const ui = await request(p.server.port, { path: `${PREFIX}/`, host: HOST, auth: admin() });
        expect(ui.status).to.equal(200);
        expect(ui.body.toString(), "the UI's page").to.match(/<html/i);
    });

    it("serves the real MLflow client with the prefixed tracking URI, artifacts through the proxy included", async function () {
        const seeded = await phase("client under the prefix", () => p.python("gc-seed", {
            tag: "prefix", runs: ["prefixed"], delete: [], workDir: path.join(RUN, "client"),
        }, p.clientEnv()));
        expect(p.clientEnv().MLFLOW_TRACKING_URI).to.match(new RegExp(`${PREFIX}$`));
        const runId: string = seeded.runs.prefixed.id;
        expect(await p.sql(p.db.tracking, `SELECT status FROM runs WHERE run_uuid = '${runId}'`)).to.deep.equal([["FINISHED"]]);
        const listed = await request(p.server.port, {
            path: `${PREFIX}/api/2.0/mlflow-artifacts/artifacts?path=${encodeURIComponent(`${seeded.experimentId}/${runId}/artifacts/outputs`)}`, host: HOST, auth: admin(),
        });
        expect(listed.status, listed.body.toString().slice(0, 200)).to.equal(200);
        expect(JSON.parse(listed.body.toString()).files.map((f: any) => f.path).sort()).to.deep.equal(["model.txt", "nested"]);
    });

    it("lets browsers on the route's https origin and the configured origin write; the http origin and foreign ones are refused", async function () {
        const cases: Array<[string | undefined, number]> = [
            [`https://${HOST}`, 200],
            [GATEWAY_VARIANT.corsAllowedOrigins, 200],
            [undefined, 200],
            // The listener terminates TLS (gatewayScheme https): a page served over http is another origin.
            [`http://${HOST}`, 403],
            ["https://evil.example.com", 403],
            [`https://${HOST}.evil.io`, 403],
        ];
        let i = 0;
        for (const [origin, expected] of cases) {
            const res = await createExperiment(`gateway-${i++}`, origin);
            expect(res.status, `Origin ${origin ?? "(none)"}: ${res.body.toString().slice(0, 200)}`).to.equal(expected);
        }
        const created = await p.sql(p.db.tracking, "SELECT count(*) FROM experiments WHERE name LIKE 'gateway-%'");
        expect(created, "only the admitted origins created experiments").to.deep.equal([["3"]]);
    });

    it("is scraped where the ServiceMonitor points, by pod IP: the metrics Service's port is the exporter's, the counters moved with the requests above", async function () {
        const monitor = p.r.one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", /metrics/).inputs;
        const service = p.r.all(TYPES.service).find((s) => Object.entries(monitor.spec.selector.matchLabels)
            .every(([k, v]) => s.inputs.metadata.labels?.[k] === v))!;
        const [endpoint] = monitor.spec.endpoints;
        const port = service.inputs.spec.ports.find((x: any) => x.name === endpoint.port);
        const exporter = p.server.sidecars.find((c) => c.container.spec.ports.some((x: any) => x.name === port.targetPort));
        expect(exporter, `a container of the pod has the port named ${port.targetPort}`).to.not.equal(undefined);
        // Prometheus connects to the endpoint's pod IP with that Host: the exporter answers any Host.
        const res = await request(exporter!.port, { path: endpoint.path, host: `10.244.0.10:${port.port}` });
        expect(res.status, res.body.toString().slice(0, 200)).to.equal(200);
        const samples = parseMetrics(res.body.toString());
        expect(sum(samples, "mlflow_http_request_total", { method: "POST", status: "200" }), "the admitted writes").to.be.at.least(3);
        expect(sum(samples, "mlflow_http_request_total", { method: "GET", status: "200" }), "the search on the route's host").to.be.at.least(1);
        // Refused by the security middleware before the app: neither the foreign origins nor the foreign Host are counted.
        expect(sum(samples, "mlflow_http_request_total", { status: "403" }), "requests the Host check or CORS refused").to.equal(0);
    });

    it("serves a registered model whose pod downloaded it through the prefixed in-cluster tracking URI", async function () {
        const trained = await phase("admin: train, register, alias (through the prefix)", () => p.python("serving-train", {
            experiments: { a: "iris-a", b: "secret-b" }, model: "iris", alias: "champion", secretModel: "secret-model",
        }, p.clientEnv()));
        const deployment = p.r.one(TYPES.deployment, /^mlflow-model-iris-deployment$/);
        const download = deployment.inputs.spec.template.spec.initContainers[0];
        const uri = download.env.find((e: any) => e.name === "MLFLOW_TRACKING_URI").value;
        expect(uri, "the model server's tracking URI").to.equal(`http://mlflow-service.mlflow.svc.cluster.local:80${PREFIX}`);
        const start = await phase("model server iris: download through the prefix, load, probes", () =>
            p.startPod(deployment, "model-iris", p.trackingServiceAddresses()));
        const [step] = start.init;
        expect(step!.code, `download:\n${step!.stderr.slice(-2000)}`).to.equal(0);
        const r = await call({ port: start.pod!.port, host: deployment.state.metadata.name }, "POST", "/invocations", undefined, { body: JSON.stringify(trained.payload) });
        expect(r.status, r.body.toString().slice(0, 300)).to.equal(200);
        expect(JSON.parse(r.body.toString()).predictions).to.deep.equal(trained.served.predictions);
    });
});
