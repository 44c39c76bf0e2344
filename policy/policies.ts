/**
 * The project's security rules as CrossGuard policies: plain objects, so the unit tests call
 * `validateResource` / `validateStack` directly on the program's resources and on broken
 * fixtures. `index.ts` puts them into the pack. Every rule is a pure check from `checks/`,
 * shared with the offline specs and the render.
 */
import type {
    PolicyResource, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy,
} from "@pulumi/policy";
import { iamPolicyFindings, parsePolicy, s3ControlFindings } from "./checks/aws";
import type { Finding } from "./checks/findings";
import { networkIsolationFindings } from "./checks/networkPolicy";
import { hardeningFindings, podTemplates, restrictedFindings } from "./checks/podSecurity";
import { bucketGroups, isKubernetesObject, POLICY_DOCUMENT_TYPES } from "./checks/resources";

/** Resource types that hold pod templates. */
export const WORKLOAD_TYPES: readonly string[] = [
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:apps/v1:ReplicaSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:batch/v1:CronJob",
    "kubernetes:core/v1:Pod",
];

/** The Kubernetes kind of a resource type token (`kubernetes:apps/v1:Deployment` → `Deployment`). */
export function kindOf(type: string): string {
    return type.split(":")[2] ?? "";
}

/** A Kubernetes resource's props as the object the API server receives. */
function asObject(type: string, props: Record<string, any>): Record<string, any> {
    return { ...props, kind: kindOf(type) };
}

function report(findings: readonly Finding[], reportViolation: ReportViolation, urn?: string): void {
    for (const f of findings) {
        reportViolation(`${f.rule} at ${f.path}: ${f.message}`, urn);
    }
}

/** A resource policy over the pod templates of workload resources. */
function podTemplatePolicy(
    name: string, description: string, check: (t: ReturnType<typeof podTemplates>[number]) => Finding[],
): ResourceValidationPolicy {
    return {
        name,
        description,
        enforcementLevel: "mandatory",
        validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
            if (!WORKLOAD_TYPES.includes(args.type)) {
                return;
            }
            for (const t of podTemplates(asObject(args.type, args.props))) {
                report(check(t), reportViolation);
            }
        },
    };
}

/** Pod Security Standards `restricted`, on every pod template, init containers included. */
export const podSecurityRestricted = podTemplatePolicy(
    "k8s-pod-security-restricted",
    "Every pod template meets the Pod Security Standards restricted profile (Kubernetes 1.33).",
    (t) => restrictedFindings(t.spec, t.path),
);

/** Read-only root, requests and memory limits, no token, pinned images, secrets by reference. */
export const podHardening = podTemplatePolicy(
    "k8s-pod-hardening",
    "Containers run with a read-only root filesystem, CPU and memory requests and a memory limit, pinned images, credentials only from Secrets, and pods mount no service-account token.",
    (t) => hardeningFindings(t).filter((f) => !WORKLOAD_LIFECYCLE_RULES.includes(f.rule)),
);

/** Rules of how a workload starts, serves and stops, as opposed to what it may do. */
const WORKLOAD_LIFECYCLE_RULES = ["hardening.probes", "hardening.gracefulShutdown"];

/**
 * Readiness and liveness probes on long-running containers, not the same probe twice, and a
 * Deployment's containers serving through their preStop hook within the grace period.
 */
export const workloadProbes = podTemplatePolicy(
    "k8s-workload-probes",
    "Long-running containers have a readiness and a liveness probe, and the two differ; a Deployment's containers have a preStop sleep shorter than the grace period.",
    (t) => hardeningFindings(t).filter((f) => WORKLOAD_LIFECYCLE_RULES.includes(f.rule)),
);

/** Namespaces enforce `restricted`, so a workload created outside Pulumi is held to it too. */
export const namespacePodSecurity: ResourceValidationPolicy = {
    name: "k8s-namespace-pod-security",
    description: "Every namespace enforces the Pod Security Standards restricted profile.",
    enforcementLevel: "mandatory",
    validateResource: (args, reportViolation) => {
        if (args.type !== "kubernetes:core/v1:Namespace") {
            return;
        }
        const enforce = args.props.metadata?.labels?.["pod-security.kubernetes.io/enforce"];
        if (enforce !== "restricted") {
            reportViolation(`label pod-security.kubernetes.io/enforce is ${String(enforce)}: set it to restricted`);
        }
    },
};

/** No Allow with a wildcard action or resource in any identity or bucket policy. */
export const iamNoWildcards: ResourceValidationPolicy = {
    name: "aws-iam-no-wildcards",
    description: "IAM and bucket policies allow no wildcard action, no wildcard resource, no NotAction or NotResource.",
    enforcementLevel: "mandatory",
    validateResource: (args, reportViolation) => {
        if (!POLICY_DOCUMENT_TYPES.includes(args.type)) {
            return;
        }
        report(iamPolicyFindings(parsePolicy(args.props.policy)), reportViolation);
    },
};

const resourceLikes = (resources: readonly PolicyResource[]) =>
    resources.map((r) => ({ type: r.type, urn: r.urn, props: r.props, dependencies: r.dependencies.map((d) => d.urn) }));

/** FSBP S3.4, S3.5, S3.8, S3.12, S3.13 and S3.14 on every bucket, with its companion resources. */
export const s3Fsbp: StackValidationPolicy = {
    name: "aws-s3-fsbp",
    description: "Every S3 bucket passes Security Hub FSBP S3.4, S3.5, S3.8, S3.12, S3.13 and S3.14.",
    enforcementLevel: "mandatory",
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        for (const group of bucketGroups(resourceLikes(args.resources))) {
            report(s3ControlFindings(group), reportViolation, group.urn);
        }
    },
};

/** Default-deny ingress in every namespace that runs pods, restricted egress for every pod. */
export const networkIsolation: StackValidationPolicy = {
    name: "k8s-network-isolation",
    description: "Namespaces that run pods deny ingress by default, every pod's egress is restricted, and no policy opens a port to the world.",
    enforcementLevel: "mandatory",
    validateStack: (args, reportViolation) => {
        const objects = args.resources.filter((r) => isKubernetesObject(r.type)).map((r) => asObject(r.type, r.props));
        report(networkIsolationFindings(objects), reportViolation);
    },
};

/** Every policy of the pack. */
export const policies: Array<ResourceValidationPolicy | StackValidationPolicy> = [
    podSecurityRestricted,
    podHardening,
    workloadProbes,
    namespacePodSecurity,
    networkIsolation,
    s3Fsbp,
    iamNoWildcards,
];
