/**
 * Garbage collection (`gcSchedule`, `gcOlderThan`): the config it accepts and refuses, the CronJob
 * on dev and none on minikube, its command built from the rendered server's own URIs, its
 * environment and identity (the server's, in every credential mode), TLS to an external database as
 * the migration Job has it, and its NetworkPolicy.
 */
import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { MIN_GC_OLDER_THAN_SECONDS, PROJECT, olderThanSeconds, parseConfig } from "../components/config";
import { GC_DEADLINE_SECONDS, SERVER_SCRIPTS_DIR, SERVER_SERVICE_ACCOUNT } from "../components/trackingServer";
import { ProgramRun, runProgram, stackConfig, stackRun, variantRun } from "./harness";
import { expectRejected } from "./support/configErrors";

const CRONJOB = "kubernetes:batch/v1:CronJob";
const GC = /^mlflow-gc$/;
const SERVER = /^mlflow-deployment$/;

/** Value of a `--flag value` pair in an argument list. */
function flag(args: string[], name: string): string | undefined {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args[i + 1];
}

const envOf = (container: any): Record<string, any> => Object.fromEntries(container.env.map((e: any) => [e.name, e]));
const gcPod = (run: ProgramRun) => run.one(CRONJOB, GC).inputs.spec.jobTemplate.spec.template.spec;
const serverPod = (run: ProgramRun) => run.one("kubernetes:apps/v1:Deployment", SERVER).inputs.spec.template.spec;

function parse(overrides: Record<string, string | undefined>, stack = "minikube") {
    const config = stackConfig(stack, overrides);
    return parseConfig((key) => config[`${PROJECT}:${key}`]);
}

describe("garbage collection", () => {
    describe("config", () => {
        it("is off by default and on minikube, daily on dev after the backups", () => {
            expect(parse({}).gc).to.deep.equal({ schedule: undefined, olderThan: "30d" });
            expect(parse({}, "dev").gc).to.deep.equal({ schedule: "30 3 * * *", olderThan: "30d" });
            const backup = parse({}, "dev").backup.schedule.split(" ");
            expect(backup.slice(0, 2), "backups at 02:30").to.deep.equal(["30", "2"]);
        });

        it("accepts cron schedules and MLflow durations of an hour or more", () => {
            for (const schedule of ["@daily", "15 3 * * *", "0 */6 * * *", "0 4 * * sun"]) {
                expect(parse({ gcSchedule: schedule }).gc.schedule).to.equal(schedule);
            }
            for (const olderThan of ["30d", "12h", "1d12h", "1.5h", "60m", "3600s", "1d2h3m4s"]) {
                expect(parse({ gcSchedule: "@daily", gcOlderThan: olderThan }).gc.olderThan).to.equal(olderThan);
            }
        });

        it("reads durations as MLflow does: days, hours, minutes, seconds, in that order", () => {
            expect(olderThanSeconds("1d2h3m4s")).to.equal(86400 + 7200 + 180 + 4);
            expect(olderThanSeconds("1.5h")).to.equal(5400);
            expect(olderThanSeconds("30d")).to.equal(30 * 86400);
            for (const bad of ["", "30", "2h1d", "1w", "1.2.3d", "d", "-1d", "30 d", "1h30"]) {
                expect(olderThanSeconds(bad), JSON.stringify(bad)).to.be.NaN;
            }
        });

        const refusals: Array<[string, Record<string, string>, string, RegExp]> = [
            ["a schedule with four fields", { gcSchedule: "30 3 * *" }, "gcSchedule", /five fields/],
            ["a schedule at hour 24", { gcSchedule: "0 24 * * *" }, "gcSchedule", /empty \(no garbage collection\) or a cron schedule/],
            ["an unknown cron macro", { gcSchedule: "@sometimes" }, "gcSchedule", /@daily/],
            ["a duration without a unit", { gcOlderThan: "30" }, "gcOlderThan", /#d#h#m#s/],
            ["weeks, which MLflow does not read", { gcOlderThan: "4w" }, "gcOlderThan", /#d#h#m#s/],
            ["words", { gcOlderThan: "30 days" }, "gcOlderThan", /such as 30d, 12h or 1d12h/],
            ["units out of order", { gcOlderThan: "12h1d" }, "gcOlderThan", /#d#h#m#s/],
            ["no grace period at all", { gcOlderThan: "0d" }, "gcOlderThan", /at least 1 hour/],
            ["less than an hour", { gcOlderThan: "59m59s" }, "gcOlderThan", /at least 1 hour/],
            ["an empty duration", { gcOlderThan: "" }, "gcOlderThan", /is required/],
        ];
        for (const [what, overrides, key, allowed] of refusals) {
            it(`refuses ${what}, naming ${key}`, () => {
                const message = expectRejected(() => parse({ gcSchedule: "@daily", ...overrides }), what, key, allowed);
                expect(message.split("\n").filter((l) => l.includes(`${PROJECT}:`)), "only this key").to.have.length(1);
            });
        }
        it("checks gcOlderThan even while gc is off, so turning it on cannot fail later", () => {
            expectRejected(() => parse({ gcOlderThan: "5m" }), "5m on minikube", "gcOlderThan", /at least 1 hour/);
        });
        it(`refuses the largest duration under the minimum and accepts the minimum (${MIN_GC_OLDER_THAN_SECONDS} s)`, () => {
            expect(parse({ gcOlderThan: `${MIN_GC_OLDER_THAN_SECONDS}s` }).gc.olderThan).to.equal("3600s");
            expectRejected(() => parse({ gcOlderThan: `${MIN_GC_OLDER_THAN_SECONDS - 1}s` }), "3599s", "gcOlderThan", /at least 1 hour/);
        });
    });

    describe("CronJob", () => {
        let dev: ProgramRun;
        let pod: any;
        let container: any;
        before(async () => {
            dev = await stackRun("dev");
            pod = gcPod(dev);
            container = pod.containers[0];
        });

        it("exists only with a schedule: none on minikube, and no policy for it there", async () => {
            const minikube = await stackRun("minikube");
            expect(minikube.ofType(CRONJOB).filter((c) => GC.test(c.name))).to.have.length(0);
            expect(minikube.ofType("kubernetes:networking.k8s.io/v1:NetworkPolicy").filter((p) => p.name.includes("artifact-gc"))).to.have.length(0);
            const on = await runProgram("minikube", { gcSchedule: "0 5 * * *" });
            expect(on.one(CRONJOB, GC).inputs.spec.schedule).to.equal("0 5 * * *");
        });

        it("runs on dev's schedule in UTC, one at a time, with a deadline, after the server has rolled out", () => {
            const cj = dev.one(CRONJOB, GC);
            expect(cj.inputs.metadata.name).to.equal("mlflow-gc");
            expect(cj.inputs.spec).to.deep.include({ schedule: "30 3 * * *", timeZone: "Etc/UTC", concurrencyPolicy: "Forbid" });
            expect(cj.inputs.spec.jobTemplate.spec.activeDeadlineSeconds).to.equal(GC_DEADLINE_SECONDS);
            expect(pod.restartPolicy).to.equal("Never");
            expect(cj.dependencies).to.include(dev.one("kubernetes:apps/v1:Deployment", SERVER).urn);
        });

        it("runs purge.py on the server's database and artifact destination, from the rendered server's own flags", async () => {
            const server = serverPod(dev).containers[0];
            expect(container.image).to.equal(server.image);
            expect(container.command).to.deep.equal(["python"]);
            expect(container.args).to.deep.equal([
                "/opt/mlflow/server/purge.py", flag(server.args, "--backend-store-uri"), flag(server.args, "--artifacts-destination"), "30d",
            ]);
            expect(container.args[1]).to.match(/^postgresql\+psycopg2:\/\/[^@]+\/mlflow$/);
            expect(container.args[2]).to.equal(dev.outputs.artifactUri);
            const variant = gcPod(await variantRun()).containers[0];
            expect(variant.args[3], "gcOlderThan reaches the command").to.equal("1d12h");
        });

        it("mounts the shipped purge.py, which runs MLflow's own gc with the proxy's locations mapped to the destination", () => {
            const scripts = dev.one("kubernetes:core/v1:ConfigMap", /^mlflow-scripts$/);
            const volume = pod.volumes.find((v: any) => v.name === "scripts");
            expect(volume.configMap.name).to.equal(scripts.state.metadata.name);
            const source = fs.readFileSync(path.join(SERVER_SCRIPTS_DIR, "purge.py"), "utf8");
            expect(scripts.inputs.data["purge.py"]).to.equal(source);
            expect(source).to.include('register("mlflow-artifacts"').and.include('"gc", "--backend-store-uri"');
        });

        it("gets the database login and the server's S3 access by secretKeyRef only, and none of the server's own secrets", () => {
            const env = envOf(container);
            const server = envOf(serverPod(dev).containers[0]);
            for (const name of ["PGUSER", "PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"]) {
                expect(env[name]?.valueFrom?.secretKeyRef, name).to.deep.equal(server[name].valueFrom.secretKeyRef);
                expect(env[name].value, name).to.equal(undefined);
            }
            for (const e of container.env) {
                expect(e.value === undefined || !/password|secret/i.test(e.name), e.name).to.equal(true);
            }
            for (const name of ["MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_CRYPTO_KEK_PASSPHRASE", "MLFLOW_TRACKING_PASSWORD"]) {
                expect(env[name], `${name}: gc needs no MLflow login`).to.equal(undefined);
            }
            expect(pod.serviceAccountName).to.equal(SERVER_SERVICE_ACCOUNT);
            expect(pod.serviceAccountName).to.equal(serverPod(dev).serviceAccountName);
        });

        it("runs restricted: non-root, read-only root, no token, a /tmp emptyDir, ephemeral storage requested and limited", () => {
            expect(pod.automountServiceAccountToken).to.equal(false);
            expect(pod.securityContext).to.include({ runAsNonRoot: true });
            expect(container.securityContext).to.deep.include({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
            const tmp = container.volumeMounts.find((m: any) => m.mountPath === "/tmp");
            expect(pod.volumes.find((v: any) => v.name === tmp.name).emptyDir.sizeLimit).to.be.a("string");
            expect(container.resources.requests["ephemeral-storage"]).to.be.a("string");
            expect(container.resources.limits["ephemeral-storage"]).to.be.a("string");
            expect(container.resources.limits.memory).to.be.a("string");
        });

        it("reaches S3 as the server in every credential mode: the same ServiceAccount (the role admits it) and no key", async () => {
            const modes = {
                podIdentity: { awsCredentials: "podIdentity", eksClusterName: "mlflow-dev" },
                irsa: { awsCredentials: "irsa", eksOidcProviderArn: "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE" },
            };
            for (const [mode, overrides] of Object.entries(modes)) {
                const run = await runProgram("dev", overrides);
                const gc = gcPod(run);
                const env = envOf(gc.containers[0]);
                expect(gc.serviceAccountName, mode).to.equal(SERVER_SERVICE_ACCOUNT);
                expect(env.AWS_ACCESS_KEY_ID, `${mode}: no key`).to.equal(undefined);
                expect(env.AWS_DEFAULT_REGION.value, mode).to.equal("eu-west-1");
                const awsEnv = (e: Record<string, any>) => Object.fromEntries(Object.entries(e).filter(([k]) => k.startsWith("AWS_") || k.startsWith("MLFLOW_S3")));
                expect(awsEnv(env), mode).to.deep.equal(awsEnv(envOf(serverPod(run).containers[0])));
            }
        });

        it("reaches an external database over TLS with the migration Job's settings and CA mount", async () => {
            const CA = `-----BEGIN CERTIFICATE-----\n${Buffer.from("gc spec CA").toString("base64")}\n-----END CERTIFICATE-----`;
            const run = await runProgram("dev", {
                databaseMode: "external", databaseHost: "10.0.40.7", databaseUsername: "mlflow_app", databasePassword: "gc-spec-only",
                databaseCaCertificate: CA, databaseMaxConnections: 900,
            });
            const gc = gcPod(run).containers[0];
            const migrate = run.one("kubernetes:batch/v1:Job", /^mlflow-migrate$/).inputs.spec.template.spec.containers[0];
            const pg = (c: any) => c.env.filter((e: any) => e.name.startsWith("PG"));
            expect(pg(gc).map((e: any) => e.name)).to.include.members(["PGSSLMODE", "PGSSLROOTCERT"]);
            expect(pg(gc)).to.deep.equal(pg(migrate));
            const caMounts = (c: any) => c.volumeMounts.filter((m: any) => m.name !== "tmp" && m.name !== "scripts");
            expect(caMounts(gc)).to.have.length(1);
            expect(caMounts(gc)).to.deep.equal(caMounts(migrate));
            expect(gc.args[1]).to.equal(flag(serverPod(run).containers[0].args, "--backend-store-uri"));
        });
    });
});
