/**
 * One rendered platform, run for real on loopback: moto for S3 and IAM, the stack rendered by the
 * mocks harness with its endpoint pointed at moto, the ArtifactStore's AWS resources created in
 * moto from the rendered inputs, real credentials in place of the mocks' placeholders, PostgreSQL
 * from the rendered StatefulSet, and any rendered Job or the Deployment's pods as sandboxed
 * processes. Each contract spec drives one (see docs/integration.md).
 */
import { expect } from "chai";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { POSTGRES_UID } from "../../../components/versions";
import { ROOT, RecordedResource, runProgram } from "../../harness";
import { generatePassword } from "./credentials";
import { freePort, runToCompletion, Service } from "./processes";
import type { KubeApi } from "./kubeApi";
import { ImageRuntime, LocalContainer, Rendered, TYPES } from "./rendered";
import {
    ExternalPostgres, Moto, Postgres, postgresImage, runContainer, startContainer, startExternalPostgres, startMoto, startPostgres, stopContainer, waitForProbes,
} from "./services";

export const CACHE = path.join(ROOT, ".cache", "integration");
export const MLFLOW_VENV = path.join(CACHE, "venv-mlflow");
export const MOTO_VENV = path.join(CACHE, "venv-moto");
const PY_HELPER = path.join(__dirname, "..", "contract.py");

const phases: Array<{ name: string; seconds: number }> = [];

/** Runs a step, printing and recording its duration for {@link printPhases}. */
export async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
        return await fn();
    } finally {
        const seconds = (Date.now() - t0) / 1000;
        phases.push({ name, seconds });
        console.log(`      [phase] ${name}: ${seconds.toFixed(1)} s`);
    }
}

/** Prints the durations recorded so far, and forgets them. */
export function printPhases(): void {
    console.log("\n      phase timings:");
    for (const p of phases.splice(0)) {
        console.log(`        ${p.name.padEnd(58)} ${p.seconds.toFixed(1).padStart(6)} s`);
    }
}

/** A running pod of a Deployment (the tracking server's or a model server's). */
export interface ServerPod {
    /** The rendered Deployment it is a pod of. */
    readonly workload: RecordedResource;
    readonly service: Service;
    readonly port: number;
    readonly container: LocalContainer;
    /**
     * The pod's other containers (the tracking server's metrics exporter), each on a free loopback
     * port instead of its rendered `--port`, by the name of that container port.
     */
    readonly sidecars: ReadonlyArray<{ readonly container: LocalContainer; readonly service: Service; readonly portName: string; readonly port: number }>;
}

/**
 * One pod of a Deployment started: its init containers' outcomes, and the pod once its probes pass;
 * none when an init container failed (the pod would stay in `Init:Error` and be retried).
 */
export interface PodStart {
    readonly init: StepResult[];
    readonly pod: ServerPod | undefined;
    /** Seconds in the init containers, and from the container's start to its passing probes. */
    readonly initSeconds: number;
    readonly readySeconds: number;
}

/** Logical name of the tracking server's Deployment (each served model has one of its own). */
export const SERVER_DEPLOYMENT = /^mlflow-deployment$/;

/** The outcome of one container of a Job's pod. */
export interface StepResult {
    readonly container: string;
    readonly code: number | string;
    readonly stdout: string;
    readonly stderr: string;
}

/** Login of a database role. */
export interface Login {
    readonly user: string;
    readonly password: string;
}

/** An access key moto issued for one of the rendered IAM users. */
export interface AccessKey {
    readonly id: string;
    readonly secret: string;
}

/** The value of `flag` on a command line. */
export function arg(argv: readonly string[], flag: string): string {
    const i = argv.indexOf(flag);
    if (i < 0 || i + 1 >= argv.length) {
        throw new Error(`the rendered command has no ${flag}`);
    }
    return argv[i + 1]!;
}

/** One HTTP request to a server on loopback with an explicit Host header. */
export function request(port: number, options: { path: string; host: string; auth?: string; method?: string; json?: unknown; headers?: Record<string, string> }): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
        const headers: Record<string, string> = { Host: options.host, ...(options.headers ?? {}) };
        const body = options.json === undefined ? undefined : JSON.stringify(options.json);
        if (body !== undefined) {
            headers["Content-Type"] = "application/json";
            // Without a length Node sends the body chunked, which the server refuses on DELETE.
            headers["Content-Length"] = String(Buffer.byteLength(body));
        }
        if (options.auth !== undefined) {
            headers.Authorization = `Basic ${Buffer.from(options.auth).toString("base64")}`;
        }
        const req = http.request({ host: "127.0.0.1", port, path: options.path, method: options.method ?? "GET", headers, timeout: 120000 }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        });
        req.on("error", reject);
        req.end(body);
    });
}

/** Options of a {@link Platform}. */
export interface PlatformOptions {
    /** Stack whose configuration is rendered. */
    readonly stack: string;
    /** Where this platform's volumes, logs and work files go (recreated). */
    readonly dir: string;
    /** Config keys changed from the stack's (awsEndpoint is always moto's). */
    readonly overrides?: Record<string, string | number | boolean>;
    /** Pinned versions changed from components/versions.ts (an earlier release of the stack). */
    readonly versions?: Readonly<Record<string, string>>;
    /** The MLflow venv standing in for the MLflow image. */
    readonly mlflowVenv?: string;
}

/** A platform rendered from a stack and run on loopback. */
export class Platform {
    readonly dir: string;
    readonly logs: string;
    moto!: Moto;
    r!: Rendered;
    region!: string;
    bucket!: string;
    artifactPrefix!: string;
    deployer: AccessKey | undefined;
    /** The real access keys, by logical name of the AccessKey resource. */
    readonly keys = new Map<string, AccessKey>();
    provisionReport: any;
    postgres!: Postgres;
    /** The external database, when the stack is configured with one ({@link startExternalPostgres}). */
    external: ExternalPostgres | undefined;
    pods: ServerPod[] = [];
    db!: Login & { tracking: string; auth: string };
    superuser!: Login;
    admin!: Login;
    images!: Record<string, ImageRuntime>;
    /**
     * The API server pods with a ServiceAccount token talk to ({@link attachKubeApi}); a pod that
     * mounts a token without one fails, so no test runs one against nothing.
     */
    kube: KubeApi | undefined;
    /** The config overrides of the current render. */
    private overrides: Record<string, string | number | boolean> | undefined;
    private podStarts = 0;
    private jobRuns = 0;

    constructor(readonly options: PlatformOptions) {
        this.dir = options.dir;
        this.mlflowVenv = options.mlflowVenv ?? MLFLOW_VENV;
        this.logs = path.join(this.dir, "logs");
        fs.rmSync(this.dir, { recursive: true, force: true });
        fs.mkdirSync(this.logs, { recursive: true });
        fs.mkdirSync(path.join(this.dir, "home"), { recursive: true });
    }

    /** The first pod of the Deployment, which the tests talk to. */
    get server(): ServerPod {
        const pod = this.pods[0];
        if (pod === undefined) {
            throw new Error("no server pod is running");
        }
        return pod;
    }

    /** The venv standing in for the rendered MLflow image (changes with {@link rerender}). */
    mlflowVenv: string;

    /**
     * Everything up to serving, as a first `pulumi up` on an empty cluster and account does: moto, the
     * render, the AWS resources, the credentials, PostgreSQL, the migration Job, the server's pods.
     * Resolves with the migration Job's containers' outcomes.
     */
    async bringUp(): Promise<StepResult[]> {
        await this.startMoto();
        await this.render();
        await this.provision();
        this.generatePasswords();
        await this.startPostgres();
        const migration = await this.runMigrationJob();
        await this.startServers();
        return migration;
    }

    /** Starts moto, HTTPS only, with IAM enforced. */
    async startMoto(): Promise<void> {
        this.moto = await startMoto(MOTO_VENV, path.join(this.dir, "moto"), this.logs);
    }

    /** Renders the stack with the S3 endpoint pointed at moto, and the images that stand in for the rendered ones. */
    async render(versions = this.options.versions, overrides = this.options.overrides): Promise<void> {
        this.overrides = overrides;
        this.r = new Rendered(await runProgram(this.options.stack, { ...(overrides ?? {}), awsEndpoint: this.moto.url },
            versions === undefined ? {} : { versions }));
        const mlflowImage: string = this.r.one(TYPES.deployment, SERVER_DEPLOYMENT).inputs.spec.template.spec.containers[0].image;
        // The StatefulSet's, or (with an external database) the backups' client tools'.
        const postgresImage_: string = [TYPES.statefulSet, TYPES.cronJob].flatMap((t) => this.r.all(t))
            .flatMap((w) => { const spec = (w.inputs.spec.jobTemplate?.spec ?? w.inputs.spec).template.spec; return [...(spec.initContainers ?? []), ...spec.containers]; })
            .map((c: any) => c.image as string).find((image) => /\/postgres:/.test(image))!;
        const pgBin = postgresBinaries();
        this.images = {
            // The MLflow image: its Python first on PATH, a UTF-8 locale. Beyond the image: trust in
            // the emulator's self-signed certificate, as the image trusts AWS's.
            [mlflowImage]: {
                env: {
                    PATH: `${this.mlflowVenv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
                    LANG: "C.UTF-8",
                    AWS_CA_BUNDLE: this.moto.caBundle,
                },
            },
            [postgresImage_]: postgresImage(pgBin, POSTGRES_UID, path.join(this.dir, "postgres-image")),
        };
    }

    /**
     * Renders the stack again, as a new release of the program would be deployed over this one
     * (by default the current versions, with the current MLflow venv), keeping the cloud resources,
     * the credentials and the database.
     */
    async rerender(options: { versions?: Readonly<Record<string, string>>; overrides?: Record<string, string | number | boolean>; mlflowVenv?: string } = {}): Promise<void> {
        const earlier = this.r;
        this.mlflowVenv = options.mlflowVenv ?? MLFLOW_VENV;
        await this.render(options.versions, options.overrides ?? this.overrides);
        this.r.adopt(earlier);
    }

    /**
     * The deploying identity, before anything else exists in the account: needed first when the
     * configuration names something the team brings (a KMS key). Otherwise {@link provision} makes it.
     */
    async bootstrap(region: string): Promise<void> {
        const boot = await this.python("bootstrap", { endpoint: this.moto.url, region }, { AWS_CA_BUNDLE: this.moto.caBundle });
        this.deployer = boot.deployer;
    }

    /** A customer-managed KMS key in moto, created by the deployer. */
    async createKmsKey(region: string): Promise<string> {
        return (await this.python("kms-key", { endpoint: this.moto.url, region, deployer: this.deployer }, { AWS_CA_BUNDLE: this.moto.caBundle })).arn;
    }

    /**
     * A new generation of access keys (`awsAccessKeyGeneration`), as `pulumi up` brings it: the stack
     * rendered again, the keys it names now created in moto and put in the rendered Secrets. The old
     * keys still exist: returns them, for the step Pulumi runs last (deleting them).
     */
    async rotateAccessKeys(generation: number): Promise<Array<{ user: string; key: AccessKey }>> {
        const old = this.r.run.ofType("aws:iam/accessKey:AccessKey").map((k) => ({ user: k.inputs.user as string, key: this.keys.get(k.name)! }));
        await this.rerender({ overrides: { ...(this.overrides ?? {}), awsAccessKeyGeneration: generation } });
        const fresh = this.r.run.ofType("aws:iam/accessKey:AccessKey").filter((k) => !this.keys.has(k.name));
        const report = await this.python("provision", {
            endpoint: this.moto.url, region: this.region, deployer: this.deployer, artifactPrefix: this.artifactPrefix,
            resources: fresh.map((x) => ({ type: x.type, name: x.name, inputs: x.inputs, state: x.state })),
        }, { AWS_CA_BUNDLE: this.moto.caBundle });
        this.adoptKeys(report.accessKeys);
        return old;
    }

    /** Real keys replace the mocks' wherever the rendered Secrets hold them. */
    private adoptKeys(created: Array<{ name: string; id: string; secret: string }>): void {
        for (const k of created) {
            const rendered = this.r.run.one("aws:iam/accessKey:AccessKey", new RegExp(`^${k.name}$`));
            this.keys.set(k.name, { id: k.id, secret: k.secret });
            this.r.substituteCredential(rendered.id, k.id);
            this.r.substituteCredential(rendered.state.secret, k.secret);
        }
    }

    /** Creates the rendered AWS resources in moto; the real access keys replace the mocks' in the rendered Secrets. */
    async provision(): Promise<any> {
        const awsResources = this.r.run.resources.filter((x) => x.type.startsWith("aws:"))
            .map((x) => ({ type: x.type, name: x.name, inputs: x.inputs, state: x.state }));
        const provider = this.r.run.one("pulumi:providers:aws");
        this.region = provider.inputs.region;
        const defaultTags = JSON.parse(provider.inputs.defaultTags ?? "{}").tags ?? {};
        const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(this.r.run.outputs.artifactUri as string);
        if (m === null) {
            throw new Error(`artifactUri ${this.r.run.outputs.artifactUri}`);
        }
        this.artifactPrefix = m[2]!;
        const report = await this.python("provision", {
            endpoint: this.moto.url, region: this.region, defaultTags, artifactPrefix: this.artifactPrefix, resources: awsResources,
            ...(this.deployer === undefined ? {} : { deployer: this.deployer }),
        }, { AWS_CA_BUNDLE: this.moto.caBundle });
        this.bucket = report.bucket;
        this.deployer = report.deployer;
        this.adoptKeys(report.accessKeys ?? []);
        this.provisionReport = report;
        return report;
    }

    /** Real passwords, generated as the program's RandomPassword resources specify (with hostile characters). */
    generatePasswords(): void {
        for (const pw of this.r.run.ofType("random:index/randomPassword:RandomPassword")) {
            this.r.substituteCredential(pw.state.result, generatePassword(pw.inputs));
        }
        const serverSecret = this.r.one(TYPES.secret, /mlflow-server/).state.metadata.name;
        this.admin = { user: this.r.run.outputs.adminUsername as string, password: this.r.secretValue(serverSecret, "admin-password") };
        if (this.external !== undefined) {
            // An external database: the login the stack was configured with, in the Secret it rendered.
            const component = this.r.run.one("mlflow-k8s:kubernetes:ExternalDatabase");
            const secret = this.r.all(TYPES.secret).find((x) => x.parent === component.urn)!.state.metadata.name;
            const overrides = this.overrides ?? {};
            this.db = {
                user: this.r.secretValue(secret, "username"), password: this.r.secretValue(secret, "password"),
                tracking: String(overrides.databaseName), auth: String(overrides.databaseAuthName),
            };
            return;
        }
        const pgSecret = this.r.one(TYPES.secret, /postgres-credentials/).state.metadata.name;
        const sts = this.r.one(TYPES.statefulSet, /postgres/);
        const env = sts.inputs.spec.template.spec.containers[0].env as any[];
        this.db = {
            user: this.r.secretValue(pgSecret, "username"),
            password: this.r.secretValue(pgSecret, "password"),
            tracking: env.find((e) => e.name === "MLFLOW_TRACKING_DB").value,
            auth: env.find((e) => e.name === "MLFLOW_AUTH_DB").value,
        };
        this.superuser = { user: env.find((e) => e.name === "POSTGRES_USER").value, password: this.r.secretValue(pgSecret, "postgres-password") };
    }

    /**
     * A team's PostgreSQL outside the cluster, TLS only, before the render (its port goes into the
     * stack's config). The tests' own connections ({@link sql}) then go to it, verify-full.
     */
    async startExternalPostgres(): Promise<ExternalPostgres> {
        this.external = await startExternalPostgres({
            dir: path.join(this.dir, "external-postgres"), logDir: this.logs, pgBin: postgresBinaries(), uid: POSTGRES_UID,
            image: postgresImage(postgresBinaries(), POSTGRES_UID, path.join(this.dir, "external-postgres-image")),
        });
        return this.external;
    }

    /** Starts (or restarts, on the same data) PostgreSQL from the rendered StatefulSet. */
    async startPostgres(): Promise<void> {
        this.postgres = await startPostgres(this.r, this.images, path.join(this.dir, "postgres"), this.logs);
    }

    /** Stops PostgreSQL, as a pod deletion does (SIGTERM to postgres: a fast shutdown). */
    async stopPostgres(): Promise<void> {
        await stopContainer(this.postgres.service, this.graceMs(this.r.one(TYPES.statefulSet, /postgres/)));
    }

    /** A workload's terminationGracePeriodSeconds, in milliseconds. */
    graceMs(workload: RecordedResource): number {
        const seconds = workload.inputs.spec.template.spec.terminationGracePeriodSeconds;
        expect(seconds, `${workload.name}: terminationGracePeriodSeconds`).to.be.a("number");
        return seconds * 1000;
    }

    /** psql as a role (the application role by default); rows split into fields. */
    async sql(database: string, query: string, as: Login = this.db): Promise<string[][]> {
        const result = await runToCompletion("psql", ["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", query], {
            env: {
                PATH: process.env.PATH, PGUSER: as.user, PGPASSWORD: as.password, PGDATABASE: database, PGCONNECT_TIMEOUT: "10",
                ...(this.external === undefined
                    ? { PGHOST: "127.0.0.1", PGPORT: String(this.postgres.port) }
                    : { PGHOST: this.external.host, PGPORT: String(this.external.port), PGSSLMODE: "verify-full", PGSSLROOTCERT: this.external.caFile }),
            },
            logFile: path.join(this.logs, "psql.log"),
        });
        if (result.code !== 0) {
            throw new Error(`psql ${database}: ${result.stderr}`);
        }
        return result.stdout.split("\n").filter((l) => l !== "").map((l) => l.split("\t"));
    }

    /**
     * Runs a Job's pod (or a CronJob's job template): init containers in order, each to
     * completion, stopping at the first failure as the kubelet does, then its containers. `env`
     * overrides container variables, as `kubectl create job` from a template with changes would.
     */
    async runPod(workload: RecordedResource, options: { env?: Record<string, string>; label?: string } = {}): Promise<StepResult[]> {
        this.jobRuns += 1;
        const label = `${options.label ?? workload.name}-${this.jobRuns}`;
        const spec = workload.type === TYPES.cronJob ? workload.inputs.spec.jobTemplate.spec : workload.inputs.spec;
        const pod = spec.template.spec;
        const asWorkload = { ...workload, inputs: { ...workload.inputs, spec } };
        const podDir = path.join(this.dir, label);
        const results: StepResult[] = [];
        const run = async (c: any): Promise<StepResult> => {
            const lc = await this.withServiceAccount(pod, workload, this.r.container(asWorkload, c.name, podDir, { images: this.images }), podDir);
            const withEnv = { ...lc, env: { ...lc.env, ...(options.env ?? {}) } };
            const result = await runContainer(withEnv, path.join(this.logs, `${label}-${c.name}.log`));
            return { container: c.name, code: result.code, stdout: result.stdout, stderr: result.stderr };
        };
        for (const c of pod.initContainers ?? []) {
            const result = await run(c);
            results.push(result);
            if (result.code !== 0) {
                return results;
            }
        }
        results.push(...await Promise.all(pod.containers.map(run)));
        return results;
    }

    /** The API server the pods that mount a ServiceAccount token reach. */
    attachKubeApi(api: KubeApi): void {
        this.kube = api;
    }

    /**
     * What the kubelet adds to a container of a pod with `automountServiceAccountToken: true`: the
     * ServiceAccount's token (issued by the API server), its CA and namespace at
     * /var/run/secrets/kubernetes.io/serviceaccount, and KUBERNETES_SERVICE_HOST/PORT.
     */
    private async withServiceAccount(pod: any, workload: RecordedResource, lc: LocalContainer, podDir: string): Promise<LocalContainer> {
        if (pod.automountServiceAccountToken !== true) {
            return lc;
        }
        if (this.kube === undefined) {
            throw new Error(`${workload.name} mounts a ServiceAccount token: the test must attach an API server (attachKubeApi)`);
        }
        const namespace: string = workload.inputs.metadata.namespace;
        const account: string = pod.serviceAccountName ?? "default";
        const dir = path.join(podDir, `serviceaccount-${lc.name}`);
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, "token"), await this.kube.serviceAccountToken(namespace, account), { mode: 0o644 });
        fs.copyFileSync(this.kube.caFile, path.join(dir, "ca.crt"));
        fs.writeFileSync(path.join(dir, "namespace"), namespace);
        return {
            ...lc,
            env: { ...lc.env, KUBERNETES_SERVICE_HOST: this.kube.host, KUBERNETES_SERVICE_PORT: String(this.kube.port) },
            sandbox: { ...lc.sandbox, mounts: [...lc.sandbox.mounts, { target: "/var/run/secrets/kubernetes.io/serviceaccount", source: dir, readOnly: true }] },
        };
    }

    /** Runs a pod and fails the test unless every container exits 0. */
    async runPodToSuccess(workload: RecordedResource, options: { env?: Record<string, string>; label?: string } = {}): Promise<StepResult[]> {
        const results = await this.runPod(workload, options);
        for (const r of results) {
            expect(r.code, `${workload.name}/${r.container}:\n${r.stderr.slice(-3000)}`).to.equal(0);
        }
        const pod = (workload.type === TYPES.cronJob ? workload.inputs.spec.jobTemplate.spec : workload.inputs.spec).template.spec;
        expect(results.length, `${workload.name}: every container ran`).to.equal((pod.initContainers ?? []).length + pod.containers.length);
        return results;
    }

    /** The migration Job, run to completion. */
    async runMigrationJob(): Promise<StepResult[]> {
        return this.runPodToSuccess(this.r.one(TYPES.job, /migrate/), { label: "job" });
    }

    /**
     * Starts the tracking server's pods at once, as a rollout on an empty cluster does (`replicas`,
     * or the autoscaler's minimum), each with fresh emptyDir volumes, and waits for all their probes.
     */
    async startServers(): Promise<void> {
        const deployment = this.r.one(TYPES.deployment, SERVER_DEPLOYMENT);
        const hpa = this.r.all("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
            .find((h) => h.inputs.spec.scaleTargetRef.name === deployment.state.metadata.name);
        const count: number = deployment.inputs.spec.replicas ?? hpa?.inputs.spec.minReplicas ?? 1;
        this.pods = await Promise.all(Array.from({ length: count }, () => this.startServer()));
    }

    /** Stops every pod of the tracking server (a scale to zero). */
    async stopServers(): Promise<void> {
        await Promise.all(this.pods.map((p) => this.stopPod(p)));
        this.pods = [];
    }

    /**
     * Deletes one pod of a Deployment as the kubelet does: the preStop hook, then SIGTERM, then
     * SIGKILL once the grace period (counted from the start of the hook) is over. Resolves with the
     * container's exit (code or signal).
     */
    async stopPod(pod: ServerPod): Promise<number | string> {
        const graceMs = this.graceMs(pod.workload);
        const started = Date.now();
        const preStop = pod.container.spec.lifecycle?.preStop;
        if (preStop !== undefined) {
            expect(preStop.exec?.command, `${pod.workload.name}: the preStop hook runs a command`).to.be.an("array");
            const log = pod.service.logFile.replace(/\.log$/, "-preStop.log");
            const result = await runContainer(pod.container, log, preStop.exec.command, graceMs);
            expect(result.code, `preStop hook:\n${result.stderr.slice(-2000)}`).to.equal(0);
        }
        // Every container gets SIGTERM at once, within the same grace period.
        const remaining = Math.max(0, graceMs - (Date.now() - started));
        const [main] = await Promise.all([stopContainer(pod.service, remaining), ...pod.sidecars.map((c) => stopContainer(c.service, remaining))]);
        return main;
    }

    /** Starts one pod of the tracking server and waits for its probes. */
    async startServer(): Promise<ServerPod> {
        const start = await this.startPod(this.r.one(TYPES.deployment, SERVER_DEPLOYMENT), "server");
        for (const step of start.init) {
            expect(step.code, `server init container ${step.container}:\n${step.stderr.slice(-3000)}`).to.equal(0);
        }
        return start.pod!;
    }

    /**
     * Cluster address of the tracking server's Service → the first pod's loopback address, for the
     * containers that call the server (a model server's download). Given per container, never
     * globally: the server's own `--allowed-hosts` holds the same address, as a name to accept.
     */
    trackingServiceAddresses(): Map<string, string> {
        return new Map([[this.r.serviceAddress(this.r.run.outputs.serviceName as string), `127.0.0.1:${this.server.port}`]]);
    }

    /**
     * Starts one pod of a Deployment as the kubelet does: its init containers in order, each to
     * completion (stopping at the first failure), then its containers: the first listening on a free
     * loopback port instead of the rendered `--host 0.0.0.0 --port <container port named http>`,
     * until its startup and readiness probes pass; any others (sidecars) on free ports of their own.
     * @param label names the pod's volumes and logs (`<label>-<n>`)
     * @param addresses cluster address → loopback address for this pod's containers only
     */
    async startPod(deployment: RecordedResource, label: string, addresses?: ReadonlyMap<string, string>): Promise<PodStart> {
        const n = ++this.podStarts;
        const name = `${label}-${n}`;
        const podDir = path.join(this.dir, name);
        const spec = deployment.inputs.spec.template.spec;
        const resolve = (container: string) => this.r.container(deployment, container, podDir, { images: this.images, addresses });
        const t0 = Date.now();
        const init: StepResult[] = [];
        for (const c of spec.initContainers ?? []) {
            const result = await runContainer(resolve(c.name), path.join(this.logs, `${name}-${c.name}.log`));
            init.push({ container: c.name, code: result.code, stdout: result.stdout, stderr: result.stderr });
            if (result.code !== 0) {
                return { init, pod: undefined, initSeconds: (Date.now() - t0) / 1000, readySeconds: 0 };
            }
        }
        const t1 = Date.now();
        const lc = resolve(spec.containers[0].name);
        const httpPort = lc.spec.ports.find((p: any) => p.name === "http");
        expect(httpPort, `${deployment.name}: container port named http`).to.not.equal(undefined);
        // The pod must listen on its own IP on the port its probes and Service name; on this
        // machine the same process listens on a free loopback port instead.
        expect(arg(lc.argv, "--host"), "--host").to.equal("0.0.0.0");
        expect(arg(lc.argv, "--port"), "--port").to.equal(String(httpPort.containerPort));
        const port = await freePort();
        const argv = lc.argv.map((a, i) =>
            lc.argv[i - 1] === "--host" ? "127.0.0.1" : lc.argv[i - 1] === "--port" ? String(port) : a);
        const service = startContainer(lc, path.join(this.logs, `${name}.log`), argv);
        const probe = async (p: any): Promise<boolean> => {
            const named = lc.spec.ports.find((x: any) => x.name === p.httpGet.port);
            if ((named?.containerPort ?? p.httpGet.port) !== httpPort.containerPort) {
                throw new Error(`probe port ${p.httpGet.port} is not the container's port`);
            }
            // The kubelet probes the pod IP; the probe path must answer whatever the Host.
            return request(port, { path: p.httpGet.path, host: `10.244.0.10:${httpPort.containerPort}` })
                .then((res) => res.status >= 200 && res.status < 400, () => false);
        };
        // The other containers start with it, as the kubelet starts them; each listens on the one port
        // it renders, moved to a free loopback port like the server's.
        const sidecars = await Promise.all(spec.containers.slice(1).map(async (c: any) => {
            const sc = resolve(c.name);
            expect(sc.spec.ports, `${deployment.name}/${c.name}: one container port`).to.have.length(1);
            const rendered = sc.spec.ports[0];
            expect(arg(sc.argv, "--host"), `${c.name} --host`).to.equal("0.0.0.0");
            expect(arg(sc.argv, "--port"), `${c.name} --port`).to.equal(String(rendered.containerPort));
            const scPort = await freePort();
            const scArgv = sc.argv.map((a, i) =>
                sc.argv[i - 1] === "--host" ? "127.0.0.1" : sc.argv[i - 1] === "--port" ? String(scPort) : a);
            return { container: sc, service: startContainer(sc, path.join(this.logs, `${name}-${c.name}.log`), scArgv), portName: rendered.name as string, port: scPort };
        }));
        await waitForProbes(lc, service, probe);
        return { init, pod: { workload: deployment, service, port, container: lc, sidecars }, initSeconds: (t1 - t0) / 1000, readySeconds: (Date.now() - t1) / 1000 };
    }

    /** The tracking URI a client on this machine uses: the rendered port-forward URL, on the first pod's port. */
    trackingUri(): string {
        const local = new URL(this.r.run.outputs.localUrl as string);
        local.port = String(this.server.port);
        // The server's static prefix, when it has one, is the URL's path.
        return `${local.origin}${local.pathname.replace(/\/$/, "")}`;
    }

    /** Runs a contract.py subcommand in the MLflow venv (or another venv). */
    async python(command: string, input: unknown, env: NodeJS.ProcessEnv = {}, venv = this.mlflowVenv): Promise<any> {
        const result = await runToCompletion(path.join(venv, "bin", "python"), [PY_HELPER, command], {
            env: {
                PATH: process.env.PATH, HOME: path.join(this.dir, "home"),
                // A healthy platform needs no retries; the client's default backoff (7 retries, factor 2)
                // would turn a refused request into minutes of waiting before the failure shows.
                MLFLOW_HTTP_REQUEST_MAX_RETRIES: "2", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR: "1",
                ...env,
            },
            input: JSON.stringify(input),
            logFile: path.join(this.logs, `py-${command}.log`),
            timeoutMs: 600000,
        });
        if (result.code !== 0) {
            throw new Error(`contract.py ${command} failed (${result.code}):\n${result.stderr.slice(-4000)}`);
        }
        const lines = result.stdout.trim().split("\n");
        return JSON.parse(lines[lines.length - 1]!);
    }

    /** The environment of a client logged in as the admin, through the first pod. */
    clientEnv(extra: Record<string, string> = {}): Record<string, string> {
        return {
            MLFLOW_TRACKING_URI: this.trackingUri(),
            MLFLOW_TRACKING_USERNAME: this.admin.user,
            MLFLOW_TRACKING_PASSWORD: this.admin.password,
            // Every artifact byte through the tracking server.
            MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD: "false",
            ...extra,
        };
    }
}

/** The machine's PostgreSQL server binaries, the newest major installed. */
function postgresBinaries(): string {
    const pgBin = fs.readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a))
        .map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => fs.existsSync(path.join(d, "initdb")));
    if (pgBin === undefined) {
        throw new Error("no PostgreSQL server binaries (scripts/integration/setup.sh installs them)");
    }
    return pgBin;
}
