/**
 * An IAM identity's S3 access key in a Kubernetes Secret, and the environment that hands it to a
 * container: the values go from Pulumi outputs straight into `stringData` (no copy, no hand-made
 * base64) and reach processes only through `secretKeyRef`.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { secretEnv } from "./kube";

/** Keys of a Secret holding an access key, named as the AWS SDKs' environment variables. */
export const S3_SECRET_KEYS = Object.freeze({
    accessKeyId: "AWS_ACCESS_KEY_ID",
    secretAccessKey: "AWS_SECRET_ACCESS_KEY",
    region: "AWS_DEFAULT_REGION",
});

/** An access key and where it is used. */
export interface S3Access {
    readonly accessKeyId: pulumi.Input<string>;
    readonly secretAccessKey: pulumi.Input<string>;
    /** Region of the bucket. */
    readonly region: string;
    /**
     * S3 endpoint for emulators.
     * @default undefined: AWS's own endpoint for the region
     */
    readonly endpoint?: string;
}

/** A Secret with the access key and region of {@link S3Access}. */
export function s3CredentialsSecret(name: string, metadata: k8s.types.input.meta.v1.ObjectMeta, access: S3Access,
    opts: pulumi.CustomResourceOptions): k8s.core.v1.Secret {
    return new k8s.core.v1.Secret(name, {
        metadata,
        type: "Opaque",
        stringData: {
            [S3_SECRET_KEYS.accessKeyId]: access.accessKeyId,
            [S3_SECRET_KEYS.secretAccessKey]: access.secretAccessKey,
            [S3_SECRET_KEYS.region]: access.region,
        },
    }, opts);
}

/**
 * The environment of a container that uses the access key in `secretName`, and the endpoint
 * override, if any, in the variable its S3 client reads.
 */
export function s3Env(secretName: pulumi.Input<string>, endpoint: { variable: string; url?: string }): k8s.types.input.core.v1.EnvVar[] {
    return [
        ...Object.values(S3_SECRET_KEYS).map((key) => secretEnv(key, secretName, key)),
        ...(endpoint.url === undefined ? [] : [{ name: endpoint.variable, value: endpoint.url }]),
    ];
}
