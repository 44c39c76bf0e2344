import * as fs from "fs";
import * as path from "path";
import { expect } from "chai";
import { AUTH_CONFIG_DIR, AUTH_CONFIG_FILE, CONTAINER_PORT, METRICS_DIR, METRICS_PATH, METRICS_PORT, SERVICE_NAME, SERVICE_PORT, serverArgs } from "../components/mlflowSettings";
import { S3_SECRET_KEYS } from "../components/s3Credentials";
import { parseQuantity } from "../components/config";
import { METRICS_EXPORTER_RESOURCES, MIGRATION_DEADLINE_SECONDS, ROLLOUT_TIMEOUT_SECONDS, METRICS_EXPORTER_DIR, REQUEST_BOUNDS_SOURCE_DIR, SERVER_SECRET_KEYS } from "../components/trackingServer";
import { REQUEST_BOUNDS_DIR, REQUEST_BOUNDS_DIST_INFO } from "../components/mlflowSettings";
import { SERVER_TMP_BYTES } from "../components/sizing";
import { MLFLOW_IMAGE, MLFLOW_UID } from "../components/versions";
import { ProgramRun, runProgram, stackRun, variantRun } from "./harness";

const DEPLOYMENT = "kubernetes:apps/v1:Deployment";
/** The tracking server's Deployment, by resource name: the variant run also has model servers'. */
const SERVER_DEPLOYMENT = /^mlflow-deployment$/;
const JOB = "kubernetes:batch/v1:Job";
/** The migration Job, by resource name: the schema rollout's quiesce and resume Jobs are Jobs too. */
const MIGRATION_JOB = /^mlflow-migrate$/;

/** Value of a `--flag value` pair in an argument list. */
function flag(args: string[], name: string): string | undefined {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args[i + 1];
}

describe("MlflowTrackingServer", () => {
    let run: ProgramRun;
    let pod: any;
    let server: any;
    let env: Record<string, any>;
    before(async () => {
        run = await stackRun("minikube");
        pod = run.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.spec;
        server = pod.containers[0];
        env = Object.fromEntries(server.env.map((e: any) => [e.name, e]));
    });

    describe("S3 credentials", () => {
        it("go straight from the access key into a Secret, as stringData, with the region", () => {
            const key = run.one("aws:iam/accessKey:AccessKey", /^mlflow-artifacts-access-key$/);
            const secret = run.one("kubernetes:core/v1:Secret", /^mlflow-s3-credentials$/);
            expect(secret.inputs.stringData).to.deep.equal({
                [S3_SECRET_KEYS.accessKeyId]: key.id,
                [S3_SECRET_KEYS.secretAccessKey]: key.state.secret,
                [S3_SECRET_KEYS.region]: "us-east-1",
            });
            expect(secret.inputs.data).to.equal(undefined);
            expect(secret.inputs.metadata.namespace).to.equal("mlflow");
            expect(secret.dependencies).to.include(key.urn);
        });

        it("reach the server only through secretKeyRef", () => {
            const name = run.one("kubernetes:core/v1:Secret", /^mlflow-s3-credentials$/).state.metadata.name;
            for (const [variable, key] of [["AWS_ACCESS_KEY_ID", S3_SECRET_KEYS.accessKeyId], ["AWS_SECRET_ACCESS_KEY", S3_SECRET_KEYS.secretAccessKey], ["AWS_DEFAULT_REGION", S3_SECRET_KEYS.region]]) {
                expect(env[variable!].valueFrom.secretKeyRef, variable).to.deep.equal({ name, key });
                expect(env[variable!].value).to.equal(undefined);
            }
        });
    });

    describe("command line", () => {
        it("runs the pinned -full image with an explicit command", () => {
            expect(server.image).to.equal(MLFLOW_IMAGE);
            expect(MLFLOW_IMAGE).to.match(/^ghcr\.io\/mlflow\/mlflow:v\d+\.\d+\.\d+-full$/);
            expect(server.command).to.deep.equal(["mlflow"]);
            expect(server.args[0]).to.equal("server");
        });

        it("binds all interfaces on the container port", () => {
            expect(flag(server.args, "--host")).to.equal("0.0.0.0");
            expect(flag(server.args, "--port")).to.equal(String(CONTAINER_PORT));
            expect(server.ports).to.deep.equal([{ name: "http", containerPort: CONTAINER_PORT, protocol: "TCP" }]);
        });

        it("stores metadata in PostgreSQL without a password in the URI", () => {
            const uri = flag(server.args, "--backend-store-uri")!;
            expect(uri).to.equal(`postgresql+psycopg2://${run.outputs.postgresHost}:5432/mlflow`);
            expect(uri).to.not.match(/:[^/]*@/);
            const pgSecret = run.one("kubernetes:core/v1:Secret", /postgres-credentials/).state.metadata.name;
            expect(env.PGPASSWORD.valueFrom.secretKeyRef).to.deep.equal({ name: pgSecret, key: "password" });
            expect(env.PGUSER.valueFrom.secretKeyRef).to.deep.equal({ name: pgSecret, key: "username" });
        });

        it("proxies artifacts to the bucket's prefix, so clients need no AWS keys", () => {
            expect(server.args).to.include("--serve-artifacts");
            expect(flag(server.args, "--artifacts-destination")).to.equal(run.outputs.artifactUri);
            expect(server.args).to.not.include("--default-artifact-root");
            expect(server.args).to.not.include("--no-serve-artifacts");
        });

        it("turns basic auth on, with a generated admin password and Flask key", () => {
            expect(flag(server.args, "--app-name")).to.equal("bounded-basic-auth");
            const secret = run.one("kubernetes:core/v1:Secret", /-server$/);
            expect(env.MLFLOW_AUTH_ADMIN_USERNAME.value).to.equal("admin");
            expect(env.MLFLOW_AUTH_ADMIN_PASSWORD.valueFrom.secretKeyRef).to.deep.equal({ name: secret.state.metadata.name, key: SERVER_SECRET_KEYS.adminPassword });
            expect(env.MLFLOW_FLASK_SERVER_SECRET_KEY.valueFrom.secretKeyRef).to.deep.equal({ name: secret.state.metadata.name, key: SERVER_SECRET_KEYS.flaskSecretKey });
            const admin = secret.inputs.stringData[SERVER_SECRET_KEYS.adminPassword];
            expect(admin).to.equal(run.outputs.adminPassword);
            expect(admin, "MLflow's public default").to.not.equal("password1234");
            expect(admin.length).to.be.at.least(20);
            expect(secret.inputs.stringData[SERVER_SECRET_KEYS.flaskSecretKey].length).to.be.at.least(64);
        });

        it("reads an auth config that names the auth database and no secret", () => {
            const cm = run.one("kubernetes:core/v1:ConfigMap", /auth-config/);
            const ini: string = cm.inputs.data[AUTH_CONFIG_FILE];
            expect(ini).to.include(`database_uri = postgresql+psycopg2://${run.outputs.postgresHost}:5432/mlflow_auth`);
            expect(ini).to.include("default_permission = READ");
            expect(ini).to.not.match(/admin_password|password\s*=/);
            expect(env.MLFLOW_AUTH_CONFIG_PATH.value).to.equal(`${AUTH_CONFIG_DIR}/${AUTH_CONFIG_FILE}`);
            const mount = server.volumeMounts.find((m: any) => m.mountPath === AUTH_CONFIG_DIR);
            expect(pod.volumes.find((v: any) => v.name === mount.name).configMap.name).to.equal(cm.state.metadata.name);
        });

        it("allows every in-cluster name of the Service and localhost", () => {
            const hosts = flag(server.args, "--allowed-hosts")!.split(",");
            for (const h of [SERVICE_NAME, `${SERVICE_NAME}.mlflow`, `${SERVICE_NAME}.mlflow.svc`, `${SERVICE_NAME}.mlflow.svc.cluster.local`]) {
                expect(hosts).to.include(h);
                expect(hosts).to.include(`${h}:${SERVICE_PORT}`);
            }
            expect(hosts).to.include.members(["localhost", "localhost:*"]);
            expect(hosts).to.not.include("*");
        });

        it("uses replicas, workers, pool sizes and resources from config", () => {
            expect(run.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.replicas).to.equal(1);
            expect(flag(server.args, "--workers")).to.equal("2");
            expect(env.MLFLOW_SQLALCHEMYSTORE_POOL_SIZE.value).to.equal("5");
            expect(env.MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW.value).to.equal("36");
            expect(server.resources).to.deep.include({ requests: { cpu: "100m", memory: "768Mi", "ephemeral-storage": "512Mi" } });
            expect(server.resources.limits).to.include({ cpu: "2", memory: "1664Mi" });
        });

        it("keeps MLflow's job runner off: eight processes and 1.4 GiB per pod, and periodic tasks on every replica", () => {
            expect(env.MLFLOW_SERVER_ENABLE_JOB_EXECUTION.value).to.equal("false");
        });

        it("caches verified credentials per worker for the configured TTL", async () => {
            const ini = run.one("kubernetes:core/v1:ConfigMap", /auth-config/).inputs.data["basic_auth.ini"];
            expect(ini).to.include("auth_cache_ttl_seconds = 30").and.include("auth_cache_max_size = 10000");
            const off = await runProgram("minikube", { mlflowAuthCacheTtlSeconds: 0 });
            expect(off.one("kubernetes:core/v1:ConfigMap", /auth-config/).inputs.data["basic_auth.ini"]).to.include("auth_cache_ttl_seconds = 0");
        });
    });

    describe("pod", () => {
        it("probes readiness on /health, which needs neither auth nor an allowed Host, and liveness on the open port only", () => {
            for (const probe of ["readinessProbe", "startupProbe"]) {
                expect(server[probe].httpGet, probe).to.deep.equal({ path: "/health", port: "http" });
            }
            expect(server.livenessProbe.tcpSocket).to.deep.equal({ port: "http" });
            expect(server.livenessProbe.httpGet).to.equal(undefined);
            // A server slow under load leaves the Service long before it would be restarted.
            const budget = (p: any) => p.periodSeconds * p.failureThreshold;
            expect(budget(server.livenessProbe)).to.be.greaterThan(budget(server.readinessProbe));
        });

        it("requests and limits ephemeral storage in every container, covering the emptyDirs it writes", () => {
            const all = [...run.ofType(DEPLOYMENT), ...run.ofType(JOB), ...run.ofType("kubernetes:apps/v1:StatefulSet")]
                .flatMap((w) => [...(w.inputs.spec.template.spec.initContainers ?? []), ...w.inputs.spec.template.spec.containers]);
            expect(all.length).to.be.at.least(6);
            for (const c of all) {
                expect(c.resources.requests["ephemeral-storage"], c.name).to.be.a("string");
                expect(parseQuantity(c.resources.limits["ephemeral-storage"]), c.name)
                    .to.be.at.least(parseQuantity(c.resources.requests["ephemeral-storage"]));
            }
            const tmp = pod.volumes.find((v: any) => v.name === "tmp").emptyDir.sizeLimit;
            expect(parseQuantity(server.resources.limits["ephemeral-storage"]), "the spooled uploads fit").to.be.greaterThan(parseQuantity(tmp));
        });

        it("encrypts gateway secrets with a generated KEK passphrase from the Secret, never MLflow's public default", () => {
            const secret = run.one("kubernetes:core/v1:Secret", /-server$/);
            expect(env.MLFLOW_CRYPTO_KEK_PASSPHRASE.valueFrom.secretKeyRef).to.deep.equal({ name: secret.state.metadata.name, key: "kek-passphrase" });
            const kek = run.one("random:index/randomPassword:RandomPassword", /kek-passphrase/);
            expect(kek.inputs.length).to.be.at.least(32);
            expect(kek.inputs.keepers, "a new passphrase needs the rotation of README").to.equal(undefined);
            expect(secret.inputs.stringData["kek-passphrase"]).to.equal(kek.state.result);
        });

        it("runs restricted with a read-only root and a writable /tmp", () => {
            expect(pod.securityContext).to.include({ runAsNonRoot: true, runAsUser: MLFLOW_UID, fsGroup: MLFLOW_UID });
            expect(server.securityContext).to.deep.include({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true });
            expect(server.securityContext.capabilities).to.deep.equal({ drop: ["ALL"] });
            expect(pod.automountServiceAccountToken).to.equal(false);
            const tmp = server.volumeMounts.find((m: any) => m.mountPath === "/tmp");
            expect(pod.volumes.find((v: any) => v.name === tmp.name).emptyDir).to.exist;
            expect(env.HOME.value).to.equal("/tmp");
        });

        it("rolls when a Secret or the config changes", async () => {
            const before = run.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.metadata.annotations["checksum/config"];
            expect(before).to.match(/^[0-9a-f]{64}$/);
            const changed = await variantRun();
            const after = changed.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.metadata.annotations["checksum/config"];
            expect(after).to.not.equal(before);
            expect(changed.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.replicas, "the autoscaler owns replicas").to.equal(undefined);
            expect(changed.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", /^mlflow-hpa$/).inputs.spec.scaleTargetRef.name)
                .to.equal(changed.one(DEPLOYMENT, SERVER_DEPLOYMENT).state.metadata.name);
        });
    });

    describe("request bounds", () => {
        it("runs MLflow's basic-auth app behind the plugin, mounted read-only on PYTHONPATH with its entry point", () => {
            expect(flag(server.args, "--app-name")).to.equal("bounded-basic-auth");
            expect(env.PYTHONPATH.value).to.equal(REQUEST_BOUNDS_DIR);
            const mount = server.volumeMounts.find((m: any) => m.mountPath === REQUEST_BOUNDS_DIR);
            expect(mount.readOnly).to.equal(true);
            const volume = pod.volumes.find((v: any) => v.name === mount.name);
            expect(volume.configMap.defaultMode).to.equal(0o444);
            expect(volume.configMap.items.map((i: any) => i.path)).to.deep.equal(
                ["request_bounds.py", `${REQUEST_BOUNDS_DIST_INFO}/METADATA`, `${REQUEST_BOUNDS_DIST_INFO}/entry_points.txt`]);
            const cm = run.ofType("kubernetes:core/v1:ConfigMap").find((c) => c.state.metadata.name === volume.configMap.name)!;
            for (const f of fs.readdirSync(REQUEST_BOUNDS_SOURCE_DIR)) {
                expect(cm.inputs.data[f], f).to.equal(fs.readFileSync(path.join(REQUEST_BOUNDS_SOURCE_DIR, f), "utf8"));
            }
            expect(cm.inputs.data["entry_points.txt"]).to.match(/^\[mlflow\.app\]\nbounded-basic-auth = request_bounds:create_app$/m);
        });

        it("hands the plugin the limits of the stack's defaults, in bytes and seconds, and caps uvicorn's connections from them", () => {
            expect(env.REQUEST_BOUNDS_MAX_BODY_BYTES.value).to.equal(String(2 * 2 ** 20));
            expect(env.REQUEST_BOUNDS_MAX_UPLOAD_BYTES.value).to.equal(String(2 * 2 ** 30));
            expect(env.REQUEST_BOUNDS_BODY_BUDGET_BYTES.value).to.equal(String(2 * 2 ** 20));
            expect(env.REQUEST_BOUNDS_MAX_CONCURRENT.value).to.equal("64");
            expect(env.REQUEST_BOUNDS_BODY_TIMEOUT_SECONDS.value).to.equal("30");
            expect(flag(server.args, "--uvicorn-opts")).to.equal("--timeout-keep-alive 75 --limit-concurrency 256");
            const tmp = pod.volumes.find((v: any) => v.name === "tmp");
            expect(parseQuantity(tmp.emptyDir.sizeLimit), "the upload limit's ceiling is the /tmp that spools it").to.equal(SERVER_TMP_BYTES);
        });

        it("renders the pools derived for more replicas, and the requests per worker they serve", async () => {
            for (const [replicas, pool, overflow, concurrent] of [[1, 5, 36, 64], [2, 1, 28, 28], [4, 1, 13, 13]] as const) {
                const scaled = replicas === 1 ? run : await runProgram("minikube", { mlflowReplicas: replicas });
                const c = scaled.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.spec.containers[0];
                const e = Object.fromEntries(c.env.map((x: any) => [x.name, x.value]));
                expect([e.MLFLOW_SQLALCHEMYSTORE_POOL_SIZE, e.MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW, e.REQUEST_BOUNDS_MAX_CONCURRENT], `${replicas} replicas`)
                    .to.deep.equal([String(pool), String(overflow), String(concurrent)]);
                expect(flag(c.args, "--uvicorn-opts")).to.equal(`--timeout-keep-alive 75 --limit-concurrency ${4 * concurrent}`);
                expect(scaled.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.replicas).to.equal(replicas);
            }
            const autoscaled = await runProgram("minikube", { mlflowMaxReplicas: 3 });
            const e = Object.fromEntries(autoscaled.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.spec.containers[0].env.map((x: any) => [x.name, x.value]));
            expect([e.MLFLOW_SQLALCHEMYSTORE_POOL_SIZE, e.MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW, e.REQUEST_BOUNDS_MAX_CONCURRENT], "sized for the autoscaler's maximum").to.deep.equal(["1", "18", "18"]);
            expect(autoscaled.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", /^mlflow-hpa$/).inputs.spec.maxReplicas).to.equal(3);
        });

        it("follows the config keys, and rolls the pods when they change", async () => {
            const changed = await runProgram("minikube", {
                mlflowMaxRequestBodySize: "1Mi", mlflowMaxUploadSize: "512Mi", mlflowRequestBodyBudget: "1Mi",
                mlflowMaxConcurrentRequests: 10, mlflowRequestBodyTimeoutSeconds: 120,
            });
            const c = changed.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.spec.containers[0];
            const e = Object.fromEntries(c.env.map((x: any) => [x.name, x.value]));
            expect([e.REQUEST_BOUNDS_MAX_BODY_BYTES, e.REQUEST_BOUNDS_MAX_UPLOAD_BYTES, e.REQUEST_BOUNDS_BODY_BUDGET_BYTES, e.REQUEST_BOUNDS_MAX_CONCURRENT, e.REQUEST_BOUNDS_BODY_TIMEOUT_SECONDS])
                .to.deep.equal([String(2 ** 20), String(512 * 2 ** 20), String(2 ** 20), "10", "120"]);
            expect(flag(c.args, "--uvicorn-opts")).to.equal("--timeout-keep-alive 75 --limit-concurrency 40");
            expect(changed.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.metadata.annotations["checksum/config"])
                .to.not.equal(run.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.metadata.annotations["checksum/config"]);
        });
    });

    describe("migration Job", () => {
        it("upgrades the tracking schema, then the auth schema, then sets the admin user, in one interpreter with the server's image", () => {
            const job = run.one(JOB, MIGRATION_JOB).inputs.spec.template.spec;
            const [migrate] = job.containers;
            expect(migrate.name).to.equal("migrate");
            expect(migrate.image).to.equal(MLFLOW_IMAGE);
            expect(migrate.command).to.deep.equal(["python"]);
            expect(migrate.args).to.deep.equal(["/opt/mlflow/server/migrate.py", flag(server.args, "--backend-store-uri"),
                `postgresql+psycopg2://${run.outputs.postgresHost}:5432/mlflow_auth`]);
            const migrateEnv = Object.fromEntries(migrate.env.map((e: any) => [e.name, e]));
            expect(migrateEnv.PGPASSWORD.valueFrom.secretKeyRef).to.exist;
            expect(migrateEnv.MLFLOW_AUTH_ADMIN_USERNAME.value).to.equal("admin");
            expect(migrateEnv.MLFLOW_AUTH_ADMIN_PASSWORD.valueFrom.secretKeyRef).to.deep.equal(env.MLFLOW_AUTH_ADMIN_PASSWORD.valueFrom.secretKeyRef);
            expect(migrate.securityContext.readOnlyRootFilesystem).to.equal(true);
            const scripts = run.one("kubernetes:core/v1:ConfigMap", /^mlflow-scripts$/);
            // rollout.py is the schema rollout's (its quiesce and resume Jobs mount the same ConfigMap).
            expect(Object.keys(scripts.inputs.data)).to.deep.equal(["migrate.py", "purge.py", "rollout.py", "serving.py"]);
            const volume = job.volumes.find((v: any) => v.name === "scripts");
            expect(volume.configMap.name).to.equal(scripts.state.metadata.name);
            expect(job.restartPolicy).to.equal("OnFailure");
            expect(run.one(JOB, MIGRATION_JOB).inputs.metadata.annotations, "a failed migration is retried by the next update")
                .to.deep.equal({ "pulumi.com/replaceUnready": "true" });
        });

        it("runs again when the admin's name or password changes, so the admin always matches the stack", async () => {
            const renamed = await runProgram("minikube", { mlflowAdminUsername: "platform-admin" });
            const template = (r: ProgramRun) => JSON.stringify(r.one(JOB, MIGRATION_JOB).inputs.spec.template);
            expect(template(renamed), "a new template replaces the Job").to.not.equal(template(run));
            // A new password replaces the Secret (data is replace-only), whose generated name the Job reads.
            const secretRef = run.one(JOB, MIGRATION_JOB).inputs.spec.template.spec.containers[0].env.find((e: any) => e.name === "MLFLOW_AUTH_ADMIN_PASSWORD").valueFrom.secretKeyRef;
            expect(secretRef.name).to.equal(run.one("kubernetes:core/v1:Secret", /-server$/).state.metadata.name);
        });

        it("backs up both databases first, with the backup identity, so an upgrade can be rolled back", () => {
            const job = run.one(JOB, MIGRATION_JOB).inputs.spec.template.spec;
            const backup = run.one("kubernetes:batch/v1:CronJob", /^mlflow-db-backup-cronjob$/).inputs.spec.jobTemplate.spec.template.spec;
            const [dump, upload] = job.initContainers;
            expect([dump.name, upload.name]).to.deep.equal(["backup-dump", "backup-upload"]);
            // The same steps as the scheduled backup, with another reason in the manifest.
            expect(dump).to.deep.equal(backup.initContainers[0]);
            const reason = (c: any) => c.env.find((e: any) => e.name === "BACKUP_REASON").value;
            expect(reason(upload)).to.equal("pre-migration");
            expect(reason(backup.containers[0])).to.equal("scheduled");
            expect({ ...upload, env: upload.env.filter((e: any) => e.name !== "BACKUP_REASON") })
                .to.deep.equal({ ...backup.containers[0], env: backup.containers[0].env.filter((e: any) => e.name !== "BACKUP_REASON") });
            const volumes = new Set(job.volumes.map((v: any) => v.name));
            for (const c of [dump, upload]) {
                for (const m of c.volumeMounts) {
                    expect(volumes.has(m.name), `${c.name} mounts ${m.name}`).to.equal(true);
                }
            }
        });

        it("may run longer than an image pull, and Pulumi waits for it longer than it may run", () => {
            const job = run.one(JOB, MIGRATION_JOB);
            expect(job.inputs.spec.activeDeadlineSeconds).to.equal(MIGRATION_DEADLINE_SECONDS);
            expect(MIGRATION_DEADLINE_SECONDS, "pull, backup and migrations").to.be.greaterThan(ROLLOUT_TIMEOUT_SECONDS + 30 * 60);
        });

        it("completes before the Deployment rolls out, and starts only once PostgreSQL is ready and the writers are stopped", () => {
            expect(run.one(DEPLOYMENT, SERVER_DEPLOYMENT).dependencies).to.include(run.one(JOB, MIGRATION_JOB).urn);
            expect(run.one(JOB, MIGRATION_JOB).dependencies).to.include(run.one("kubernetes:apps/v1:StatefulSet").urn);
            expect(run.one(JOB, MIGRATION_JOB).dependencies, "after the schema rollout's quiesce Job").to.include(run.one(JOB, /^mlflow-rollout-quiesce$/).urn);
        });
    });

    describe("Service", () => {
        it("is mlflow-service, port 80 to the container port, selecting exactly the server's pods", () => {
            const svc = run.one("kubernetes:core/v1:Service", /^mlflow-service$/).inputs;
            const deployment = run.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs;
            expect(svc.metadata.name).to.equal("mlflow-service");
            expect(svc.spec.ports).to.deep.equal([{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }]);
            expect(svc.spec.selector).to.deep.equal(deployment.spec.selector.matchLabels);
            for (const [k, v] of Object.entries(svc.spec.selector)) {
                expect(deployment.spec.template.metadata.labels[k]).to.equal(v);
            }
            const job = run.one(JOB, MIGRATION_JOB).inputs.spec.template.metadata.labels;
            expect(Object.entries(svc.spec.selector).every(([k, v]) => job[k] === v), "the migration Job is not a backend").to.equal(false);
        });
    });

    describe("Prometheus metrics", () => {
        let exporter: any;
        let template: any;
        before(() => {
            template = run.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template;
            expect(pod.containers.map((c: any) => c.name)).to.deep.equal(["mlflow", "metrics"]);
            exporter = pod.containers[1];
        });

        it("has the workers count requests in a shared directory, and nothing else changes on the server's port", () => {
            expect(flag(server.args, "--expose-prometheus")).to.equal(METRICS_DIR);
            expect(env.PROMETHEUS_MULTIPROC_DIR).to.deep.equal({ name: "PROMETHEUS_MULTIPROC_DIR", value: METRICS_DIR });
            // The server's port keeps its Host check (no pod IP, no wildcard) and basic auth.
            const hosts = flag(server.args, "--allowed-hosts")!.split(",");
            expect(hosts).to.not.include("*");
            expect(hosts.filter((h) => /^\d|^\[/.test(h) && !h.startsWith("127.0.0.1"))).to.deep.equal([]);
            expect(flag(server.args, "--app-name")).to.equal("bounded-basic-auth");
            expect(serverArgs({ backendStoreUri: "b", artifactsDestination: "s3://x/y", workers: 1, allowedHosts: ["h"], maxConcurrentRequests: 64 }))
                .to.not.include("--expose-prometheus");
        });

        it("keeps that directory on a size-limited emptyDir, the root filesystem read-only", () => {
            const volume = pod.volumes.find((v: any) => v.name === "metrics");
            expect(volume).to.deep.equal({ name: "metrics", emptyDir: { sizeLimit: "64Mi" } });
            expect(server.volumeMounts).to.deep.include({ name: "metrics", mountPath: METRICS_DIR });
            expect(exporter.volumeMounts).to.deep.include({ name: "metrics", mountPath: METRICS_DIR, readOnly: true });
            for (const c of [server, exporter]) {
                expect(c.securityContext.readOnlyRootFilesystem, c.name).to.equal(true);
            }
            // Nothing else of the exporter is writable.
            expect(exporter.volumeMounts.filter((m: any) => m.readOnly !== true)).to.deep.equal([]);
        });

        it("serves them on a port of its own, from the server's image, with the mounted exporter script", () => {
            expect(exporter.image).to.equal(MLFLOW_IMAGE);
            expect(exporter.command).to.deep.equal(["python"]);
            expect(exporter.args).to.deep.equal(["/opt/mlflow/metrics/metrics.py", "--host", "0.0.0.0", "--port", String(METRICS_PORT)]);
            expect(exporter.ports).to.deep.equal([{ name: "metrics", containerPort: METRICS_PORT, protocol: "TCP" }]);
            expect(METRICS_PORT).to.not.equal(CONTAINER_PORT);
            expect(exporter.env).to.deep.include({ name: "PROMETHEUS_MULTIPROC_DIR", value: METRICS_DIR });
            // No credential of any kind reaches it.
            expect(exporter.env.filter((e: any) => e.valueFrom !== undefined)).to.deep.equal([]);
            // Its own ConfigMap: the migration Job and the CronJobs do not mount it, so a change to it rolls the pods only.
            const configMap = run.one("kubernetes:core/v1:ConfigMap", /^mlflow-metrics-exporter$/);
            expect(configMap.inputs.data).to.deep.equal({ "metrics.py": fs.readFileSync(path.join(METRICS_EXPORTER_DIR, "metrics.py"), "utf8") });
            expect(pod.volumes.find((v: any) => v.name === "metrics-exporter"))
                .to.deep.equal({ name: "metrics-exporter", configMap: { name: configMap.state.metadata.name, defaultMode: 0o444 } });
            expect(exporter.volumeMounts).to.deep.include({ name: "metrics-exporter", mountPath: "/opt/mlflow/metrics", readOnly: true });
            expect(pod.volumes.map((v: any) => v.name)).to.not.include("scripts");
            const job = run.one(JOB, MIGRATION_JOB).inputs.spec.template.spec;
            expect(job.volumes.map((v: any) => v.name)).to.not.include("metrics-exporter");
        });

        it("is ready once it listens, restarted when it stops answering, and sized apart from the server", () => {
            expect(exporter.readinessProbe.tcpSocket).to.deep.equal({ port: "metrics" });
            expect(exporter.readinessProbe.httpGet).to.equal(undefined, "a slow scrape must not take the server out of its Service");
            expect(exporter.livenessProbe.httpGet).to.deep.equal({ path: METRICS_PATH, port: "metrics" });
            expect(exporter.resources.limits).to.deep.include({ cpu: METRICS_EXPORTER_RESOURCES.cpuLimit, memory: METRICS_EXPORTER_RESOURCES.memoryLimit });
            expect(exporter.resources.requests).to.deep.include({ cpu: METRICS_EXPORTER_RESOURCES.cpuRequest, memory: METRICS_EXPORTER_RESOURCES.memoryRequest });
        });

        it("tells Prometheus's pod discovery where to scrape", () => {
            expect(template.metadata.annotations).to.deep.include({
                "prometheus.io/scrape": "true",
                "prometheus.io/port": String(METRICS_PORT),
                "prometheus.io/path": METRICS_PATH,
            });
            expect(METRICS_PATH).to.equal("/metrics");
        });
    });

    describe("optional objects", () => {
        it("adds no PDB, HPA or Ingress on minikube", () => {
            for (const t of ["kubernetes:policy/v1:PodDisruptionBudget", "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:networking.k8s.io/v1:Ingress"]) {
                expect(run.ofType(t), t).to.have.length(0);
            }
        });

        it("lets browsers on the Ingress's origin, and on configured origins, write through the API", async () => {
            expect(server.args, "no Ingress: localhost origins only, MLflow's default").to.not.include("--cors-allowed-origins");
            const tls = await runProgram("minikube", { ingressHost: "mlflow.example.com", ingressTlsSecretName: "tls", corsAllowedOrigins: "https://notebooks.example.com" });
            const args = tls.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.spec.containers[0].args;
            expect(flag(args, "--cors-allowed-origins")).to.equal("https://mlflow.example.com,https://notebooks.example.com");
            const plain = await runProgram("minikube", { ingressHost: "mlflow.example.com" });
            expect(flag(plain.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.spec.containers[0].args, "--cors-allowed-origins")).to.equal("http://mlflow.example.com");
        });

        it("adds an Ingress for the configured host, allowed by the Host check", async () => {
            const withIngress = await variantRun();
            const ing = withIngress.one("kubernetes:networking.k8s.io/v1:Ingress").inputs;
            expect(ing.spec.ingressClassName).to.equal("nginx");
            expect(ing.spec.tls).to.deep.equal([{ hosts: ["mlflow.example.com"], secretName: "mlflow-tls" }]);
            expect(ing.spec.rules[0].host).to.equal("mlflow.example.com");
            expect(ing.spec.rules[0].http.paths[0].backend.service).to.deep.equal({ name: "mlflow-service", port: { name: "http" } });
            const args = withIngress.one(DEPLOYMENT, SERVER_DEPLOYMENT).inputs.spec.template.spec.containers[0].args;
            expect(flag(args, "--allowed-hosts")!.split(",")).to.include("mlflow.example.com");
            expect(withIngress.outputs.ingressUrl).to.equal("https://mlflow.example.com");
        });
    });
});
