/**
 * Served models (`servedModels`, README "Serving models"): what the program creates for each, and
 * what it adds to the tracking server (the users in the migration Job, the grants CronJob). The
 * variant run serves `iris` by alias, autoscaled on its own image, and `churn` by version.
 */
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { REQUEST_BOUNDS_DIR, REQUEST_BOUNDS_SOURCE_DIR } from "../components/mlflowSettings";
import { DOWNLOAD_SCRIPT, MODEL_DIR, SCORING_MAX_CONCURRENT, SCORING_PORT, SCORING_TIMEOUT_SECONDS, SERVING_SECRET_KEYS } from "../components/modelServer";
import { mirroredImage } from "../components/podOverrides";
import { MLFLOW_IMAGE } from "../components/versions";
import { ProgramRun, VARIANT, runProgram, stackRun, variantRun } from "./harness";

const DEPLOYMENT = "kubernetes:apps/v1:Deployment";
const SECRET = "kubernetes:core/v1:Secret";
const CRONJOB = "kubernetes:batch/v1:CronJob";
const env = (c: any) => Object.fromEntries((c.env ?? []).map((e: any) => [e.name, e]));

describe("ModelServer", () => {
    let run: ProgramRun;
    let iris: any, churn: any;
    before(async () => {
        run = await variantRun();
        iris = run.one(DEPLOYMENT, /^mlflow-model-iris-deployment$/);
        churn = run.one(DEPLOYMENT, /^mlflow-model-churn-deployment$/);
    });

    it("creates nothing for models on the shipped stacks, which serve none", async () => {
        for (const stack of ["minikube", "dev"] as const) {
            const r = await stackRun(stack);
            expect(r.resources.filter((x) => /^mlflow-model-/.test(x.name)).map((x) => x.name), stack).to.deep.equal([]);
            expect(r.ofType(CRONJOB).map((c) => c.name), stack).to.not.include("mlflow-serving-grants");
            expect(r.outputs.modelEndpoints, stack).to.deep.equal({});
        }
    });

    it("downloads the model in an init container through the tracking server, as the model's own user", () => {
        const [download] = iris.inputs.spec.template.spec.initContainers;
        expect(download.image, "the MLflow image, from the variant's mirror").to.equal(mirroredImage(MLFLOW_IMAGE, JSON.parse(VARIANT.imageMirrors)));
        expect(download.command).to.deep.equal(["sh", "-c", DOWNLOAD_SCRIPT]);
        expect(DOWNLOAD_SCRIPT).to.match(/^mlflow artifacts download --artifact-uri "\$MODEL_URI" --dst-path "\$MODEL_DIR" && exit 0\n/);
        expect(DOWNLOAD_SCRIPT.trim().split("\n").at(-1), "a failed download fails the pod").to.equal("exit 1");
        const e = env(download);
        expect([e.MODEL_URI.value, e.MODEL_DIR.value]).to.deep.equal(["models:/iris@champion", MODEL_DIR]);
        expect(e.MLFLOW_TRACKING_URI.value, "the in-cluster Service").to.equal(run.outputs.internalTrackingUri);
        const secret = run.one(SECRET, /^mlflow-model-iris-credentials$/);
        for (const [variable, key] of [["MLFLOW_TRACKING_USERNAME", SERVING_SECRET_KEYS.username], ["MLFLOW_TRACKING_PASSWORD", SERVING_SECRET_KEYS.password]] as const) {
            expect(e[variable].valueFrom.secretKeyRef, variable).to.deep.equal({ name: secret.state.metadata.name, key });
        }
        expect(secret.inputs.stringData.username).to.equal("serving-iris");
        expect(secret.secretPaths).to.include("stringData");
        // Presigned S3 URLs would bypass the tracking server's auth, and the pod cannot reach S3.
        expect(e.MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD.value).to.equal("false");
        expect(env(churn.inputs.spec.template.spec.initContainers[0]).MODEL_URI.value).to.equal("models:/Churn Model/3");
    });

    it("serves it with MLflow's scoring server as PID 1, holding no credentials", () => {
        const [serve] = iris.inputs.spec.template.spec.containers;
        expect(serve.image, "the entry's pinned image").to.equal("registry.example.com/models/iris:1.4.2");
        expect(churn.inputs.spec.template.spec.containers[0].image, "the MLflow image by default (from the variant's mirror)").to.equal(mirroredImage(MLFLOW_IMAGE, JSON.parse(VARIANT.imageMirrors)));
        expect(serve.command.slice(0, 1)).to.deep.equal(["uvicorn"]);
        // MLflow's scoring app, behind the request bounds (the factory wraps mlflow.pyfunc.scoring_server.app:app).
        expect(serve.command.slice(-2)).to.deep.equal(["--factory", "request_bounds:create_scoring_app"]);
        expect(fs.readFileSync(path.join(REQUEST_BOUNDS_SOURCE_DIR, "request_bounds.py"), "utf8")).to.include("from mlflow.pyfunc.scoring_server.app import app");
        expect(serve.command[serve.command.indexOf("--workers") + 1]).to.equal("2");
        expect(churn.inputs.spec.template.spec.containers[0].command[serve.command.indexOf("--workers") + 1]).to.equal("1");
        expect(serve.command[serve.command.indexOf("--port") + 1]).to.equal(String(SCORING_PORT));
        const e = env(serve);
        expect(e.__pyfunc_model_path__.value).to.equal(MODEL_DIR);
        // The variant's extraEnv Secret is scoped to the server and its Job (`workloads`).
        expect(Object.values(e).filter((v: any) => v.valueFrom !== undefined), "no Secret reaches the scoring server").to.deep.equal([]);
        expect(Object.keys(e).filter((k) => k.startsWith("MLFLOW_TRACKING")), "it never calls the tracking server").to.deep.equal([]);
        const mount = serve.volumeMounts.find((m: any) => m.mountPath === MODEL_DIR);
        expect(mount.readOnly, "the model is read-only to the server").to.equal(true);
        expect(serve.resources.limits).to.include({ cpu: "2", memory: "2Gi" });
    });

    it("bounds /invocations: each model's body limit from its entry, twice that of large bodies at once, fixed concurrency and timeout", () => {
        for (const [deployment, body] of [[iris, 64 * 2 ** 20], [churn, 16 * 2 ** 20]] as const) {
            const spec = deployment.inputs.spec.template.spec;
            const [serve] = spec.containers;
            const e = env(serve);
            expect(e.PYTHONPATH.value).to.equal(REQUEST_BOUNDS_DIR);
            expect([e.REQUEST_BOUNDS_MAX_BODY_BYTES.value, e.REQUEST_BOUNDS_BODY_BUDGET_BYTES.value, e.REQUEST_BOUNDS_MAX_CONCURRENT.value, e.REQUEST_BOUNDS_BODY_TIMEOUT_SECONDS.value])
                .to.deep.equal([String(body), String(2 * body), String(SCORING_MAX_CONCURRENT), String(SCORING_TIMEOUT_SECONDS)]);
            expect(serve.command[serve.command.indexOf("--limit-concurrency") + 1]).to.equal(String(4 * SCORING_MAX_CONCURRENT));
            const mount = serve.volumeMounts.find((m: any) => m.mountPath === REQUEST_BOUNDS_DIR);
            expect(mount.readOnly).to.equal(true);
            const volume = spec.volumes.find((v: any) => v.name === mount.name);
            expect(volume.configMap.defaultMode).to.equal(0o444);
            const cm = run.ofType("kubernetes:core/v1:ConfigMap").find((c) => c.state.metadata.name === volume.configMap.name)!;
            expect(Object.keys(cm.inputs.data).sort()).to.deep.equal(fs.readdirSync(REQUEST_BOUNDS_SOURCE_DIR).sort());
            // The download init container needs none of it.
            expect(spec.initContainers[0].volumeMounts.map((m: any) => m.name)).to.not.include(mount.name);
        }
    });

    it("takes traffic only once the model answers, and drains before it stops", () => {
        const spec = iris.inputs.spec;
        const [serve] = spec.template.spec.containers;
        expect(serve.readinessProbe.httpGet.path).to.equal("/ping");
        expect(serve.startupProbe.periodSeconds * serve.startupProbe.failureThreshold, "time to load a large model").to.be.at.least(300);
        expect(serve.lifecycle.preStop.exec.command[0]).to.equal("sleep");
        expect(spec.template.spec.terminationGracePeriodSeconds).to.be.greaterThan(Number(serve.lifecycle.preStop.exec.command[1]) + 20);
        expect(spec.strategy.rollingUpdate.maxUnavailable, "a model that fails to load leaves the old pods serving").to.equal(0);
    });

    it("autoscales a model with maxReplicas, under a PodDisruptionBudget; a fixed model keeps its replicas", () => {
        expect(iris.inputs.spec.replicas, "the autoscaler owns replicas").to.equal(undefined);
        const hpa = run.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", /^mlflow-model-iris-hpa$/).inputs.spec;
        expect(hpa.scaleTargetRef).to.deep.include({ kind: "Deployment", name: iris.state.metadata.name });
        expect([hpa.minReplicas, hpa.maxReplicas]).to.deep.equal([2, 4]);
        expect(run.one("kubernetes:policy/v1:PodDisruptionBudget", /^mlflow-model-iris-pdb$/).inputs.spec.selector.matchLabels)
            .to.deep.equal(iris.inputs.spec.selector.matchLabels);
        expect(churn.inputs.spec.replicas).to.equal(1);
        expect(run.resources.filter((r) => /^mlflow-model-churn-(hpa|pdb)$/.test(r.name))).to.deep.equal([]);
    });

    it("gives each model a Service on port 80 that selects its pods alone", () => {
        for (const [model, deployment] of [["iris", iris], ["churn", churn]] as const) {
            const service = run.one("kubernetes:core/v1:Service", new RegExp(`^mlflow-model-${model}-service$`)).inputs;
            expect(service.metadata.name).to.equal(`mlflow-model-${model}`);
            expect(service.spec.type).to.equal("ClusterIP");
            expect(service.spec.ports).to.deep.equal([{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }]);
            const labels = deployment.inputs.spec.template.metadata.labels;
            expect(Object.entries(service.spec.selector).every(([k, v]) => labels[k] === v), model).to.equal(true);
            const other = (model === "iris" ? churn : iris).inputs.spec.template.metadata.labels;
            expect(Object.entries(service.spec.selector).every(([k, v]) => other[k] === v), `${model} selects another model's pods`).to.equal(false);
        }
        expect(Object.keys(run.outputs.modelEndpoints as object).sort()).to.deep.equal(["churn", "iris"]);
        expect((run.outputs.modelEndpoints as any).iris).to.deep.include({
            model: "models:/iris@champion",
            invocationsUrl: `http://mlflow-model-iris.${run.outputs.namespaceName}.svc.cluster.local/invocations`,
        });
        expect((run.outputs.modelEndpoints as any).iris.portForwardCommand).to.match(/port-forward service\/mlflow-model-iris 8081:80$/);
    });

    it("creates the users in the migration Job and keeps their grants with a CronJob, passwords by reference", () => {
        const job = run.one("kubernetes:batch/v1:Job", /^mlflow-migrate$/).inputs.spec.template.spec.containers[0];
        const served = JSON.parse(env(job).SERVED_MODELS.value);
        expect(served).to.deep.equal([
            { user: "serving-iris", model: "iris", alias: "champion", passwordEnv: "SERVING_PASSWORD_0" },
            { user: "serving-churn", model: "Churn Model", version: 3, passwordEnv: "SERVING_PASSWORD_1" },
        ]);
        for (const [i, model] of [[0, "iris"], [1, "churn"]] as const) {
            expect(env(job)[`SERVING_PASSWORD_${i}`].valueFrom.secretKeyRef).to.deep.equal({
                name: run.one(SECRET, new RegExp(`^mlflow-model-${model}-credentials$`)).state.metadata.name, key: SERVING_SECRET_KEYS.password,
            });
        }
        const grants = run.one(CRONJOB, /^mlflow-serving-grants$/);
        const container = grants.inputs.spec.jobTemplate.spec.template.spec.containers[0];
        expect(container.args[0]).to.equal("/opt/mlflow/server/serving.py");
        expect(container.args.slice(1)).to.deep.equal(job.args.slice(1), "the same databases as the migration");
        expect(env(container).SERVED_MODELS).to.deep.equal(env(job).SERVED_MODELS);
        expect(grants.inputs.spec.concurrencyPolicy).to.equal("Forbid");
        expect(grants.dependencies, "after the migration created the users").to.include(run.one("kubernetes:batch/v1:Job", /^mlflow-migrate$/).urn);
    });

    it("starts the model servers once the tracking server serves, their users created", () => {
        const component = run.one("mlflow-k8s:kubernetes:ModelServer", /^mlflow-model-iris$/);
        // A component dependency stands for its children: the server's Deployment and the migration Job.
        expect(component.dependencies).to.include.members([
            run.one(DEPLOYMENT, /^mlflow-deployment$/).urn, run.one("kubernetes:batch/v1:Job", /^mlflow-migrate$/).urn,
        ]);
        expect(iris.parent).to.equal(component.urn);
    });

    it("rolls a model's pods when its model or password changes, and only that model's", async () => {
        const moved = await runProgram("minikube", {
            ...VARIANT,
            servedModels: JSON.stringify([
                { ...JSON.parse(VARIANT.servedModels)[0], model: "models:/iris@challenger" },
                JSON.parse(VARIANT.servedModels)[1],
            ]),
        });
        const annotation = (r: ProgramRun, model: string) =>
            r.one(DEPLOYMENT, new RegExp(`^mlflow-model-${model}-deployment$`)).inputs.spec.template.metadata.annotations["checksum/config"];
        expect(annotation(run, "iris")).to.match(/^[0-9a-f]{64}$/);
        expect(annotation(moved, "iris")).to.not.equal(annotation(run, "iris"));
        expect(annotation(moved, "churn")).to.equal(annotation(run, "churn"));
    });
});
