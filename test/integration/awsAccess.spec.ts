/**
 * Contract tests of AWS access: artifacts and backups under a customer-managed KMS key (SSE-KMS), and
 * a rotation of the access keys (`awsAccessKeyGeneration`) while a client keeps writing and reading
 * artifacts through the Service: new keys first, pods rolled as the Deployment's strategy says
 * (a new pod up before an old one goes), old keys deleted last and refused afterwards.
 */
import { expect } from "chai";
import * as crypto from "crypto";
import * as path from "path";
import { ROOT } from "../harness";
import { ENDPOINT_LAG_MS, Ingress, startIngress } from "./lib/ingress";
import { call } from "./lib/load";
import { CACHE, Platform, phase, printPhases } from "./lib/platform";
import { setPidFile, stopAll } from "./lib/processes";
import { TYPES } from "./lib/rendered";

const RUN = path.join(CACHE, "run-aws");
const REGION = "us-east-1";
const SERVICE_HOST = "mlflow-service";

describe("contract: AWS access of the minikube stack: SSE-KMS, and access keys rotated with no failed call", function () {
    this.timeout(900000);

    const p = new Platform({ stack: "minikube", dir: RUN });
    let keyArn: string;
    let ingress: Ingress;
    const admin = () => `${p.admin.user}:${p.admin.password}`;
    const target = () => ({ port: ingress.port, host: SERVICE_HOST, auth: admin() });
    const objectEncryption = (prefix: string) => p.python("object-encryption", {
        endpoint: p.moto.url, region: REGION, bucket: p.bucket, prefix, deployer: p.deployer,
    }, { AWS_CA_BUNDLE: p.moto.caBundle });

    /** An artifact written and read back through the Service (the server's proxy). */
    async function roundTrip(runPath: string, n: number): Promise<boolean> {
        const body = `artifact ${n} ${crypto.randomBytes(8).toString("hex")}`;
        const url = `/api/2.0/mlflow-artifacts/artifacts/${runPath}/rotation/${n}.txt`;
        const put = await call(target(), "PUT", url, undefined, { body });
        const get = await call(target(), "GET", url);
        return put.status === 200 && get.status === 200 && get.body.toString() === body;
    }

    before(async function () {
        setPidFile(path.join(RUN, "pids"));
        await phase("moto, a team's KMS key, render, provision, PostgreSQL, migration, server", async () => {
            await p.startMoto();
            await p.bootstrap(REGION);
            keyArn = await p.createKmsKey(REGION);
            await p.render(undefined, { bucketKmsKeyArn: keyArn });
            await p.provision();
            p.generatePasswords();
            await p.startPostgres();
            await p.runMigrationJob();
            await p.startServers();
        });
        ingress = await startIngress(SERVICE_HOST, p.pods.map((pod) => pod.port), "");
    });

    after(async function () {
        await ingress?.close();
        await stopAll();
        printPhases();
        console.log(`      logs: ${path.relative(ROOT, p.logs)}`);
    });

    it("writes artifacts and backups under the bucket's KMS key, and reads them back through the server", async function () {
        const exp = JSON.parse((await call(target(), "POST", "/api/2.0/mlflow/experiments/create", { name: "kms" })).body.toString()).experiment_id;
        const run = JSON.parse((await call(target(), "POST", "/api/2.0/mlflow/runs/create", { experiment_id: exp })).body.toString()).run.info;
        const runPath = run.artifact_uri.replace(/^mlflow-artifacts:\//, "");
        expect(await roundTrip(runPath, 0), "an artifact round trip under SSE-KMS").to.equal(true);
        const artifacts = await objectEncryption(`${p.artifactPrefix}/${runPath}/`);
        const backups = await objectEncryption((p.r.run.outputs.backupUri as string).replace(/^s3:\/\/[^/]+\//, ""));
        const all = [...Object.values<any>(artifacts), ...Object.values<any>(backups)];
        expect(Object.keys(artifacts)).to.have.length(1);
        expect(Object.keys(backups).length, "the migration Job's backup").to.be.at.least(3);
        for (const o of all) {
            expect(o).to.deep.equal({ sse: "aws:kms", kmsKeyId: keyArn });
        }
        console.log(`      SSE-KMS: ${all.length} objects (artifact and backup) encrypted with ${keyArn.replace(/^.*key\//, "key/")}`);
    });

    it("rotates the access keys while a client writes and reads artifacts: no failed call, the old key refused afterwards", async function () {
        const exp = JSON.parse((await call(target(), "POST", "/api/2.0/mlflow/experiments/create", { name: "rotation" })).body.toString()).experiment_id;
        const run = JSON.parse((await call(target(), "POST", "/api/2.0/mlflow/runs/create", { experiment_id: exp })).body.toString()).run.info;
        const runPath = run.artifact_uri.replace(/^mlflow-artifacts:\//, "");
        let calls = 0;
        let failures = 0;
        let stop = false;
        const client = (async () => {
            while (!stop) {
                const ok = await roundTrip(runPath, calls).catch(() => false);
                calls++;
                failures += ok ? 0 : 1;
                await new Promise((r) => setTimeout(r, 100));
            }
        })();
        const timeline: string[] = [];
        const mark = (what: string) => timeline.push(`${what} (call ${calls})`);
        try {
            await new Promise((r) => setTimeout(r, 2000));
            mark("generation 1 serving");
            const old = await phase("rotation: new keys in moto and in new Secrets", () => p.rotateAccessKeys(2));
            mark("generation 2 keys created");
            // The Deployment's strategy (maxSurge 1, maxUnavailable 0): a new pod ready, then an old one gone.
            const strategy = p.r.one(TYPES.deployment, /deployment/).inputs.spec.strategy.rollingUpdate;
            expect(strategy).to.deep.equal({ maxUnavailable: 0, maxSurge: 1 });
            let alive = [...p.pods];
            for (const pod of [...p.pods]) {
                const fresh = await p.startServer();
                alive = [...alive, fresh];
                ingress.setBackends(alive.map((x) => x.port));
                mark("a new pod on the new key ready");
                // Deleting the old pod: the kubelet runs its preStop hook and then sends SIGTERM while the
                // endpoint's removal reaches every proxy, which here takes ENDPOINT_LAG_MS; requests
                // still arrive at the old pod meanwhile.
                const t0 = Date.now();
                const stopping = p.stopPod(pod);
                await new Promise((r) => setTimeout(r, ENDPOINT_LAG_MS));
                alive = alive.filter((x) => x !== pod);
                ingress.setBackends(alive.map((x) => x.port));
                await stopping;
                const exit = await pod.service.exited;
                mark(`an old pod gone (${((Date.now() - t0) / 1000).toFixed(1)} s after its deletion, exit ${exit})`);
                expect(exit, "the old pod's exit: drained on SIGTERM, not killed").to.equal(0);
            }
            p.pods = alive;
            // The backups' next run reads the new Secret.
            await p.runPodToSuccess(p.r.one(TYPES.cronJob, /^mlflow-db-backup-cronjob$/), { label: "backup-gen2" });
            mark("a backup with the new backup key");
            // Pulumi's last step: the keys of the previous generation go.
            for (const { user, key } of old) {
                await p.python("delete-access-key", { endpoint: p.moto.url, region: REGION, deployer: p.deployer, user, keyId: key.id },
                    { AWS_CA_BUNDLE: p.moto.caBundle });
            }
            mark("generation 1 keys deleted");
            await new Promise((r) => setTimeout(r, 3000));
            const probe = (key: { id: string; secret: string }) => p.python("key-probe", {
                endpoint: p.moto.url, region: REGION, bucket: p.bucket, prefix: p.artifactPrefix, key,
            }, { AWS_CA_BUNDLE: p.moto.caBundle });
            for (const { key } of old) {
                expect((await probe(key)).list, "an old key after the rotation").to.not.equal("ok");
            }
            expect((await probe(p.keys.get("mlflow-artifacts-access-key-gen2")!)).list, "the new server key").to.equal("ok");
        } finally {
            stop = true;
            await client;
        }
        console.log(`      rotation: ${timeline.join(" -> ")}; ${calls} artifact round trips, ${failures} failed`);
        expect(calls).to.be.greaterThan(10);
        expect(failures).to.equal(0);
    });
});
