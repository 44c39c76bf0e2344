/**
 * Pure helpers shared by the Kubernetes components: labels, the Pod Security Standards
 * `restricted` security contexts, resource requirements and content checksums.
 */
import * as crypto from "crypto";
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import type { Resources } from "./config";

/** The recommended `app.kubernetes.io/*` labels for one component of the platform. */
export function labels(instance: string, component: string, version: string): Record<string, string> {
    return {
        ...selectorLabels(instance, component),
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/part-of": "mlflow",
        "app.kubernetes.io/managed-by": "pulumi",
    };
}

/**
 * The subset of {@link labels} that selects a component's pods. Stable across upgrades, since a
 * Deployment's or StatefulSet's selector is immutable.
 */
export function selectorLabels(instance: string, component: string): Record<string, string> {
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": instance,
    };
}

/** Namespace labels that enforce, audit and warn on the Pod Security Standards `restricted` profile. */
export const POD_SECURITY_LABELS: Readonly<Record<string, string>> = Object.freeze({
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/audit-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
});

/**
 * Pod-level security context for the `restricted` profile: a fixed non-root uid/gid, volumes
 * group-owned by that gid, and the runtime's default seccomp profile.
 */
export function podSecurityContext(uid: number): k8s.types.input.core.v1.PodSecurityContext {
    return {
        runAsNonRoot: true,
        runAsUser: uid,
        runAsGroup: uid,
        fsGroup: uid,
        fsGroupChangePolicy: "OnRootMismatch",
        seccompProfile: { type: "RuntimeDefault" },
    };
}

/**
 * Container-level security context for the `restricted` profile, with a read-only root
 * filesystem: whatever a process must write goes to an explicitly mounted volume. A uid runs the
 * container as that user and group, for pods that mix images built for different users.
 */
export function containerSecurityContext(uid?: number): k8s.types.input.core.v1.SecurityContext {
    return {
        ...(uid === undefined ? {} : { runAsUser: uid, runAsGroup: uid }),
        allowPrivilegeEscalation: false,
        privileged: false,
        readOnlyRootFilesystem: true,
        runAsNonRoot: true,
        capabilities: { drop: ["ALL"] },
        seccompProfile: { type: "RuntimeDefault" },
    };
}

/**
 * Ephemeral storage of a container: what its emptyDirs and logs may use. The kubelet evicts a pod
 * whose emptyDirs, writable layers and logs together pass the sum of its containers' limits.
 */
export interface EphemeralStorage {
    readonly request: string;
    readonly limit: string;
}

/** Requests and limits from validated config, with the container's ephemeral storage. */
export function resourceRequirements(r: Resources, storage: EphemeralStorage): k8s.types.input.core.v1.ResourceRequirements {
    return {
        requests: { cpu: r.cpuRequest, memory: r.memoryRequest, "ephemeral-storage": storage.request },
        limits: { cpu: r.cpuLimit, memory: r.memoryLimit, "ephemeral-storage": storage.limit },
    };
}

/** An environment variable read from one key of a Secret. */
export function secretEnv(name: string, secretName: pulumi.Input<string>, key: string): k8s.types.input.core.v1.EnvVar {
    return { name, valueFrom: { secretKeyRef: { name: secretName, key } } };
}

/** A memory-backed or disk-backed scratch volume. */
export function emptyDir(name: string, sizeLimit: string): k8s.types.input.core.v1.Volume {
    return { name, emptyDir: { sizeLimit } };
}

/**
 * SHA-256 of the given values, for a pod-template annotation: when a Secret or ConfigMap the
 * pods read changes, the annotation changes and the pods roll.
 */
export function checksum(...values: unknown[]): string {
    const hash = crypto.createHash("sha256");
    for (const v of values) {
        // An absent value (no such Secret in this mode) hashes as null, distinct from any string.
        hash.update(JSON.stringify(v ?? null, Object.keys(flatten(v)).sort()));
        hash.update("\0");
    }
    return hash.digest("hex");
}

function flatten(v: unknown, out: Record<string, true> = {}): Record<string, true> {
    if (v !== null && typeof v === "object") {
        for (const [k, inner] of Object.entries(v)) {
            out[k] = true;
            flatten(inner, out);
        }
    }
    return out;
}
