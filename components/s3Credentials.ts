/**
 * How a workload's pods reach S3 as their IAM identity: an access key in a Kubernetes Secret (the
 * values go from Pulumi outputs straight into `stringData`, no copy, no hand-made base64, and reach
 * processes only through `secretKeyRef`), or a role bound to the pods' ServiceAccount by EKS (Pod
 * Identity or IRSA), in which case no credential exists in the cluster at all.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { CredentialMode, StoreIdentity } from "./artifactStore";
import { secretEnv } from "./kube";

/** Keys of a Secret holding an access key, named as the AWS SDKs' environment variables. */
export const S3_SECRET_KEYS = Object.freeze({
    accessKeyId: "AWS_ACCESS_KEY_ID",
    secretAccessKey: "AWS_SECRET_ACCESS_KEY",
    region: "AWS_DEFAULT_REGION",
});

/** How a workload reaches S3, and where. */
export interface S3Access {
    /**
     * The identity's access key.
     * @default undefined: the pods get a role through their ServiceAccount (Pod Identity or IRSA)
     */
    readonly accessKey?: { readonly id: pulumi.Input<string>; readonly secret: pulumi.Input<string> };
    /**
     * The role, and how EKS hands it to the pods: IRSA needs the ServiceAccount annotated with it;
     * Pod Identity binds it by an association on the AWS side.
     */
    readonly role?: { readonly arn: pulumi.Input<string>; readonly via: "podIdentity" | "irsa" };
    /** Region of the bucket. */
    readonly region: string;
    /**
     * S3 endpoint for emulators.
     * @default undefined: AWS's own endpoint for the region
     */
    readonly endpoint?: string;
}

/** How a workload reaches S3 as one of the ArtifactStore's identities, in the stack's credential mode. */
export function s3AccessOf(identity: StoreIdentity, mode: CredentialMode, region: string, endpoint?: string): S3Access {
    return {
        accessKey: identity.accessKey,
        role: mode.mode === "accessKey" ? undefined : { arn: identity.roleArn, via: mode.mode },
        region,
        endpoint,
    };
}

/** A Secret with the access key and region of {@link S3Access}; none when the pods use a role. */
export function s3CredentialsSecret(name: string, metadata: k8s.types.input.meta.v1.ObjectMeta, access: S3Access,
    opts: pulumi.CustomResourceOptions): k8s.core.v1.Secret | undefined {
    if (access.accessKey === undefined) {
        return undefined;
    }
    return new k8s.core.v1.Secret(name, {
        metadata,
        type: "Opaque",
        stringData: {
            [S3_SECRET_KEYS.accessKeyId]: access.accessKey.id,
            [S3_SECRET_KEYS.secretAccessKey]: access.accessKey.secret,
            [S3_SECRET_KEYS.region]: access.region,
        },
    }, opts);
}

/**
 * The environment of a container that reaches S3: the access key from `secret` (or only the region,
 * when EKS injects a role's credentials), and the endpoint override, if any, in the variable its S3
 * client reads.
 */
export function s3Env(secret: k8s.core.v1.Secret | undefined, access: S3Access, endpointVariable: string): k8s.types.input.core.v1.EnvVar[] {
    const credentials = secret === undefined
        ? [{ name: S3_SECRET_KEYS.region, value: access.region }]
        : Object.values(S3_SECRET_KEYS).map((key) => secretEnv(key, secret.metadata.name, key));
    return [
        ...credentials,
        ...(access.endpoint === undefined ? [] : [{ name: endpointVariable, value: access.endpoint }]),
    ];
}

/**
 * The ServiceAccount a workload's pods run as: its own, never `default`, and with no API token
 * mounted (the pods never call the Kubernetes API; EKS's webhooks inject the projected token their
 * role needs as a volume of its own). With IRSA it names the role the token is exchanged for.
 */
export function workloadServiceAccount(name: string, serviceAccountName: string, metadata: k8s.types.input.meta.v1.ObjectMeta, access: S3Access,
    opts: pulumi.CustomResourceOptions): k8s.core.v1.ServiceAccount {
    return new k8s.core.v1.ServiceAccount(name, {
        metadata: {
            ...metadata,
            name: serviceAccountName,
            annotations: access.role?.via === "irsa" ? { "eks.amazonaws.com/role-arn": access.role.arn } : undefined,
        },
        automountServiceAccountToken: false,
    }, opts);
}
