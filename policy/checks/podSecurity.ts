/**
 * Pod Security Standards `restricted` (Kubernetes 1.33, baseline controls included) and the
 * project's hardening rules, as pure functions over plain Kubernetes objects. The unit tests run
 * them on every rendered pod template and on broken fixtures; the policy pack runs them at
 * `pulumi preview`.
 *
 * Only fields are read, never whole objects, so a value still unknown during a preview is
 * touched only when a rule really needs it.
 */
import type { Finding } from "./findings";

// Kubernetes objects arrive as untyped JSON (rendered manifests, policy props).
type Obj = Record<string, any>;

/** A pod template found inside a workload object. */
export interface PodTemplate {
    /** Kind of the object that holds it. */
    readonly kind: string;
    /** Dotted path of the template's pod spec inside the object, e.g. `spec.template.spec`. */
    readonly path: string;
    /** Labels of the pods it creates. */
    readonly labels: Readonly<Record<string, string>>;
    /** The pod spec. */
    readonly spec: Obj;
}

/** Kinds whose pods run until stopped: they must have readiness and liveness probes. */
export const LONG_RUNNING_KINDS: readonly string[] = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Pod"];
/** Kinds that hold a pod template at `spec.template`. */
const TEMPLATE_KINDS = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"];

/** Every pod template an object holds (none for objects that run no pods). */
export function podTemplates(obj: Obj): PodTemplate[] {
    const kind: string = obj?.kind ?? "";
    if (kind === "Pod") {
        return [{ kind, path: "spec", labels: obj.metadata?.labels ?? {}, spec: obj.spec ?? {} }];
    }
    if (TEMPLATE_KINDS.includes(kind)) {
        const t = obj.spec?.template ?? {};
        return [{ kind, path: "spec.template.spec", labels: t.metadata?.labels ?? {}, spec: t.spec ?? {} }];
    }
    if (kind === "CronJob") {
        const t = obj.spec?.jobTemplate?.spec?.template ?? {};
        return [{ kind, path: "spec.jobTemplate.spec.template.spec", labels: t.metadata?.labels ?? {}, spec: t.spec ?? {} }];
    }
    return [];
}

/** A container of a pod spec with where it sits. */
interface Located {
    readonly path: string;
    readonly container: Obj;
    readonly init: boolean;
}

function containersOf(spec: Obj, path: string): Located[] {
    const out: Located[] = [];
    for (const [field, init] of [["initContainers", true], ["containers", false], ["ephemeralContainers", false]] as const) {
        const list: Obj[] = spec[field] ?? [];
        list.forEach((container, i) => out.push({ path: `${path}.${field}[${i}]`, container, init }));
    }
    return out;
}

/** Volume sources the `restricted` profile allows. */
export const RESTRICTED_VOLUME_TYPES: readonly string[] = [
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
];
/** Sysctls the baseline profile calls safe. */
export const SAFE_SYSCTLS: readonly string[] = [
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SELINUX_TYPES = ["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"];

/** Rule ids of the `restricted` profile, each with a fixture in the tests. */
export const RESTRICTED_RULES = [
    "pss.hostNamespaces", "pss.privileged", "pss.capabilities", "pss.hostPathVolumes", "pss.hostPorts",
    "pss.appArmor", "pss.seLinux", "pss.procMount", "pss.sysctls", "pss.hostProcess", "pss.volumeTypes",
    "pss.allowPrivilegeEscalation", "pss.runAsNonRoot", "pss.runAsUser", "pss.seccomp",
] as const;

/** Rule ids of the project's hardening rules, each with a fixture in the tests. */
export const HARDENING_RULES = [
    "hardening.readOnlyRootFilesystem", "hardening.resources", "hardening.serviceAccountToken",
    "hardening.imagePinned", "hardening.probes", "hardening.gracefulShutdown", "hardening.secretEnvByReference",
] as const;

/** The kubelet's default terminationGracePeriodSeconds. */
const DEFAULT_GRACE_SECONDS = 30;

/** Findings of the Pod Security Standards `restricted` profile for one pod spec. */
export function restrictedFindings(spec: Obj, path: string): Finding[] {
    const out: Finding[] = [];
    const add = (rule: string, at: string, message: string): void => { out.push({ rule, path: at, message }); };
    const podSc: Obj = spec.securityContext ?? {};
    const containers = containersOf(spec, path);

    for (const field of ["hostNetwork", "hostPID", "hostIPC"]) {
        if (spec[field] === true) {
            add("pss.hostNamespaces", `${path}.${field}`, "host namespaces must not be shared: leave unset or false");
        }
    }
    if (podSc.windowsOptions?.hostProcess === true) {
        add("pss.hostProcess", `${path}.securityContext.windowsOptions.hostProcess`, "Windows host-process pods are not allowed");
    }
    (spec.volumes ?? []).forEach((v: Obj, i: number) => {
        const source = Object.keys(v).find((k) => k !== "name");
        if (source === "hostPath") {
            add("pss.hostPathVolumes", `${path}.volumes[${i}].hostPath`, "hostPath volumes are not allowed");
        } else if (source !== undefined && !RESTRICTED_VOLUME_TYPES.includes(source)) {
            add("pss.volumeTypes", `${path}.volumes[${i}].${source}`, `volume type ${source} is not allowed; use one of ${RESTRICTED_VOLUME_TYPES.join(", ")}`);
        }
    });
    (podSc.sysctls ?? []).forEach((s: Obj, i: number) => {
        if (!SAFE_SYSCTLS.includes(s.name)) {
            add("pss.sysctls", `${path}.securityContext.sysctls[${i}]`, `sysctl ${s.name} is not in the safe set`);
        }
    });
    if (podSc.runAsUser === 0) {
        add("pss.runAsUser", `${path}.securityContext.runAsUser`, "must not run as uid 0");
    }
    checkSeLinux(podSc, `${path}.securityContext`, add);
    if (podSc.appArmorProfile?.type === "Unconfined") {
        add("pss.appArmor", `${path}.securityContext.appArmorProfile.type`, "AppArmor must not be Unconfined");
    }
    const podSeccomp: string | undefined = podSc.seccompProfile?.type;
    if (podSeccomp !== undefined && podSeccomp !== "RuntimeDefault" && podSeccomp !== "Localhost") {
        add("pss.seccomp", `${path}.securityContext.seccompProfile.type`, "seccomp must be RuntimeDefault or Localhost");
    }

    for (const { path: at, container } of containers) {
        const sc: Obj = container.securityContext ?? {};
        const scPath = `${at}.securityContext`;
        if (sc.privileged === true) {
            add("pss.privileged", `${scPath}.privileged`, "privileged containers are not allowed");
        }
        if (sc.windowsOptions?.hostProcess === true) {
            add("pss.hostProcess", `${scPath}.windowsOptions.hostProcess`, "Windows host-process containers are not allowed");
        }
        const drop: string[] = sc.capabilities?.drop ?? [];
        if (!drop.includes("ALL")) {
            add("pss.capabilities", `${scPath}.capabilities.drop`, "must drop ALL capabilities");
        }
        for (const cap of (sc.capabilities?.add ?? []) as string[]) {
            if (cap !== "NET_BIND_SERVICE") {
                add("pss.capabilities", `${scPath}.capabilities.add`, `capability ${cap} may not be added; only NET_BIND_SERVICE is allowed`);
            }
        }
        (container.ports ?? []).forEach((p: Obj, i: number) => {
            if (p.hostPort !== undefined && p.hostPort !== 0) {
                add("pss.hostPorts", `${at}.ports[${i}].hostPort`, "host ports are not allowed");
            }
        });
        if (sc.appArmorProfile?.type === "Unconfined") {
            add("pss.appArmor", `${scPath}.appArmorProfile.type`, "AppArmor must not be Unconfined");
        }
        checkSeLinux(sc, scPath, add);
        if (sc.procMount !== undefined && sc.procMount !== "Default") {
            add("pss.procMount", `${scPath}.procMount`, "procMount must be Default");
        }
        if (sc.allowPrivilegeEscalation !== false) {
            add("pss.allowPrivilegeEscalation", `${scPath}.allowPrivilegeEscalation`, "must be set to false");
        }
        if (sc.runAsNonRoot === false || (sc.runAsNonRoot !== true && podSc.runAsNonRoot !== true)) {
            add("pss.runAsNonRoot", `${scPath}.runAsNonRoot`, "runAsNonRoot must be true on the pod or the container, and not false on the container");
        }
        if (sc.runAsUser === 0) {
            add("pss.runAsUser", `${scPath}.runAsUser`, "must not run as uid 0");
        }
        const seccomp: string | undefined = sc.seccompProfile?.type;
        if (seccomp !== undefined && seccomp !== "RuntimeDefault" && seccomp !== "Localhost") {
            add("pss.seccomp", `${scPath}.seccompProfile.type`, "seccomp must be RuntimeDefault or Localhost");
        } else if (seccomp === undefined && podSeccomp === undefined) {
            add("pss.seccomp", `${scPath}.seccompProfile`, "set seccompProfile RuntimeDefault on the pod or the container");
        }
    }
    return out;
}

function checkSeLinux(sc: Obj, at: string, add: (rule: string, at: string, message: string) => void): void {
    const se: Obj | undefined = sc.seLinuxOptions;
    if (se === undefined) {
        return;
    }
    if (!SELINUX_TYPES.includes(se.type ?? "")) {
        add("pss.seLinux", `${at}.seLinuxOptions.type`, `SELinux type ${se.type} is not allowed`);
    }
    if ((se.user ?? "") !== "" || (se.role ?? "") !== "") {
        add("pss.seLinux", `${at}.seLinuxOptions`, "SELinux user and role must not be set");
    }
}

/** An image reference pinned to a digest or to an exact version tag (at least major.minor). */
export function isPinnedImage(image: string): boolean {
    if (/@sha256:[0-9a-f]{64}$/.test(image)) {
        return true;
    }
    const lastSegment = image.slice(image.lastIndexOf("/") + 1);
    const colon = lastSegment.indexOf(":");
    if (colon < 0) {
        return false;
    }
    return /^v?\d+\.\d+(\.\d+)?([-.+_][A-Za-z0-9.+_-]+)?$/.test(lastSegment.slice(colon + 1));
}

/**
 * The one ServiceAccount whose Jobs may mount an API token: the schema rollout's. The pack is
 * installed on its own, so it keeps its own copy; test/policyPack.spec.ts holds it equal to
 * components/lib/names.ts.
 */
export const ROLLOUT_SERVICE_ACCOUNT = "mlflow-schema-rollout";

// Env names that carry credentials; their values must come from a Secret, never a literal.
const CREDENTIAL_ENV = /(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|ACCESS_KEY|PRIVATE_KEY|API_KEY)/i;

/** Findings of the project's hardening rules (beyond `restricted`) for one pod template. */
export function hardeningFindings(template: PodTemplate): Finding[] {
    const { spec, path, kind } = template;
    const out: Finding[] = [];
    const add = (rule: string, at: string, message: string): void => { out.push({ rule, path: at, message }); };

    // The schema rollout's Jobs are the one exception: they scale the server and suspend CronJobs
    // through the API, as a ServiceAccount whose Role names exactly those objects.
    const apiClient = kind === "Job" && spec.serviceAccountName === ROLLOUT_SERVICE_ACCOUNT;
    if (spec.automountServiceAccountToken !== false && !(apiClient && spec.automountServiceAccountToken === true)) {
        add("hardening.serviceAccountToken", `${path}.automountServiceAccountToken`,
            `set to false: no workload here talks to the Kubernetes API but the schema rollout's Jobs (ServiceAccount ${ROLLOUT_SERVICE_ACCOUNT})`);
    }
    for (const { path: at, container, init } of containersOf(spec, path)) {
        if (container.securityContext?.readOnlyRootFilesystem !== true) {
            add("hardening.readOnlyRootFilesystem", `${at}.securityContext.readOnlyRootFilesystem`, "must be true; mount an emptyDir where the process writes");
        }
        const r: Obj = container.resources ?? {};
        for (const [field, key] of [["requests", "cpu"], ["requests", "memory"], ["limits", "memory"]] as const) {
            if (r[field]?.[key] === undefined) {
                add("hardening.resources", `${at}.resources.${field}.${key}`, `${field}.${key} must be set`);
            }
        }
        const image: unknown = container.image;
        if (typeof image !== "string" || !isPinnedImage(image)) {
            add("hardening.imagePinned", `${at}.image`, `image ${String(image)} must be pinned to a digest or an exact version tag`);
        }
        (container.env ?? []).forEach((e: Obj, i: number) => {
            if (CREDENTIAL_ENV.test(e.name ?? "") && e.value !== undefined) {
                add("hardening.secretEnvByReference", `${at}.env[${i}]`, `${e.name} looks like a credential: take it from a Secret with valueFrom.secretKeyRef`);
            }
        });
        if (!init && LONG_RUNNING_KINDS.includes(kind) && !at.includes("ephemeralContainers")) {
            const { readinessProbe, livenessProbe } = container;
            if (readinessProbe === undefined || livenessProbe === undefined) {
                add("hardening.probes", at, "a long-running container needs both a readinessProbe and a livenessProbe");
            } else if (JSON.stringify(readinessProbe) === JSON.stringify(livenessProbe)) {
                add("hardening.probes", `${at}.livenessProbe`, "liveness must differ from readiness, or a busy pod is restarted instead of taken out of rotation");
            }
        }
        if (!init && kind === "Deployment" && !at.includes("ephemeralContainers")) {
            checkGracefulShutdown(container, spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS, at, add);
        }
    }
    return out;
}

/**
 * A Deployment's pods are replaced on every rollout while a Service routes to them: each container
 * needs a preStop hook that keeps it serving while its endpoint's removal propagates (a `sleep`
 * command, or the kubelet's sleep action), and the hook must end with time left in the grace
 * period for requests in flight to drain after SIGTERM.
 */
function checkGracefulShutdown(container: Obj, graceSeconds: number, at: string, add: (rule: string, at: string, message: string) => void): void {
    const preStop: Obj | undefined = container.lifecycle?.preStop;
    if (preStop === undefined) {
        add("hardening.gracefulShutdown", `${at}.lifecycle.preStop`, "a Deployment's container needs a preStop hook (a short sleep), or requests routed to it while its endpoint is removed fail");
        return;
    }
    const command: unknown = preStop.exec?.command;
    const seconds = preStop.sleep !== undefined ? Number(preStop.sleep.seconds)
        : Array.isArray(command) && command.length === 2 && command[0] === "sleep" ? Number(command[1]) : undefined;
    if (seconds === undefined || !Number.isFinite(seconds) || seconds <= 0) {
        add("hardening.gracefulShutdown", `${at}.lifecycle.preStop`, "the preStop hook must be a sleep of a positive number of seconds (exec [\"sleep\", \"N\"] or sleep.seconds)");
    } else if (seconds >= graceSeconds) {
        add("hardening.gracefulShutdown", `${at}.lifecycle.preStop`, `the preStop sleep (${seconds} s) must end before terminationGracePeriodSeconds (${graceSeconds} s), leaving time to drain after SIGTERM`);
    }
}

/** Every `restricted` and hardening finding for every pod template an object holds. */
export function workloadFindings(obj: Obj): Finding[] {
    return podTemplates(obj).flatMap((t) => [...restrictedFindings(t.spec, t.path), ...hardeningFindings(t)]);
}
