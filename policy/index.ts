/**
 * CrossGuard policy pack: the project's security rules, mandatory, at `pulumi preview` and
 * `pulumi up`:
 *
 *   pulumi preview --policy-pack ./policy
 *
 * The rules live in `policies.ts` (constructing a PolicyPack starts a gRPC server, so the unit
 * tests use the rules directly and never import this file for real).
 */
import { PolicyPack } from "@pulumi/policy";
import { policies } from "./policies";

new PolicyPack("mlflow-k8s-security", {
    description: "Pod Security restricted, pod hardening and probes, network isolation, S3 FSBP controls and IAM least privilege for the MLflow stack.",
    enforcementLevel: "mandatory",
    policies,
});
