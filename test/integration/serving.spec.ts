/**
 * Contract tests of served models (`servedModels`): the minikube stack rendered with least privilege
 * (`mlflowDefaultPermission: NO_PERMISSIONS`) and three served models, one by alias, one by version
 * and one whose registered model does not exist. The admin trains scikit-learn models with the real
 * client; the rendered grants CronJob gives each model server's user READ on its model and on the
 * experiment holding its files; the rendered model server Deployment's pods download the model
 * through the tracking server as that user and serve it. Then what that user may not do, an alias
 * moved into another experiment, a model that does not exist, a pod deleted under load, and the
 * figures: cold start, latency, throughput and memory against the rendered limit.
 */
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { parseQuantity } from "../../components/config";
import { MODEL_DIR } from "../../components/modelServer";
import { MEMORY_HEADROOM } from "../../components/sizing";
import { ROOT, RecordedResource } from "../harness";
import { ENDPOINT_LAG_MS, Ingress, startIngress } from "./lib/ingress";
import { call, percentile, runLoad, Target } from "./lib/load";
import { CACHE, PodStart, Platform, ServerPod, StepResult, phase, printPhases } from "./lib/platform";
import { setPidFile, stopAll } from "./lib/processes";
import { PeakSampler, treeMemory } from "./lib/procfs";
import { TYPES } from "./lib/rendered";

const RUN = path.join(CACHE, "run-serving");
const MODEL = "iris";
const ALIAS = "champion";
const SECRET_MODEL = "secret-model";
/** Served by alias (rolled in the tests), by version (stays on version 1), and a model no one registered. */
const SERVED = [
    { name: "iris", model: `models:/${MODEL}@${ALIAS}` },
    { name: "iris-v1", model: `models:/${MODEL}/1` },
    { name: "ghost", model: `models:/ghost@${ALIAS}` },
];
const OVERRIDES = { mlflowDefaultPermission: "NO_PERMISSIONS", servedModels: JSON.stringify(SERVED) };
/** Where MLflow's 403 shows in a client's error (JSON error code, or the auth layer's plain answer). */
const REFUSED = /^403: /;

describe("contract: served models: downloaded by their own least-privilege user, served, rolled and stopped gracefully", function () {
    this.timeout(900000);

    const p = new Platform({ stack: "minikube", dir: RUN, overrides: OVERRIDES });
    let migration: StepResult[];
    let trained: any;
    let rolled: any;
    let ingress: Ingress | undefined;
    /** The alias's pods: the first (version 1), then the one started after the rollout. */
    const aliasPods: ServerPod[] = [];
    const coldStarts: Array<{ what: string; start: PodStart }> = [];

    const deployment = (name: string): RecordedResource => p.r.one(TYPES.deployment, new RegExp(`^mlflow-model-${name}-deployment$`));
    /** A new pod of a model server, its download pointed at the tracking server's pod. */
    const startModelPod = (name: string): Promise<PodStart> => p.startPod(deployment(name), `model-${name}`, p.trackingServiceAddresses());
    /** A model server's MLflow login, as its rendered init container resolves it (Secret, tracking URI, no presigned URLs). */
    const servingEnv = (name: string): Record<string, string> => {
        const download = p.r.container(deployment(name), "download", path.join(RUN, "resolved", name),
            { images: p.images, addresses: p.trackingServiceAddresses() });
        return Object.fromEntries(Object.entries(download.env).filter(([k]) => k.startsWith("MLFLOW_")));
    };
    /** The rendered grants CronJob's pod, run to completion; its log. */
    const runGrants = async (): Promise<string> => {
        const [step] = await p.runPodToSuccess(p.r.one(TYPES.cronJob, /^mlflow-serving-grants$/), { label: "serving-grants" });
        return step!.stdout + step!.stderr;
    };
    /** Every grant of the model servers' users, from the auth database: user → sorted "type pattern permission". */
    const grants = async (): Promise<Record<string, string[]>> => {
        const rows = await p.sql(p.db.auth, `SELECT u.username, rp.resource_type, rp.resource_pattern, rp.permission
            FROM users u JOIN user_role_assignments a ON a.user_id = u.id JOIN role_permissions rp ON rp.role_id = a.role_id
            WHERE u.username LIKE 'serving-%' ORDER BY 1, 2, 3`);
        const out: Record<string, string[]> = {};
        for (const [user, type, pattern, permission] of rows) {
            (out[user!] ??= []).push(`${type} ${pattern} ${permission}`);
        }
        return out;
    };
    /** What a model's Service would be asked: the rows the admin predicted locally. */
    const target = (port: number, name = MODEL): Target => ({ port, host: deployment(name).state.metadata.name });
    const body = () => JSON.stringify(trained.payload);
    const predict = async (pod: ServerPod, name = MODEL): Promise<unknown> => {
        const r = await call(target(pod.port, name), "POST", "/invocations", undefined, { body: body() });
        expect(r.status, `POST /invocations: ${r.body.toString().slice(0, 500)}`).to.equal(200);
        return JSON.parse(r.body.toString()).predictions;
    };
    const probe = (name: string, doc: Record<string, unknown>) => p.python("serving-probe", {
        model: MODEL, alias: ALIAS, secretModel: SECRET_MODEL, secretModelId: trained.secret.modelId,
        experiments: trained.experiments, runs: { a: trained.served.runId, b: trained.secret.runId },
        runArtifacts: { a: trained.served.runArtifacts }, files: { served: trained.served.files, secret: trained.secret.files },
        workDir: path.join(RUN, "probe"), ...doc,
    }, servingEnv(name));
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        fs.mkdirSync(path.join(RUN, "probe"), { recursive: true });
        migration = await phase("moto, render (served models), provision, PostgreSQL, migration, tracking server", () => p.bringUp());
    });

    after(async function () {
        await ingress?.close();
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it("as the admin: trains iris models with scikit-learn, iris@champion in experiment A, secret-model in experiment B", async function () {
        // The migration Job made the users before anything was registered: the model's grant only.
        const log = migration.map((s) => s.stdout + s.stderr).join("");
        for (const { name } of SERVED) {
            expect(log).to.include(`created user serving-${name}`);
        }
        expect(log).to.match(/iris@champion is not registered yet/);
        expect(await grants()).to.deep.equal({
            "serving-ghost": ["registered_model ghost READ"],
            "serving-iris": ["registered_model iris READ"],
            "serving-iris-v1": ["registered_model iris READ"],
        });

        trained = await phase("admin: train, log_model, register, alias", () => p.python("serving-train", {
            experiments: { a: "iris-a", b: "secret-b" }, model: MODEL, alias: ALIAS, secretModel: SECRET_MODEL,
        }, p.clientEnv()));
        expect(trained.served.version).to.equal("1");
        expect(trained.aliasVersion, "the alias").to.equal(trained.served.version);
        expect(trained.served.files, "version 1's files, in experiment A").to.match(new RegExp(`^${trained.experiments.a}/`));
        expect(trained.secret.files, "secret-model's files, in experiment B").to.match(new RegExp(`^${trained.experiments.b}/`));
        expect(new Set(trained.served.predictions).size, "rows of every class").to.equal(3);
    });

    it("grants READ on the model and its experiment (the rendered CronJob); the rendered pods download the model as their user and serve the local model's predictions", async function () {
        const log = await phase("grants CronJob", runGrants);
        const a = trained.experiments.a;
        expect(log).to.include(`serving-iris: READ on registered model iris (version 1 in experiment ${a})`);
        expect(log).to.include(`serving-iris-v1: READ on registered model iris (version 1 in experiment ${a})`);
        expect(log).to.match(/ghost@champion is not registered yet/);
        expect(await grants()).to.deep.equal({
            "serving-ghost": ["registered_model ghost READ"],
            "serving-iris": [`experiment ${a} READ`, "registered_model iris READ"],
            "serving-iris-v1": [`experiment ${a} READ`, "registered_model iris READ"],
        });

        const serverLog = () => fs.readFileSync(p.server.service.logFile, "utf8");
        const logBefore = serverLog().length;
        for (const name of ["iris", "iris-v1"]) {
            const start = await phase(`model server ${name}: download, load, probes`, () => startModelPod(name));
            const [download] = start.init;
            expect(download!.code, `${name}'s download:\n${download!.stderr.slice(-3000)}`).to.equal(0);
            const pod = start.pod!;
            coldStarts.push({ what: `${name} (version 1)`, start });
            // The download goes to the tracking server's Service (here its pod).
            expect(servingEnv(name).MLFLOW_TRACKING_URI).to.equal(`http://127.0.0.1:${p.server.port}`);
            const model = pod.container.sandbox.mounts.find((m) => m.target === MODEL_DIR)!;
            expect(model.readOnly, "the serving container reads the model read-only").to.equal(true);
            expect(fs.existsSync(path.join(model.source, "MLmodel")), "the model's files in the emptyDir").to.equal(true);
            expect(Object.keys(pod.container.env).filter((k) => /PASSWORD|USERNAME|SECRET|AWS_ACCESS/.test(k)), "credentials of the serving container").to.deep.equal([]);
            expect(await predict(pod, name), `${name}: the local model's predictions`).to.deep.equal(trained.served.predictions);
            if (name === "iris") {
                aliasPods.push(pod);
            }
        }
        // Every file through the server's artifact proxy, none by a presigned S3 URL.
        const downloads = serverLog().slice(logBefore);
        expect(downloads).to.include(`"GET /api/2.0/mlflow-artifacts/artifacts/${trained.served.files}/MLmodel HTTP/1.1" 200`);
        expect(downloads).to.not.include("/mlflow-artifacts/presigned/");
    });

    it("gives the model server's user READ on its own model only: another model, another experiment and every write refused", async function () {
        const r = await phase("serving-iris probe", () => probe("iris", {
            tag: "1", downloads: { served: `models:/${MODEL}@${ALIAS}`, secret: `models:/${SECRET_MODEL}/1` },
        }));
        console.log(`      ${r.user}: sees models ${JSON.stringify(r.visibleModels)}, experiments ${JSON.stringify(r.visibleExperiments)}; ` +
            `MLflow lets any user ${Object.entries(r.mlflowAllows).map(([k, v]) => `${k}: ${String(v).slice(0, 60)}`).join(", ")}`);
        expect(r.user).to.equal("serving-iris");
        // The positive controls: what its pod needs works, or the refusals below prove nothing.
        for (const check of ["readModel", "readAlias", "readExperimentA", "download:served", "proxyGet:served"]) {
            expect(r[check], check).to.equal("ok");
        }
        expect(r.visibleModels).to.deep.equal([MODEL]);
        expect(r.visibleExperiments).to.deep.equal([trained.experiments.a]);
        const refused = [
            "readSecretModel", "readSecretVersion", "readSecretLoggedModel", "readExperimentB", "readRunB", "listArtifactsB", "downloadRunB",
            "download:secret", "proxyGet:secret",
            "updateModel", "tagModel", "setAlias", "tagVersion", "createVersion", "createRunInA", "logMetricInA", "tagExperimentA",
            "uploadToA", "deleteFileInA", "createUser", "deleteAlias", "deleteVersion", "deleteRunInA", "deleteExperimentA", "deleteModel",
        ];
        const wrong = refused.filter((check) => !REFUSED.test(r[check]));
        expect(wrong.map((check) => `${check}: ${r[check]}`), "not refused with 403").to.deep.equal([]);
        // Searching experiment B is either refused or finds nothing.
        expect(REFUSED.test(r.searchRunsB) || (r.searchRunsB === "ok" && r.runsFoundInB === 0), `searchRunsB: ${r.searchRunsB}, ${r.runsFoundInB} runs`).to.equal(true);
    });

    it("follows the alias into another experiment: refused until the grants CronJob runs (the running pod keeps serving), then a new pod serves the new version; experiment A revoked", async function () {
        rolled = await phase("admin: version 2 in experiment C, alias moved", () => p.python("serving-rollout", {
            experiment: "iris-c", model: MODEL, alias: ALIAS,
        }, p.clientEnv()));
        const [a, c] = [trained.experiments.a, rolled.experiment];
        expect(rolled.version).to.equal("2");
        expect(rolled.files).to.match(new RegExp(`^${c}/`));
        expect(rolled.predictions, "version 2 predicts differently: the test can tell them apart").to.not.deep.equal(trained.served.predictions);

        // Before the grants step: a new pod cannot download the version the alias points at now.
        const refused = await phase("model server iris: a new pod before the grants step", () => startModelPod("iris"));
        expect(refused.pod, "a pod past its init container").to.equal(undefined);
        const failed = refused.init[0]!;
        expect(failed.code, "the download's exit").to.not.equal(0);
        // MLflow's last line: the alias resolved, the new version's files (experiment C) refused by the
        // artifact proxy; then the container's own line, naming the model and the user.
        const [line, own] = failed.stderr.trim().split("\n").slice(-2).map((l) => decodeURIComponent(l)) as [string, string];
        console.log(`      the init container's log, before the grants step, last lines: ${line.slice(0, 300)}\n      ${own}`);
        expect(own).to.match(new RegExp(`^download: could not download models:/${MODEL}@${ALIAS} as MLflow user serving-iris from http://`));
        expect(line, failed.stderr.slice(-2000)).to.match(/403.*Permission denied/);
        expect(line, "the files refused").to.include(`mlflow-artifacts/artifacts?path=${rolled.files}`);
        expect(await predict(aliasPods[0]!), "the running pod, on version 1").to.deep.equal(trained.served.predictions);

        const log = await phase("grants CronJob", runGrants);
        expect(log).to.include(`serving-iris: revoked experiment ${a}`);
        expect(log).to.include(`serving-iris: READ on registered model iris (version 2 in experiment ${c})`);
        expect(await grants(), "each user's grants follow its own model").to.deep.equal({
            "serving-ghost": ["registered_model ghost READ"],
            "serving-iris": [`experiment ${c} READ`, "registered_model iris READ"],
            "serving-iris-v1": [`experiment ${a} READ`, "registered_model iris READ"],
        });

        const restarted = await phase("model server iris: a new pod after the grants step", () => startModelPod("iris"));
        expect(restarted.init[0]!.code, restarted.init[0]!.stderr.slice(-3000)).to.equal(0);
        coldStarts.push({ what: "iris (version 2, after the rollout)", start: restarted });
        aliasPods.push(restarted.pod!);
        expect(await predict(restarted.pod!), "the new pod, on version 2").to.deep.equal(rolled.predictions);
        expect(await predict(aliasPods[0]!), "the old pod, still on version 1").to.deep.equal(trained.served.predictions);

        // The revocation holds: version 1's files are in experiment A, which this user no longer reads.
        const after = await phase("serving-iris probe after the rollout", () => probe("iris", {
            tag: "2", only: ["download:served", "download:v1", "readExperimentA"],
            downloads: { served: `models:/${MODEL}@${ALIAS}`, v1: `models:/${MODEL}/1` },
        }));
        expect(after["download:served"]).to.equal("ok");
        expect(after["download:v1"]).to.match(REFUSED);
        expect(after.readExperimentA).to.match(REFUSED);
    });

    it("fails the init container of a model nobody registered: refused at the alias lookup, though its user may read that name", async function () {
        // The grants are in place: READ on the registered model's name, which nothing registered.
        expect((await grants())["serving-ghost"]).to.deep.equal(["registered_model ghost READ"]);
        const start = await phase("model server ghost", () => startModelPod("ghost"));
        expect(start.pod).to.equal(undefined);
        const failed = start.init[0]!;
        expect(failed.code).to.not.equal(0);
        // What `kubectl logs deploy/mlflow-model-ghost -c download` shows: MLflow's traceback, whose last
        // line is the refused alias lookup (MLflow answers 403, not 404, for a model that does not exist).
        const [last, own] = failed.stderr.trim().split("\n").slice(-2) as [string, string];
        console.log(`      what the user sees (kubectl logs ... -c download), last lines: ${last.slice(0, 300)}\n      ${own}`);
        expect(last, failed.stderr.slice(-2000)).to.match(/\/api\/2\.0\/mlflow\/registered-models\/alias failed with error code 403\b.*Permission denied/);
        // The container's own last line names the model and the user, which MLflow's does not.
        expect(own).to.match(/^download: could not download models:\/ghost@champion as MLflow user serving-ghost from http:\/\/.*a 403 above means the model or alias does not exist/);
    });

    it("drains a deleted pod: requests answered during the preStop hook, no failed request, exit within the grace period", async function () {
        const [old, fresh] = aliasPods as [ServerPod, ServerPod];
        const service = deployment(MODEL).state.metadata.name;
        ingress = await startIngress(service, [old.port, fresh.port], "");
        const valid = [JSON.stringify(trained.served.predictions), JSON.stringify(rolled.predictions)];
        let requests = 0;
        const failures: string[] = [];
        let stop = false;
        const client = (async () => {
            while (!stop) {
                const r = await call({ port: ingress!.port, host: service }, "POST", "/invocations", undefined, { body: body() });
                requests += 1;
                const predictions = r.status === 200 ? JSON.stringify(JSON.parse(r.body.toString()).predictions) : "";
                if (!valid.includes(predictions)) {
                    failures.push(`${r.status} ${r.body.toString().slice(0, 200)}`);
                }
                await sleep(20);
            }
        })();
        const preStop: string[] = old.container.spec.lifecycle.preStop.exec.command;
        const preStopSeconds = Number(preStop[preStop.indexOf("sleep") + 1]);
        const graceMs = p.graceMs(old.workload);
        let exit: number | string;
        let stoppedMs: number;
        let oldServedWhileStopping: number;
        try {
            await sleep(1000);
            const served0 = ingress.served.get(old.port)!;
            const t0 = Date.now();
            const stopping = p.stopPod(old);
            // The endpoint leaves the proxies while the hook runs.
            await sleep(ENDPOINT_LAG_MS);
            ingress.setBackends([fresh.port]);
            oldServedWhileStopping = ingress.served.get(old.port)! - served0;
            exit = await stopping;
            stoppedMs = Date.now() - t0;
            await sleep(500);
        } finally {
            stop = true;
            await client;
        }
        console.log(`      deletion: ${requests} requests through the Service, ${oldServedWhileStopping} to the stopping pod during its preStop hook ` +
            `(sleep ${preStopSeconds}), exit ${exit} after ${(stoppedMs / 1000).toFixed(1)} s of a ${graceMs / 1000} s grace period; ${failures.length} failed`);
        expect(failures).to.deep.equal([]);
        expect(oldServedWhileStopping, "requests the stopping pod answered before its endpoint went").to.be.greaterThan(0);
        // uvicorn drains on SIGTERM, then raises the signal again once it is done (its `capture_signals`):
        // 143 (128 + SIGTERM) after "Finished server process" is a clean stop; a SIGKILL at the end of
        // the grace period would be 137.
        expect(exit, "drained on SIGTERM, not killed").to.be.oneOf([0, 143]);
        expect(stoppedMs, "the hook ran first").to.be.at.least(preStopSeconds * 1000);
        expect(stoppedMs, "within the grace period").to.be.below(graceMs);
        expect(fs.readFileSync(old.service.logFile, "utf8")).to.match(/Finished server process/);
        aliasPods.shift();
    });

    it("starts, answers and fits its memory limit: cold start, latency, throughput and PSS against the rendered limit", async function () {
        const pod = aliasPods[0]!;
        const serve = pod.container.spec;
        const startup = serve.startupProbe;
        const startupBudget = startup.periodSeconds * startup.failureThreshold;
        for (const { what, start } of coldStarts) {
            const total = start.initSeconds + start.readySeconds;
            console.log(`      cold start ${what}: ${total.toFixed(1)} s from pod start to /ping ready ` +
                `(download ${start.initSeconds.toFixed(1)} s, load and listen ${start.readySeconds.toFixed(1)} s); startup probe allows ${startupBudget} s`);
            // A quarter of the budget: room for a slower node and a bigger model before the kubelet gives up.
            expect(total, what).to.be.below(startupBudget / 4);
        }

        const limitMiB = parseQuantity(serve.resources.limits.memory) / 2 ** 20;
        const budget = limitMiB * (1 - MEMORY_HEADROOM);
        const root = pod.service.child.pid!;
        const idle = treeMemory(root);
        const sampler = new PeakSampler(root, undefined, 250);
        sampler.start();
        const t = target(pod.port);
        const sequential = await phase("200 sequential /invocations", () => runLoad(t, "/invocations", [Array.from({ length: 200 }, body)]));
        const clients = 8;
        const concurrent = await phase(`${clients} clients x 100 /invocations`, () =>
            runLoad(t, "/invocations", Array.from({ length: clients }, () => Array.from({ length: 100 }, body))));
        sampler.stop();
        const p50 = percentile(sequential.latenciesMs, 50);
        const p99 = percentile(sequential.latenciesMs, 99);
        const throughput = concurrent.requests / concurrent.wallSeconds;
        const sequentialRate = sequential.requests / sequential.wallSeconds;
        console.log(`      latency, 200 sequential: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (${sequentialRate.toFixed(0)} req/s); ` +
            `${clients} clients: ${throughput.toFixed(0)} req/s, p50 ${percentile(concurrent.latenciesMs, 50).toFixed(1)} ms, ` +
            `p99 ${percentile(concurrent.latenciesMs, 99).toFixed(1)} ms; errors ${sequential.errors + concurrent.errors}`);
        console.log(`      serve process tree: idle ${idle.pssMiB.toFixed(0)} MiB PSS in ${idle.processes} processes ` +
            `(${idle.detail.filter((d) => d.pssMiB >= 1).map((d) => `${d.cmd} ${d.pssMiB.toFixed(0)}`).join(", ")}); ` +
            `peak ${sampler.peakPssMiB.toFixed(0)} MiB; limit ${limitMiB} MiB, ${MEMORY_HEADROOM * 100}% kept free: ${budget.toFixed(0)} MiB`);
        expect(sequential.errors + concurrent.errors, JSON.stringify([...sequential.errorSamples, ...concurrent.errorSamples])).to.equal(0);
        // Ten rows through a fitted scikit-learn model are microseconds of work; the rest is parsing
        // and JSON. A request near a second would be work that does not belong there (a reload, a
        // blocked event loop).
        expect(p50, "p50").to.be.below(100);
        expect(p99, "p99").to.be.below(1000);
        // One worker serves one prediction at a time: concurrency must not make it slower overall.
        expect(throughput, "throughput at 8 clients against one client's").to.be.at.least(sequentialRate * 0.5);
        expect(idle.pssMiB, "idle").to.be.at.most(budget);
        expect(sampler.peakPssMiB, "peak under load").to.be.at.most(budget);
    });

    it("bounds /invocations: a body over the model's maxRequestBodySize is refused with 413 before it is read, in MLflow's error shape, while predictions go on", async function () {
        const pod = aliasPods[0]!;
        const limit = Number(pod.container.env.REQUEST_BOUNDS_MAX_BODY_BYTES);
        expect(limit, "the default 16Mi").to.equal(16 * 2 ** 20);
        const root = pod.service.child.pid!;
        const before = treeMemory(root).pssMiB;
        const sampler = new PeakSampler(root, undefined, 100);
        sampler.start();
        const huge = `{"dataframe_split": {"columns": ["a"], "data": [${"[1],".repeat(Math.ceil((limit + 1) / 4))}[1]]}}`;
        const [refused, ok] = await Promise.all([
            Promise.all(Array.from({ length: 4 }, () => call(target(pod.port), "POST", "/invocations", undefined, { body: huge }))),
            predict(pod),
        ]);
        sampler.stop();
        for (const r of refused) {
            expect(r.status, r.body.toString().slice(0, 300)).to.equal(413);
            const error = JSON.parse(r.body.toString());
            expect(error.error_code).to.equal("RESOURCE_EXHAUSTED");
            expect(error.message).to.include(`servedModels (${pod.container.env.REQUEST_BOUNDS_MODEL_NAME}).maxRequestBodySize`);
        }
        expect(ok).to.be.an("array");
        console.log(`      4 bodies of ${(huge.length / 2 ** 20).toFixed(0)} MiB at once: 413, serve tree ${before.toFixed(0)} MiB before, peak ${sampler.peakPssMiB.toFixed(0)} MiB`);
        expect(sampler.peakPssMiB - before, "refused bodies are not read").to.be.below(32);
    });
});
