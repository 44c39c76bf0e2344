import { expect } from "chai";
import { APP_ROLE, AUTH_DATABASE, POSTGRES_PORT, SECRET_KEYS, TRACKING_DATABASE, readInitFiles } from "../components/postgres";
import { POSTGRES_IMAGE, POSTGRES_UID, POSTGRES_VERSION } from "../components/versions";
import { ProgramRun, runProgram, stackRun, variantRun } from "./harness";

const STS = "kubernetes:apps/v1:StatefulSet";
const PVC = "kubernetes:core/v1:PersistentVolumeClaim";

describe("Postgres", () => {
    let run: ProgramRun;
    let sts: any;
    let pod: any;
    let container: any;
    before(async () => {
        run = await stackRun("minikube");
        sts = run.one(STS).inputs;
        pod = sts.spec.template.spec;
        container = pod.containers[0];
    });

    describe("credentials", () => {
        it("generates passwords that stay stable and need no quoting in a connection string", () => {
            const passwords = run.ofType("random:index/randomPassword:RandomPassword").filter((r) => /postgres/.test(r.name));
            expect(passwords).to.have.length(2);
            for (const p of passwords) {
                expect(p.inputs.keepers, `${p.name}: a keeper would rotate the password baked into the volume`).to.equal(undefined);
                expect(p.inputs.length).to.be.at.least(24);
                expect(p.inputs.overrideSpecial).to.match(/^[-_.~]+$/);
            }
        });

        it("keeps them in a Secret, as stringData, marked secret", () => {
            const secret = run.one("kubernetes:core/v1:Secret", /postgres-credentials/);
            expect(Object.keys(secret.inputs.stringData)).to.have.members(Object.values(SECRET_KEYS));
            expect(secret.inputs.stringData[SECRET_KEYS.username]).to.equal(APP_ROLE);
            expect(secret.inputs.data, "no hand-made base64").to.equal(undefined);
            expect(secret.secretPaths.some((p) => p.startsWith("stringData"))).to.equal(true);
            expect(secret.inputs.metadata.namespace).to.equal("mlflow");
        });

        it("gives the server its passwords only through secretKeyRef", () => {
            const refs = Object.fromEntries(container.env.map((e: any) => [e.name, e]));
            for (const name of ["POSTGRES_PASSWORD", "MLFLOW_DB_USER", "MLFLOW_DB_PASSWORD"]) {
                expect(refs[name].value, name).to.equal(undefined);
                expect(refs[name].valueFrom.secretKeyRef.name).to.equal(run.one("kubernetes:core/v1:Secret", /postgres-credentials/).state.metadata.name);
            }
        });
    });

    describe("init SQL", () => {
        const files = readInitFiles();

        it("ships one SQL file that creates the role and both databases from the environment", () => {
            expect(Object.keys(files)).to.deep.equal(["10-mlflow-databases.sql"]);
            const sql = files["10-mlflow-databases.sql"]!;
            for (const v of ["MLFLOW_DB_USER", "MLFLOW_DB_PASSWORD", "MLFLOW_TRACKING_DB", "MLFLOW_AUTH_DB"]) {
                expect(sql).to.match(new RegExp(`\\\\getenv \\w+ ${v}\\b`));
            }
            expect(sql).to.match(/CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password'/);
            expect(sql).to.match(/CREATE DATABASE :"tracking_db" OWNER :"app_user"/);
            expect(sql).to.match(/CREATE DATABASE :"auth_db" OWNER :"app_user"/);
            expect(sql).to.match(/ON_ERROR_STOP on/);
        });

        it("mounts it where the official image runs it on first start, with the names it expects", () => {
            const cm = run.one("kubernetes:core/v1:ConfigMap", /postgres-init/);
            expect(cm.inputs.data).to.deep.equal(files);
            const mount = container.volumeMounts.find((m: any) => m.mountPath === "/docker-entrypoint-initdb.d");
            const volume = pod.volumes.find((v: any) => v.name === mount.name);
            expect(volume.configMap.name).to.equal(cm.state.metadata.name);
            const env = Object.fromEntries(container.env.filter((e: any) => e.value).map((e: any) => [e.name, e.value]));
            expect(env.MLFLOW_TRACKING_DB).to.equal(TRACKING_DATABASE);
            expect(env.MLFLOW_AUTH_DB).to.equal(AUTH_DATABASE);
        });
    });

    describe("StatefulSet", () => {
        it("runs the official image pinned by exact tag, with an explicit command", () => {
            expect(container.image).to.equal(POSTGRES_IMAGE);
            expect(POSTGRES_IMAGE).to.match(/^docker\.io\/library\/postgres:\d+\.\d+-\w+$/);
            expect(container.command).to.deep.equal(["docker-entrypoint.sh"]);
            expect(container.args).to.include("max_connections=250");
        });

        it("keeps data on a standalone claim sized from config, mounted with PGDATA in a subdirectory", async () => {
            expect(sts.spec.volumeClaimTemplates, "a claim template would make every size change a replacement").to.equal(undefined);
            const claim = run.one(PVC);
            expect(claim.inputs.spec.resources.requests.storage).to.equal("2Gi");
            expect(claim.inputs.spec.storageClassName).to.equal(undefined);
            expect(claim.inputs.spec.accessModes).to.deep.equal(["ReadWriteOnce"]);
            const volume = pod.volumes.find((v: any) => v.persistentVolumeClaim !== undefined);
            expect(volume.persistentVolumeClaim.claimName).to.equal(claim.state.metadata.name);
            const pgdata = container.env.find((e: any) => e.name === "PGDATA").value;
            const mount = container.volumeMounts.find((m: any) => m.name === volume.name);
            expect(pgdata.startsWith(`${mount.mountPath}/`), "PGDATA below the mount").to.equal(true);
            const custom = await variantRun();
            const customClaim = custom.one(PVC).inputs;
            expect(customClaim.spec).to.deep.include({ storageClassName: "fast-ssd" });
            expect(customClaim.spec.resources.requests.storage).to.equal("5Gi");
        });

        it("names the claim as a claim template would have, and labels it with nothing version-dependent", () => {
            const claim = run.one(PVC).inputs;
            expect(claim.metadata.name).to.equal(`data-${sts.metadata.name}-0`);
            expect(Object.keys(claim.metadata.labels)).to.not.include("app.kubernetes.io/version");
            expect(JSON.stringify(claim)).to.not.include(POSTGRES_VERSION);
        });

        it("keeps the claim on destroy unless the stack says Delete; protects it with protectData", async () => {
            const disposable = run.one(PVC);
            expect([disposable.protect, disposable.retainOnDelete], "minikube: Delete").to.deep.equal([false, false]);
            const kept = (await variantRun()).one(PVC);
            expect([kept.protect, kept.retainOnDelete]).to.deep.equal([true, true]);
            const retained = (await runProgram("minikube", { postgresVolumeRetention: "Retain" })).one(PVC);
            expect([retained.protect, retained.retainOnDelete]).to.deep.equal([false, true]);
        });

        it("waits for the data guard before the claim is touched", () => {
            const guard = run.one("pulumi-nodejs:dynamic:DataGuard");
            expect(run.one(PVC).dependencies).to.include(guard.urn);
        });

        it("syncs the passwords from the Secret into the data directory before every start", () => {
            const sync = pod.initContainers[0];
            expect(sync.name).to.equal("sync-passwords");
            expect(sync.image).to.equal(POSTGRES_IMAGE);
            expect(sync.env).to.deep.equal(container.env);
            expect(sync.volumeMounts.map((m: any) => m.name)).to.include("data");
            const scripts = run.one("kubernetes:core/v1:ConfigMap", /postgres-scripts/);
            expect(Object.keys(scripts.inputs.data)).to.deep.equal(["sync-passwords.sh"]);
            expect(sync.command.join(" ")).to.include("sync-passwords.sh");
            expect(sts.spec.template.metadata.annotations["checksum/config"]).to.match(/^[0-9a-f]{64}$/);
        });

        it("checks readiness, liveness and startup with pg_isready, liveness differently from readiness", () => {
            for (const probe of ["readinessProbe", "livenessProbe", "startupProbe"]) {
                expect(container[probe].exec.command[0], probe).to.equal("pg_isready");
            }
            expect(container.readinessProbe).to.not.deep.equal(container.livenessProbe);
        });

        it("takes resources from config", () => {
            expect(container.resources).to.deep.equal({
                requests: { cpu: "100m", memory: "256Mi", "ephemeral-storage": "64Mi" },
                limits: { cpu: "1", memory: "1Gi", "ephemeral-storage": "512Mi" },
            });
        });

        it("runs restricted: uid 999, fsGroup, no privilege, read-only root with emptyDirs for the socket and /tmp", () => {
            expect(pod.securityContext).to.include({ runAsNonRoot: true, runAsUser: POSTGRES_UID, fsGroup: POSTGRES_UID });
            expect(pod.securityContext.seccompProfile).to.deep.equal({ type: "RuntimeDefault" });
            expect(pod.automountServiceAccountToken).to.equal(false);
            expect(container.securityContext).to.deep.include({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
            expect(container.securityContext.capabilities).to.deep.equal({ drop: ["ALL"] });
            const emptyDirs = pod.volumes.filter((v: any) => v.emptyDir).map((v: any) => v.name);
            const paths = container.volumeMounts.filter((m: any) => emptyDirs.includes(m.name)).map((m: any) => m.mountPath);
            expect(pod.initContainers[0].securityContext).to.deep.equal(container.securityContext);
            expect(paths).to.have.members(["/var/run/postgresql", "/tmp"]);
        });
    });

    describe("Services", () => {
        it("has a headless Service for the StatefulSet and a ClusterIP Service, both selecting its pods", () => {
            const services = run.ofType("kubernetes:core/v1:Service").filter((s) => /postgres/.test(s.name));
            expect(services).to.have.length(2);
            const headless = services.find((s) => s.inputs.spec.clusterIP === "None")!;
            const clusterIp = services.find((s) => s.inputs.spec.type === "ClusterIP")!;
            expect(sts.spec.serviceName).to.equal(headless.state.metadata.name);
            for (const s of [headless, clusterIp]) {
                expect(s.inputs.spec.selector).to.deep.equal(sts.spec.selector.matchLabels);
                expect(s.inputs.spec.ports[0].port).to.equal(POSTGRES_PORT);
                for (const [k, v] of Object.entries(s.inputs.spec.selector)) {
                    expect(sts.spec.template.metadata.labels[k]).to.equal(v);
                }
            }
            expect(run.outputs.postgresHost).to.equal(`${clusterIp.state.metadata.name}.mlflow.svc.cluster.local`);
        });
    });
});
