import * as aws from "@pulumi/aws";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config";
import { POD_SECURITY_LABELS } from "./kube";

/** The explicit providers every resource of the stack goes through. */
export interface Providers {
    readonly kubernetes: k8s.Provider;
    readonly aws: aws.Provider;
}

/**
 * Builds the stack's providers from its config alone. The Kubernetes provider always names a
 * context, so the stack can never land on whatever cluster `kubectl` happens to point at.
 */
export function createProviders(name: string, config: StackConfig): Providers {
    const kubernetes = new k8s.Provider(`${name}-k8s`, {
        context: config.kubeContext,
        kubeconfig: config.kubeconfig,
        // The stack's cluster is the one its context names. Without this, the provider guesses
        // from the kubeconfig and replaces every resource (the database volume included) when it
        // thinks the cluster changed; with it, only a new context does, which the data guard refuses.
        clusterIdentifier: config.kubeContext,
        // Anything created without an explicit namespace is an error in this program; never
        // let it fall into `default`.
        namespace: config.namespace,
        enableServerSideApply: true,
    });
    const endpoint = config.aws.endpoint;
    const awsProvider = new aws.Provider(`${name}-aws`, {
        region: config.aws.region as aws.Region,
        defaultTags: { tags: { "app.kubernetes.io/part-of": "mlflow", "pulumi:stack": pulumi.getStack() } },
        ...(endpoint === undefined ? {} : {
            endpoints: [{ s3: endpoint, iam: endpoint, sts: endpoint }],
            // Emulators serve buckets by path, have no metadata service and no real account.
            s3UsePathStyle: true,
            skipCredentialsValidation: true,
            skipMetadataApiCheck: true,
            skipRequestingAccountId: true,
        }),
    });
    return { kubernetes, aws: awsProvider };
}

/**
 * Creates the namespace the stack owns, enforcing the Pod Security Standards `restricted` profile.
 * It holds the database volume, so the options protect or keep it along with the data.
 */
export function createNamespace(name: string, namespace: string, provider: k8s.Provider,
    opts: Pick<pulumi.CustomResourceOptions, "dependsOn" | "protect" | "retainOnDelete"> = {}): k8s.core.v1.Namespace {
    return new k8s.core.v1.Namespace(name, {
        metadata: {
            name: namespace,
            labels: { ...POD_SECURITY_LABELS, "app.kubernetes.io/part-of": "mlflow", "app.kubernetes.io/managed-by": "pulumi" },
        },
    }, { ...opts, provider });
}
