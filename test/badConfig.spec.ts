/**
 * Invalid stack configurations, tried through the whole program: each must fail before a single
 * resource is registered, with an error that names the offending key.
 */
import { expect } from "chai";
import * as pulumi from "@pulumi/pulumi";
import { PROJECT } from "../components/config";
import { runProgram } from "./harness";

/** Resources the current mock monitor has seen registered (the harness's monitor keeps them). */
function registeredCount(): number {
    const monitor = pulumi.runtime.getMonitor() as unknown as { resources?: Map<string, unknown> };
    if (!(monitor?.resources instanceof Map)) {
        throw new Error("the mock monitor no longer exposes its registered resources; update this probe");
    }
    return monitor.resources.size;
}

/**
 * [stack, key, bad value, what the message must also say]. One per kind of check (format,
 * range, enum, cross-key), across both stacks; test/config.spec.ts tries many more on the parser.
 */
const CASES: ReadonlyArray<[string, string, string | number | boolean, string]> = [
    ["minikube", "kubeContext", "", "is required"],
    ["minikube", "namespace", "MLflow_Prod", "DNS-1123"],
    ["dev", "awsRegion", "europe", "AWS region"],
    ["minikube", "awsEndpoint", "ftp://files.example.com", "http(s) URL"],
    ["dev", "bucketPrefix", "MLflow-Artifacts", "lowercase"],
    ["minikube", "artifactPrefix", "/mlflow/", "no leading or trailing"],
    ["dev", "bucketKmsKeyArn", "alias/mlflow", "KMS key ARN"],
    ["dev", "postgresVolumeRetention", "Keep", "Delete, Retain"],
    ["dev", "mlflowMaxReplicas", 1, "at least"],
    ["minikube", "mlflowWorkers", 2.5, "integer"],
    ["dev", "mlflowCpuRequest", "4", "must not exceed"],
    ["dev", "mlflowDbPoolSize", 50, "since mlflow-k8s:mlflowDbPoolSize is set"],
    ["dev", "mlflowDefaultPermission", "ADMIN", "READ, EDIT, MANAGE, NO_PERMISSIONS"],
    ["minikube", "ingressHost", "mlflow", "fully qualified"],
];

describe("invalid stack configuration (whole program)", () => {
    it("the probe sees resources when the config is valid (the control)", async () => {
        await runProgram("minikube");
        expect(registeredCount()).to.be.greaterThan(20);
    });

    for (const [stack, key, value, says] of CASES) {
        it(`rejects ${key} = ${JSON.stringify(value)} on ${stack} before any resource`, async () => {
            let error: unknown;
            try {
                await runProgram(stack, { [key]: value });
            } catch (e) {
                error = e;
            }
            expect(error, "the program accepted it").to.be.instanceOf(Error);
            const message = String((error as Error).message);
            expect(message).to.include(`${PROJECT}:${key}`);
            expect(message).to.include(says);
            // Anything registered late would still arrive within a few ticks.
            await new Promise((r) => setTimeout(r, 20));
            expect(registeredCount()).to.equal(0);
        });
    }

    it("rejects TLS without an Ingress host, naming both keys", async () => {
        let error: unknown;
        try {
            await runProgram("dev", { ingressTlsSecretName: "mlflow-tls" });
        } catch (e) {
            error = e;
        }
        expect(String(error)).to.include(`${PROJECT}:ingressHost`).and.include(`${PROJECT}:ingressTlsSecretName`);
        expect(registeredCount()).to.equal(0);
    });

    it("lists every bad key at once", async () => {
        let error: unknown;
        try {
            await runProgram("minikube", { namespace: "Bad_NS", mlflowReplicas: -1, awsRegion: "moon-1" });
        } catch (e) {
            error = e;
        }
        for (const key of ["namespace", "mlflowReplicas", "awsRegion"]) {
            expect(String(error)).to.include(`${PROJECT}:${key}`);
        }
        expect(registeredCount()).to.equal(0);
    });
});
