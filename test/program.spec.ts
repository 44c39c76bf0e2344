import { expect } from "chai";
import * as pulumi from "@pulumi/pulumi";
import { ArtifactStore } from "../components/artifactStore";
import { POD_SECURITY_LABELS } from "../components/kube";
import { ProgramRun, STACKS, runProgram, stackRun, variantRun } from "./harness";

const isProvider = (type: string) => type.startsWith("pulumi:providers:");
const isComponent = (type: string) => type.startsWith("mlflow-k8s:");

describe("the whole program", () => {
    for (const stack of STACKS) {
        describe(`on the ${stack} stack`, () => {
            let run: ProgramRun;
            before(async () => {
                run = await stackRun(stack);
            });

            it("builds one explicit provider per cloud, from stack config only", () => {
                const k8s = run.one("pulumi:providers:kubernetes");
                const aws = run.one("pulumi:providers:aws");
                expect(k8s.inputs.context).to.equal(stack === "minikube" ? "minikube" : "mlflow-dev");
                expect(k8s.inputs.namespace).to.equal("mlflow");
                expect(aws.inputs.region).to.equal(stack === "minikube" ? "us-east-1" : "eu-west-1");
                expect(aws.inputs.endpoints, "real AWS unless an endpoint is configured").to.equal(undefined);
            });

            it("sends every Kubernetes and AWS resource through those providers", () => {
                const k8s = run.one("pulumi:providers:kubernetes");
                const aws = run.one("pulumi:providers:aws");
                const custom = run.resources.filter((r) => !isProvider(r.type) && !isComponent(r.type));
                for (const r of custom.filter((c) => c.type.startsWith("kubernetes:"))) {
                    expect(r.provider, r.name).to.equal(`${k8s.urn}::${k8s.id}`);
                }
                for (const r of custom.filter((c) => c.type.startsWith("aws:"))) {
                    expect(r.provider, r.name).to.equal(`${aws.urn}::${aws.id}`);
                }
                expect(custom.filter((c) => c.type.startsWith("kubernetes:")).length).to.be.greaterThan(10);
            });

            it("puts every resource but the providers, the data guard and the namespace inside a component", () => {
                const topLevel = ["kubernetes:core/v1:Namespace", "pulumi-nodejs:dynamic:DataGuard"];
                const loose = run.resources.filter((r) => !isProvider(r.type) && !isComponent(r.type) && !topLevel.includes(r.type)
                    && !isComponent(run.byUrn(r.parent).type));
                expect(loose.map((r) => r.name)).to.deep.equal([]);
            });

            it("creates the namespace, enforcing Pod Security restricted, and everything inside it", () => {
                const ns = run.one("kubernetes:core/v1:Namespace");
                expect(ns.inputs.metadata.name).to.equal("mlflow");
                expect(ns.inputs.metadata.labels).to.include(POD_SECURITY_LABELS);
                for (const r of run.resources.filter((x) => x.type.startsWith("kubernetes:") && x !== ns)) {
                    expect(r.inputs.metadata.namespace, r.name).to.equal("mlflow");
                    expect(r.dependencies, `${r.name} waits for the namespace`).to.include(ns.urn);
                }
            });

            it("exports what a user needs, like a chart's NOTES", () => {
                expect(run.outputs).to.include({
                    kubeContext: stack === "minikube" ? "minikube" : "mlflow-dev",
                    namespaceName: "mlflow",
                    serviceName: "mlflow-service",
                    localUrl: "http://localhost:8080",
                    adminUsername: "admin",
                });
                expect(run.outputs.portForwardCommand).to.equal(
                    `kubectl --context ${run.outputs.kubeContext} -n mlflow port-forward service/mlflow-service 8080:80`);
                expect(run.outputs.artifactUri).to.equal(`s3://${run.outputs.bucketName}/mlflow`);
            });

            it("exports the admin password as a secret and no credential in plain outputs", async () => {
                expect(await pulumi.isSecret(run.rawOutputs.adminPassword as pulumi.Output<string>)).to.equal(true);
                expect(run.secretOutputs).to.deep.equal(["adminPassword"]);
                const plain = JSON.stringify(Object.entries(run.outputs).filter(([k]) => !run.secretOutputs.includes(k)));
                for (const credential of run.credentials) {
                    expect(plain).to.not.include(credential);
                }
            });

            it("exports no output as undefined (Pulumi warns about each on every update)", () => {
                const undefinedOutputs = Object.entries(run.outputs).filter(([, v]) => v === undefined).map(([k]) => k);
                expect(undefinedOutputs).to.deep.equal([]);
                expect(run.outputs.ingressUrl, "no Ingress on this stack").to.equal("");
            });

            it("marks every Secret's content secret", () => {
                for (const s of run.ofType("kubernetes:core/v1:Secret")) {
                    expect(s.secretPaths, s.name).to.include("stringData");
                }
            });
        });
    }

    it("scales dev out: two or more replicas, a PodDisruptionBudget and an autoscaler", async () => {
        const dev = await stackRun("dev");
        const deployment = dev.one("kubernetes:apps/v1:Deployment", /^mlflow-deployment$/).inputs;
        const hpa = dev.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs;
        expect(hpa.spec.minReplicas).to.be.at.least(2);
        expect(hpa.spec.maxReplicas).to.equal(4);
        expect(hpa.spec.scaleTargetRef).to.deep.include({ kind: "Deployment", name: deployment.metadata.name });
        const pdb = dev.one("kubernetes:policy/v1:PodDisruptionBudget").inputs;
        expect(pdb.spec.selector.matchLabels).to.deep.equal(deployment.spec.selector.matchLabels);
    });

    it("points S3, IAM and STS at an emulator, path-style, when an endpoint is configured", async () => {
        const local = await variantRun();
        const aws = local.one("pulumi:providers:aws").inputs;
        // Explicit provider inputs arrive JSON-encoded.
        const endpoints = JSON.parse(aws.endpoints);
        expect(endpoints).to.deep.equal([{ s3: "http://127.0.0.1:5000", iam: "http://127.0.0.1:5000", sts: "http://127.0.0.1:5000" }]);
        expect(aws.s3UsePathStyle).to.equal("true");
        const env = local.one("kubernetes:apps/v1:Deployment", /^mlflow-deployment$/).inputs.spec.template.spec.containers[0].env;
        expect(env).to.deep.include({ name: "MLFLOW_S3_ENDPOINT_URL", value: "http://127.0.0.1:5000" });
    });

    it("protects everything that holds data only when protectData is set: namespace, volume claim, bucket (artifacts and backups)", async () => {
        const prod = await variantRun();
        const guarded = prod.resources.filter((r) => r.protect).map((r) => r.type).sort();
        expect(guarded).to.deep.equal(["aws:s3/bucket:Bucket", "kubernetes:core/v1:Namespace", "kubernetes:core/v1:PersistentVolumeClaim"]);
        expect(prod.resources.filter((r) => r.retainOnDelete).map((r) => r.type).sort()).to.deep.equal(guarded);
        const normal = await stackRun("minikube");
        expect(normal.resources.filter((r) => r.protect || r.retainOnDelete)).to.have.length(0);
    });

    it("keeps the volume claim and its namespace on destroy with postgresVolumeRetention Retain, without protecting them", async () => {
        const retained = await runProgram("minikube", { postgresVolumeRetention: "Retain" });
        expect(retained.resources.filter((r) => r.retainOnDelete).map((r) => r.type).sort())
            .to.deep.equal(["kubernetes:core/v1:Namespace", "kubernetes:core/v1:PersistentVolumeClaim"]);
        expect(retained.resources.filter((r) => r.protect)).to.have.length(0);
    });

    it("makes the bucket, the namespace (so every Kubernetes object) and the volume claim wait for the data guard", async () => {
        const run = await stackRun("dev");
        const guard = run.one("pulumi-nodejs:dynamic:DataGuard");
        for (const type of ["aws:s3/bucket:Bucket", "kubernetes:core/v1:Namespace", "kubernetes:core/v1:PersistentVolumeClaim"]) {
            expect(run.one(type).dependencies, type).to.include(guard.urn);
        }
        expect(guard.inputs).to.deep.include({ namespace: "mlflow", postgresStorageSize: "20Gi", postgresMajor: "17", bucketPrefix: "mlflow-dev-" });
    });

    it("keeps the access key secret in the ArtifactStore's own outputs", async () => {
        await stackRun("minikube"); // mocks in place
        const store = new ArtifactStore("secretness-probe", {
            bucketPrefix: "probe-", artifactPrefix: "mlflow", noncurrentVersionExpirationDays: 1, backupPrefix: "backups", backupRetentionDays: 1, region: "us-east-1",
            workloads: { server: { namespace: "ns", serviceAccount: "server" }, backup: { namespace: "ns", serviceAccount: "backup" } },
        });
        for (const identity of [store.serverIdentity, store.backupIdentity]) {
            expect(await pulumi.isSecret(identity.accessKey!.secret)).to.equal(true);
            expect(await pulumi.isSecret(identity.accessKey!.id)).to.equal(true);
        }
        expect(await pulumi.isSecret(store.bucketName)).to.equal(false);
    });
});
