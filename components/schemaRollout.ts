/**
 * The schema rollout: what stops every writer of MLflow's databases before a migration and starts
 * them again after it (docs/adr/0012-schema-rollout.md).
 *
 * `pulumi up` orders it: the quiesce Job → the migration Job (backup, migrate) → the server's
 * Deployment → the resume Job. The quiesce Job compares the databases' Alembic revisions with the
 * new image's heads: when they differ, it suspends the CronJobs that write, scales the Deployment to
 * zero and waits until no pod and no other database session is left; otherwise it stops nothing and
 * the Deployment rolls pod by pod. Both Jobs run `server-scripts/rollout.py` as a ServiceAccount of
 * their own, whose Role may get and patch exactly the Deployment and those CronJobs.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { Resources } from "./config";
import { EphemeralStorage, labels, resourceRequirements, selectorLabels } from "./kube";
import { ROLLOUT_SERVICE_ACCOUNT } from "./lib/names";
import { MLFLOW_VERSION } from "./versions";

export { ROLLOUT_SERVICE_ACCOUNT };

/**
 * How long the quiesce Job waits for the last writer to go: the server's pods stop within their
 * grace period (30 s); a CronJob run in progress (a garbage collection, a backup) may take longer,
 * and is waited for rather than killed.
 */
export const QUIESCE_TIMEOUT_SECONDS = 15 * 60;
/** The Job's own deadline, above its wait and an image pull. */
const QUIESCE_DEADLINE_SECONDS = QUIESCE_TIMEOUT_SECONDS + 20 * 60;
const RESUME_DEADLINE_SECONDS = 20 * 60;
/** Pulumi waits a little longer than the Jobs may run, so that Kubernetes ends them first. */
const timeout = (seconds: number) => `${seconds + 5 * 60}s`;

/**
 * The quiesce step imports MLflow's migration code and SQLAlchemy: 245 MiB resident at its peak,
 * measured with MLflow 3.17.2 (`/usr/bin/time -v`); resume only the standard library (20 MiB).
 */
export const QUIESCE_RESOURCES: Resources = Object.freeze({ cpuRequest: "50m", cpuLimit: "1", memoryRequest: "256Mi", memoryLimit: "512Mi" });
export const RESUME_RESOURCES: Resources = Object.freeze({ cpuRequest: "10m", cpuLimit: "250m", memoryRequest: "32Mi", memoryLimit: "128Mi" });
const STORAGE: EphemeralStorage = { request: "16Mi", limit: "256Mi" };

/** The Role the rollout's ServiceAccount is bound to: get and patch on exactly these objects. */
export function rolloutRules(deploymentName: string, cronJobNames: readonly pulumi.Input<string>[]): k8s.types.input.rbac.v1.PolicyRule[] {
    return [
        { apiGroups: ["apps"], resources: ["deployments"], resourceNames: [deploymentName], verbs: ["get", "patch"] },
        ...(cronJobNames.length === 0 ? [] : [{ apiGroups: ["batch"], resources: ["cronjobs"], resourceNames: [...cronJobNames], verbs: ["get", "patch"] }]),
    ];
}

/** What a pod of the rollout runs: the server's image, scripts and database client settings. */
export interface RolloutPod {
    /** Pod-level settings every job of the server shares (security context, no service links). */
    readonly podSpec: Readonly<Record<string, unknown>>;
    /** The container settings every job of the server shares (image, security context, working directory). */
    readonly container: Readonly<Record<string, unknown>>;
    /** The database login and client settings (libpq variables). */
    readonly env: pulumi.Input<k8s.types.input.core.v1.EnvVar>[];
    readonly volumes: pulumi.Input<k8s.types.input.core.v1.Volume>[];
    readonly volumeMounts: pulumi.Input<k8s.types.input.core.v1.VolumeMount>[];
    /** Path of `rollout.py` in the container. */
    readonly script: string;
}

/** Arguments of {@link SchemaRollout}. */
export interface SchemaRolloutArgs {
    readonly namespace: pulumi.Input<string>;
    /** Instance name the labels carry (the tracking server's). */
    readonly instance: string;
    /** The tracking server's Deployment, scaled to zero for a migration. */
    readonly deploymentName: string;
    /** The CronJobs that write to the databases (garbage collection, serving grants, backups), suspended for a migration. */
    readonly cronJobNames: readonly pulumi.Input<string>[];
    /** The tracking and auth database URIs the quiesce step reads the revisions of. */
    readonly databaseUris: pulumi.Input<{ readonly tracking: string; readonly auth: string }>;
    readonly pod: RolloutPod;
}

/**
 * The ServiceAccount, Role and RoleBinding of the rollout, and its quiesce Job; {@link resumeAfter}
 * adds the resume Job once the new server runs.
 */
export class SchemaRollout extends pulumi.ComponentResource {
    /** The quiesce Job: the migration Job starts once it has completed. */
    public readonly quiesce: k8s.batch.v1.Job;
    /** Labels that select the quiesce and resume pods (for NetworkPolicies). */
    public readonly podSelector: Readonly<Record<string, string>>;
    private readonly args: SchemaRolloutArgs;
    private readonly access: pulumi.Resource[];

    constructor(name: string, args: SchemaRolloutArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:kubernetes:SchemaRollout", name, {}, opts);
        const child = { parent: this };
        this.args = args;
        this.podSelector = selectorLabels(args.instance, "schema-rollout");
        const meta = { namespace: args.namespace, labels: labels(args.instance, "schema-rollout", MLFLOW_VERSION) };

        // Its token is mounted into the rollout's pods only; no other pod runs as it.
        const serviceAccount = new k8s.core.v1.ServiceAccount(`${name}-service-account`, {
            metadata: { ...meta, name: ROLLOUT_SERVICE_ACCOUNT },
            automountServiceAccountToken: false,
        }, child);
        const role = new k8s.rbac.v1.Role(`${name}-role`, {
            metadata: meta,
            rules: rolloutRules(args.deploymentName, args.cronJobNames),
        }, child);
        const binding = new k8s.rbac.v1.RoleBinding(`${name}-role-binding`, {
            metadata: meta,
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name },
            subjects: [{ kind: "ServiceAccount", name: serviceAccount.metadata.name, namespace: args.namespace }],
        }, child);
        this.access = [serviceAccount, role, binding];

        this.quiesce = this.job(`${name}-quiesce`, "quiesce", pulumi.output(args.databaseUris).apply((u) => [args.pod.script, "quiesce", u.tracking, u.auth]),
            args.pod.env, QUIESCE_RESOURCES, QUIESCE_DEADLINE_SECONDS, this.access);
        this.registerOutputs({});
    }

    /**
     * The resume Job, after `dependsOn` (the Deployment and the CronJobs, so that what it resumes
     * already runs the new image). It runs again whenever the quiesce Job does.
     */
    resumeAfter(name: string, dependsOn: pulumi.Resource[]): k8s.batch.v1.Job {
        return this.job(name, "resume", [this.args.pod.script, "resume"],
            // A new quiesce Job (a new name) gives this one a new spec, so Pulumi replaces and runs it.
            [{ name: "ROLLOUT_QUIESCE_JOB", value: this.quiesce.metadata.name }], RESUME_RESOURCES, RESUME_DEADLINE_SECONDS, [...this.access, ...dependsOn]);
    }

    private job(name: string, step: string, args: pulumi.Input<pulumi.Input<string>[]>, env: pulumi.Input<k8s.types.input.core.v1.EnvVar>[],
        resources: Resources, deadline: number, dependsOn: pulumi.Resource[]): k8s.batch.v1.Job {
        const a = this.args;
        const podLabels = labels(a.instance, "schema-rollout", MLFLOW_VERSION);
        return new k8s.batch.v1.Job(name, {
            metadata: {
                namespace: a.namespace,
                labels: podLabels,
                // A Job that failed (a writer that would not stop) is replaced by the next update.
                annotations: { "pulumi.com/replaceUnready": "true" },
            },
            spec: {
                // Both steps are idempotent; a retry goes on where the failed attempt stopped.
                backoffLimit: 2,
                activeDeadlineSeconds: deadline,
                template: {
                    metadata: { labels: { ...podLabels, "mlflow-k8s/rollout-step": step } },
                    spec: {
                        ...a.pod.podSpec,
                        serviceAccountName: ROLLOUT_SERVICE_ACCOUNT,
                        // The only pods of the stack that talk to the API server.
                        automountServiceAccountToken: true,
                        restartPolicy: "Never",
                        containers: [{
                            ...a.pod.container,
                            name: step,
                            command: ["python"],
                            args,
                            env: [
                                ...env,
                                { name: "ROLLOUT_DEPLOYMENT", value: a.deploymentName },
                                { name: "ROLLOUT_CRONJOBS", value: pulumi.all([...a.cronJobNames]).apply((names) => names.join(",")) },
                                { name: "ROLLOUT_TIMEOUT_SECONDS", value: String(QUIESCE_TIMEOUT_SECONDS) },
                            ],
                            resources: resourceRequirements(resources, STORAGE),
                            // The last lines of the log become the pod's termination message, which
                            // `kubectl describe` and the Job's failure show.
                            terminationMessagePolicy: "FallbackToLogsOnError",
                            volumeMounts: a.pod.volumeMounts,
                        }],
                        volumes: a.pod.volumes,
                    },
                },
            },
        }, { parent: this, dependsOn, customTimeouts: { create: timeout(deadline), update: timeout(deadline) } });
    }
}
