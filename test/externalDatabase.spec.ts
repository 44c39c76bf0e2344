/**
 * An external PostgreSQL (`databaseMode: external`): the config it needs and refuses, the objects
 * it adds and removes, TLS settings on every database client, the NetworkPolicies' egress to its
 * addresses, and the security checks every other run passes.
 */
import { expect } from "chai";
import * as crypto from "crypto";
import { PROJECT, parseConfig } from "../components/config";
import { DATABASE_CA_DIR, DATABASE_CA_FILE } from "../components/postgres";
import { networkIsolationFindings } from "../policy/checks/networkPolicy";
import { hardeningFindings, podTemplates, restrictedFindings } from "../policy/checks/podSecurity";
import { policies } from "../policy/policies";
import { ProgramRun, runProgram, stackConfig } from "./harness";
import { violations } from "./support/policyArgs";
import { expectRejected } from "./support/configErrors";
import { connectionAllowed, PodEndpoint } from "./support/networkSim";
import { kubernetesManifests } from "../scripts/render";

/** Shaped like a PEM certificate; its content is never parsed by the program. */
const CA_PEM = `-----BEGIN CERTIFICATE-----\n${Buffer.from("a test CA, not a real certificate").toString("base64")}\n-----END CERTIFICATE-----`;
const PASSWORD = crypto.randomBytes(18).toString("base64url");
const RDS_HOST = "mlflow.cluster-abc123.eu-west-1.rds.amazonaws.com";

/** An RDS-like external database: login from config, verify-full against its CA, two subnets. */
const EXTERNAL = Object.freeze({
    databaseMode: "external",
    databaseHost: RDS_HOST,
    databasePort: 5433,
    databaseName: "mlflow_tracking",
    databaseAuthName: "mlflow_users",
    databaseUsername: "mlflow_app",
    databasePassword: PASSWORD,
    databaseCaCertificate: CA_PEM,
    databaseEgressCidrs: "10.0.32.0/20,10.0.48.0/20",
    databaseMaxConnections: 400,
});

type Overrides = Record<string, string | number | undefined>;

function parse(overrides: Overrides, secret = true) {
    const config = stackConfig("minikube", overrides);
    return parseConfig((key) => config[`${PROJECT}:${key}`], () => secret);
}

function rejected(overrides: Overrides, key: string, allowed: RegExp, secret = true): string {
    return expectRejected(() => parse(overrides, secret), JSON.stringify(overrides), key, allowed);
}

const containersOf = (obj: any): any[] => podTemplates(obj).flatMap((t) => [...(t.spec.initContainers ?? []), ...t.spec.containers]);
const envOf = (c: any): Record<string, any> => Object.fromEntries((c.env ?? []).map((e: any) => [e.name, e.value ?? e.valueFrom]));

describe("external PostgreSQL", () => {
    describe("config", () => {
        it("is off by default: the in-cluster PostgreSQL", () => {
            expect(parse({}).database).to.deep.equal({ mode: "inCluster" });
        });

        it("reads an RDS-like database with TLS verified against its CA", () => {
            const db = parse(EXTERNAL).database;
            expect(db).to.deep.equal({
                mode: "external", host: RDS_HOST, port: 5433, trackingDatabase: "mlflow_tracking", authDatabase: "mlflow_users",
                credentials: { source: "config", username: "mlflow_app" }, sslMode: "verify-full", caCertificate: CA_PEM,
                egressCidrs: ["10.0.32.0/20", "10.0.48.0/20"], maxConnections: 400,
            });
            expect(JSON.stringify(db), "the password stays out of the parsed config").to.not.include(PASSWORD);
        });

        it("admits an IP address host on its own address when no CIDR is given", () => {
            const db: any = parse({ ...EXTERNAL, databaseHost: "10.0.40.7", databaseEgressCidrs: undefined }).database;
            expect(db.egressCidrs).to.deep.equal(["10.0.40.7/32"]);
            const v6: any = parse({ ...EXTERNAL, databaseHost: "fd00::7", databaseEgressCidrs: undefined }).database;
            expect(v6.egressCidrs).to.deep.equal(["fd00::7/128"]);
        });

        it("takes an existing Secret instead of a login from config", () => {
            const db: any = parse({ ...EXTERNAL, databaseUsername: undefined, databasePassword: undefined, databaseExistingSecret: "rds-login" }).database;
            expect(db.credentials).to.deep.equal({ source: "existingSecret", secretName: "rds-login" });
        });

        const cases: ReadonlyArray<[string, Overrides, string, RegExp, boolean?]> = [
            ["no host", { databaseHost: undefined }, "databaseHost", /required with mlflow-k8s:databaseMode external/],
            ["a host that is no DNS name", { databaseHost: "db_1.internal" }, "databaseHost", /a DNS name .* or an IP address/],
            ["a port out of range", { databasePort: 70000 }, "databasePort", /an integer from 1 to 65535/],
            ["a database name needing quotes", { databaseName: "MLflow-DB" }, "databaseName", /at most 63 lowercase letters/],
            ["one database for both schemas", { databaseAuthName: "mlflow_tracking" }, "databaseAuthName", /a database other than mlflow-k8s:databaseName/],
            ["no login at all", { databaseUsername: undefined, databasePassword: undefined }, "databaseUsername", /unless mlflow-k8s:databaseExistingSecret/],
            ["a role name needing quotes", { databaseUsername: "ml-flow" }, "databaseUsername", /a PostgreSQL role name/],
            ["a user without password", { databasePassword: undefined }, "databasePassword", /pulumi config set --secret databasePassword/],
            ["a plain-text password", {}, "databasePassword", /must be set with `pulumi config set --secret databasePassword`/, false],
            ["an existing Secret and a login", { databaseExistingSecret: "rds-login" }, "databaseExistingSecret", /not both/],
            ["an unencrypted connection", { databaseSslMode: "disable" }, "databaseSslMode", /one of require, verify-ca, verify-full/],
            ["verify-full without a CA", { databaseCaCertificate: undefined }, "databaseCaCertificate", /required with mlflow-k8s:databaseSslMode verify-full/],
            ["verify-ca without a CA", { databaseSslMode: "verify-ca", databaseCaCertificate: undefined }, "databaseCaCertificate", /verify-ca/],
            ["a CA that is no PEM", { databaseCaCertificate: "MIIBszCCAVmgAwIBAgIU" }, "databaseCaCertificate", /PEM certificates/],
            ["a DNS host without CIDRs", { databaseEgressCidrs: undefined }, "databaseEgressCidrs", /CIDRs of the database's subnets/],
            ["a bad CIDR", { databaseEgressCidrs: "10.0.32.0/33" }, "databaseEgressCidrs", /comma-separated list of CIDRs/],
            ["no max_connections", { databaseMaxConnections: 0 }, "databaseMaxConnections", /SHOW max_connections/],
            ["a budget the server's max_connections cannot hold", { databaseMaxConnections: 150, mlflowDbPoolSize: 5, mlflowDbMaxOverflow: 36 }, "mlflowDbPoolSize", /exceeds mlflow-k8s:databaseMaxConnections \(150\)/],
        ];
        for (const [what, change, key, allowed, secret] of cases) {
            it(`refuses ${what}, naming ${key}`, () => {
                const message = rejected({ ...EXTERNAL, ...change }, key, allowed, secret ?? true);
                expect(message, "the password is never printed").to.not.include(PASSWORD);
            });
        }

        it("refuses external-only keys with the in-cluster database, hiding a password", () => {
            for (const key of ["databaseHost", "databaseUsername", "databaseExistingSecret", "databaseCaCertificate", "databaseEgressCidrs"] as const) {
                rejected({ [key]: (EXTERNAL as any)[key] ?? "rds-login" }, key, /only with mlflow-k8s:databaseMode external \(it is inCluster\)/);
            }
            const message = rejected({ databasePassword: PASSWORD }, "databasePassword", /only with mlflow-k8s:databaseMode external/);
            expect(message).to.not.include(PASSWORD);
            rejected({ databaseMaxConnections: 400 }, "databaseMaxConnections", /only with/);
        });

        it("does not ask the in-cluster PostgreSQL's memory to fit the external server's connections", () => {
            expect(() => parse({ ...EXTERNAL, postgresMemoryLimit: "64Mi", postgresMemoryRequest: "64Mi" })).to.not.throw();
        });
    });

    describe("the program", () => {
        let run: ProgramRun;
        let objects: any[];
        before(async () => {
            run = await runProgram("minikube", EXTERNAL);
            objects = kubernetesManifests(run).map((m) => m.object);
        });

        it("runs no PostgreSQL: no StatefulSet, claim, Service, init SQL or policy of its own", () => {
            expect(objects.filter((o) => ["StatefulSet", "PersistentVolumeClaim"].includes(o.kind))).to.deep.equal([]);
            expect(run.resources.filter((r) => /postgres/.test(r.name)).map((r) => r.name)).to.deep.equal([]);
            expect(objects.filter((o) => o.kind === "Service").map((o) => o.metadata.name)).to.deep.equal(["mlflow-service"]);
        });

        it("keeps the login in a Secret as a secret, and the CA in a ConfigMap", () => {
            const component = run.one("mlflow-k8s:kubernetes:ExternalDatabase");
            const secret = run.ofType("kubernetes:core/v1:Secret").find((s) => s.parent === component.urn)!;
            expect(secret.inputs.stringData).to.deep.equal({ username: "mlflow_app", password: PASSWORD });
            expect(secret.secretPaths.some((p) => "stringData.password".startsWith(p)), "the password arrives as a secret").to.equal(true);
            const ca = run.ofType("kubernetes:core/v1:ConfigMap").find((c) => c.parent === component.urn)!;
            expect(ca.inputs.data).to.deep.equal({ [DATABASE_CA_FILE]: `${CA_PEM}\n` });
        });

        it("never shows the password outside a secret: no plain input, no output", () => {
            for (const r of run.resources) {
                const plain = structuredClone(r.inputs);
                for (const p of r.secretPaths) {
                    const parts = p.split(".");
                    let at = plain;
                    for (const part of parts.slice(0, -1)) {
                        at = at?.[part];
                    }
                    if (at !== undefined) {
                        delete at[parts.at(-1)!];
                    }
                }
                expect(JSON.stringify(plain), `${r.type} ${r.name}`).to.not.include(PASSWORD);
            }
            expect(JSON.stringify(run.outputs)).to.not.include(PASSWORD);
            expect(run.outputs.postgresHost).to.equal(RDS_HOST);
        });

        it("connects every database client over TLS, verified against the mounted CA", () => {
            const clients = objects.filter((o) => podTemplates(o).length > 0).flatMap(containersOf)
                .filter((c) => envOf(c).PGUSER !== undefined);
            // The schema rollout's quiesce step reads both schemas' revisions and the sessions: a client too.
            expect(clients.map((c) => c.name).sort()).to.deep.equal(["backup-dump", "backup-dump", "migrate", "mlflow", "quiesce", "restore"]);
            for (const c of clients) {
                const env = envOf(c);
                expect(env.PGSSLMODE, c.name).to.equal("verify-full");
                expect(env.PGSSLROOTCERT, c.name).to.equal(`${DATABASE_CA_DIR}/${DATABASE_CA_FILE}`);
                expect(env.PGUSER.secretKeyRef.key, c.name).to.equal("username");
                expect(c.volumeMounts, c.name).to.deep.include({ name: "database-ca", mountPath: DATABASE_CA_DIR, readOnly: true });
            }
            for (const o of objects.filter((x) => podTemplates(x).length > 0)) {
                const volumes = podTemplates(o)[0]!.spec.volumes.filter((v: any) => v.name === "database-ca");
                expect(volumes, `${o.kind} ${o.metadata.name}: one CA volume`).to.have.length(1);
            }
        });

        it("gives the quiesce step the migration's TLS settings and CA mount, and the resume step no database login", () => {
            const job = (name: RegExp) => objects.find((o) => o.kind === "Job" && name.test(o.metadata.name));
            const migrate = containersOf(job(/^mlflow-migrate-/)).find((c) => c.name === "migrate");
            const quiesce = containersOf(job(/^mlflow-rollout-quiesce-/));
            expect(quiesce.map((c) => c.name)).to.deep.equal(["quiesce"]);
            const libpq = (c: any) => Object.fromEntries(Object.entries(envOf(c)).filter(([k]) => k.startsWith("PG")));
            expect(libpq(quiesce[0]), "the same libpq settings as the migration").to.deep.equal(libpq(migrate));
            expect(Object.keys(libpq(quiesce[0])).sort()).to.include.members(["PGPASSWORD", "PGSSLMODE", "PGSSLROOTCERT", "PGUSER"]);
            const caMount = (c: any) => c.volumeMounts.filter((m: any) => m.name === "database-ca");
            expect(caMount(quiesce[0])).to.deep.equal(caMount(migrate)).and.to.have.length(1);
            const caVolume = (o: any) => podTemplates(o)[0]!.spec.volumes.filter((v: any) => v.name === "database-ca");
            expect(caVolume(job(/^mlflow-rollout-quiesce-/))).to.deep.equal(caVolume(job(/^mlflow-migrate-/)));
            // The quiesce step passes the external database's URIs, by host and port.
            expect(quiesce[0].args.slice(1)).to.deep.equal([
                "quiesce", `postgresql+psycopg2://${RDS_HOST}:5433/mlflow_tracking`, `postgresql+psycopg2://${RDS_HOST}:5433/mlflow_users`,
            ]);
            const resume = containersOf(job(/^mlflow-rollout-resume-/));
            expect(Object.keys(envOf(resume[0])).filter((k) => k.startsWith("PG")), "resume talks to the API server only").to.deep.equal([]);
        });

        it("points the server, the auth database and the backups at the external databases", () => {
            const server = objects.find((o) => o.kind === "Deployment").spec.template.spec.containers[0];
            expect(server.args).to.include(`postgresql+psycopg2://${RDS_HOST}:5433/mlflow_tracking`);
            const auth = objects.find((o) => o.kind === "ConfigMap" && /auth-config/.test(o.metadata.name));
            expect(Object.values<string>(auth.data)[0]).to.include(`postgresql+psycopg2://${RDS_HOST}:5433/mlflow_users`);
            const dump = containersOf(objects.find((o) => o.kind === "CronJob" && /backup$/.test(o.metadata.name))).find((c) => c.name === "backup-dump");
            expect(envOf(dump)).to.deep.include({ PGHOST: RDS_HOST, PGPORT: "5433", BACKUP_DATABASES: "mlflow_tracking mlflow_users" });
        });

        it("restores without a superuser: the external databases must exist", () => {
            const restore = containersOf(objects.find((o) => o.kind === "CronJob" && /restore$/.test(o.metadata.name))).find((c) => c.name === "restore");
            expect(envOf(restore)).to.not.have.any.keys("POSTGRES_USER", "POSTGRES_PASSWORD");
        });

        it("lets only the database clients reach the database's subnets, on its port only", () => {
            const policiesIn = objects.filter((o) => o.kind === "NetworkPolicy");
            expect(policiesIn, "no PostgreSQL policy").to.have.length(6);
            const pods = (kind: string, name?: RegExp): PodEndpoint => {
                const obj = objects.find((o) => o.kind === kind && (name === undefined || name.test(o.metadata.name)));
                return { namespace: obj.metadata.namespace, labels: podTemplates(obj)[0]!.labels };
            };
            const db = { ip: "10.0.33.9" };
            const clients = [pods("Deployment"), pods("Job", /^mlflow-migrate-/), pods("Job", /^mlflow-rollout-quiesce-/), pods("Job", /^mlflow-rollout-resume-/),
                pods("CronJob", /backup$/), pods("CronJob", /restore$/)];
            for (const client of clients) {
                expect(connectionAllowed(objects, client, db, 5433), JSON.stringify(client.labels)).to.equal(true);
                expect(connectionAllowed(objects, client, { ip: "10.0.49.1" }, 5433), "the second subnet").to.equal(true);
                expect(connectionAllowed(objects, client, db, 5432), "another port").to.equal(false);
                expect(connectionAllowed(objects, client, { ip: "10.1.0.9" }, 5433), "outside the subnets").to.equal(false);
            }
            const stranger = { namespace: pods("Deployment").namespace, labels: { "app.kubernetes.io/name": "debug-shell" } };
            expect(connectionAllowed(objects, stranger, db, 5433)).to.equal(false);
        });

        it("passes Pod Security restricted, the hardening rules, the network rules and the policy pack", async () => {
            for (const t of objects.flatMap(podTemplates)) {
                expect([...restrictedFindings(t.spec, t.path), ...hardeningFindings(t)], t.kind).to.deep.equal([]);
            }
            expect(networkIsolationFindings(objects)).to.deep.equal([]);
            for (const policy of policies) {
                expect(await violations(policy, run.resources), policy.name).to.deep.equal([]);
            }
        });

        it("records the mode in the data guard, and none of the cluster's settings", () => {
            const guard = run.resources.find((r) => r.type === "pulumi-nodejs:dynamic:DataGuard")!;
            expect(guard.inputs).to.deep.include({ databaseMode: "external", kubeContext: "", namespace: "", postgresStorageSize: "", postgresMajor: "" });
        });
    });

    describe("with an existing Secret", () => {
        it("reads the Secret instead of creating one, and every client logs in with it", async () => {
            const run = await runProgram("minikube", { ...EXTERNAL, databaseUsername: undefined, databasePassword: undefined, databaseExistingSecret: "rds-login" });
            const component = run.one("mlflow-k8s:kubernetes:ExternalDatabase");
            expect(run.ofType("kubernetes:core/v1:Secret").filter((s) => s.parent === component.urn)).to.deep.equal([]);
            const objects = kubernetesManifests(run).map((m) => m.object);
            const clients = objects.flatMap(containersOf).filter((c) => envOf(c).PGUSER !== undefined);
            // The server, the migration, the schema rollout's quiesce step, the backup (twice: CronJob and migration) and the restore.
            expect(clients).to.have.length(6);
            for (const c of clients) {
                expect(envOf(c).PGPASSWORD.secretKeyRef, c.name).to.deep.equal({ name: "rds-login", key: "password" });
            }
        });
    });

    describe("preview", () => {
        it("knows every database setting of the server's pods before anything exists", async () => {
            const run = await runProgram("minikube", EXTERNAL, { preview: true });
            const deployment = run.one("kubernetes:apps/v1:Deployment", /^mlflow-deployment$/);
            const unknown = deployment.unknownPaths.filter((p) => /env|args|volumes/.test(p) && !/secretKeyRef|configMap\.name|checksum/.test(p));
            expect(unknown).to.deep.equal([]);
        });
    });
});
