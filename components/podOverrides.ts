/**
 * Escape hatches: settings an operator applies to every pod the program makes (the server, the
 * migration Job, PostgreSQL, the backups and restores, garbage collection, the model servers and
 * their grants) without editing a component. Each is validated here, before anything is created,
 * and none can add a privilege: the pods stay inside Pod Security `restricted`.
 *
 * They are applied by one resource transformation on every Kubernetes component, so a pod a future
 * component adds gets them too (the unit suite checks every rendered pod template).
 */
import * as pulumi from "@pulumi/pulumi";
import { MLFLOW_IMAGE, POSTGRES_IMAGE } from "./versions";

/**
 * The kinds of pod the program makes, by their `app.kubernetes.io/name` label: what an `extraEnv`
 * entry's `workloads` may name.
 */
export const WORKLOADS = [
    "tracking-server", "db-migration", "schema-rollout", "postgres", "db-backup", "db-restore", "artifact-gc", "serving-grants", "model-server",
] as const;
export type Workload = (typeof WORKLOADS)[number];

/**
 * An extra environment variable: a plain value, or one key of a Secret that already exists in the
 * namespace; in the pods of `workloads` (undefined: every pod).
 */
export type ExtraEnv = { readonly name: string; readonly workloads?: readonly Workload[] } & (
    | { readonly value: string }
    | { readonly secretName: string; readonly secretKey: string; readonly optional: boolean });

/** A toleration, as Kubernetes spells it. */
export interface Toleration {
    readonly key?: string;
    readonly operator: "Exists" | "Equal";
    readonly value?: string;
    readonly effect?: "NoSchedule" | "PreferNoSchedule" | "NoExecute";
    readonly tolerationSeconds?: number;
}

/**
 * A topology spread constraint without its label selector: each workload's constraint selects that
 * workload's own pods (its selector labels), which the operator need not know.
 */
export interface TopologySpread {
    readonly maxSkew: number;
    readonly topologyKey: string;
    readonly whenUnsatisfiable: "DoNotSchedule" | "ScheduleAnyway";
    readonly minDomains?: number;
}

/** What the escape hatches add to every pod. Empty values add nothing. */
export interface PodOverrides {
    /** `extraEnv`: appended to every container's environment, init containers included. */
    readonly env: readonly ExtraEnv[];
    /** `imagePullSecrets`: Secrets in the namespace holding registry credentials. */
    readonly imagePullSecrets: readonly string[];
    /**
     * `imageMirrors`: by upstream registry (`ghcr.io`, `docker.io`), the registry and path that
     * mirrors it; the program's images are pulled from there under their own repository paths.
     */
    readonly imageMirrors: Readonly<Record<string, string>>;
    readonly nodeSelector: Readonly<Record<string, string>>;
    readonly tolerations: readonly Toleration[];
    readonly topologySpreadConstraints: readonly TopologySpread[];
    readonly annotations: Readonly<Record<string, string>>;
    readonly labels: Readonly<Record<string, string>>;
}

/** The config keys of the escape hatches, as `pulumi config set` names them. */
export const POD_OVERRIDE_KEYS = [
    "extraEnv", "imagePullSecrets", "imageMirrors", "nodeSelector", "tolerations", "topologySpreadConstraints", "podAnnotations", "podLabels",
] as const;

/**
 * Environment variables the program sets itself in some container. An extra variable of the same
 * name would be a duplicate entry (refused by the API server's apply) or would silently change what
 * the program configured (`mlflowDbPoolSize`, say, has a key of its own). The unit suite checks
 * that every name a rendered container sets is reserved here.
 */
export const RESERVED_ENV_NAMES: ReadonlySet<string> = new Set([
    "HOME", "PATH", "PYTHONDONTWRITEBYTECODE", "SERVED_MODELS", "MODEL_URI", "MODEL_DIR", "PROMETHEUS_MULTIPROC_DIR",
    "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_DB", "MLFLOW_AUTH_DB",
    "MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "MLFLOW_CRYPTO_KEK_PASSPHRASE", "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
    "MLFLOW_DISABLE_TELEMETRY", "MLFLOW_DB_USER", "MLFLOW_DB_PASSWORD", "MLFLOW_S3_ENDPOINT_URL", "__pyfunc_model_path__",
]);

/**
 * Prefixes reserved whole: `AWS_` carries the pods' AWS identity and `PG` the database login (libpq
 * reads every `PG*` variable); `MLFLOW_` configures MLflow, whose variables can turn its security
 * middleware off or send a client's credentials to another registry (the program's settings have
 * keys of their own); `UVICORN_`, `GUNICORN_`, `PYTHON` and `LD_` change what the servers run;
 * `POSTGRES_` configures the PostgreSQL image, `BACKUP_`/`RESTORE_` the backup scripts, `SERVING_`
 * the model servers' users. An extra variable there could swap an identity or a protection the
 * program set up.
 */
export const RESERVED_ENV_PREFIXES: readonly string[] = [
    "AWS_", "PG", "MLFLOW_", "UVICORN_", "GUNICORN_", "PYTHON", "LD_", "POSTGRES_", "BACKUP_", "RESTORE_", "SERVING_", "ROLLOUT_",
    "REQUEST_BOUNDS_",
    // What the kubelet sets for pods that talk to the API server (the schema rollout's).
    "KUBERNETES_",
];

/** Whether the program reserves an environment variable's name. */
export function isReservedEnvName(name: string): boolean {
    return RESERVED_ENV_NAMES.has(name) || RESERVED_ENV_PREFIXES.some((p) => name.startsWith(p));
}

/**
 * Words (between underscores) of a name that reads like a credential, whose value belongs in a
 * Secret, never in a pod spec: a heuristic, which a name like DATABASE_URL with a password inside
 * escapes; it is there to catch the common case.
 */
const CREDENTIAL_WORDS: ReadonlySet<string> = new Set([
    "PASSWORD", "PASSWD", "PASS", "PWD", "SECRET", "SECRETS", "TOKEN", "TOKENS", "APIKEY", "KEY", "KEYS", "CREDENTIAL", "CREDENTIALS", "DSN", "PRIVATE",
]);

/** Whether an environment variable's name reads like a credential ({@link CREDENTIAL_WORDS}). */
export function isCredentialName(name: string): boolean {
    return name.toUpperCase().split("_").some((word) => CREDENTIAL_WORDS.has(word));
}
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
// A registry host (with a dot, a port or `localhost`, as container runtimes tell a host from a
// Docker Hub namespace) and at most one port, with an optional path under which the mirror serves
// the images (path components as the distribution spec allows them).
const HOST_LABEL = "[a-z0-9]([a-z0-9-]*[a-z0-9])?";
const PATH_COMPONENT = "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*";
const REGISTRY = new RegExp(`^((${HOST_LABEL}(\\.${HOST_LABEL})+|localhost)(:\\d{1,5})?|${HOST_LABEL}:\\d{1,5})(\\/${PATH_COMPONENT})*$`);

/**
 * Annotation keys refused on pods: the ones the program sets (content checksums that roll the pods,
 * Prometheus's discovery annotations) and the ones that change a container's confinement (AppArmor
 * and the legacy seccomp annotations).
 */
const RESERVED_ANNOTATION = /^(checksum\/|prometheus\.io\/)|apparmor\.security\.beta\.kubernetes\.io|seccomp\.security\.alpha\.kubernetes\.io/;

/** Label keys refused on pods: the program's own (its selectors among them) and Kubernetes's. */
const RESERVED_LABEL = /^(app\.kubernetes\.io\/|([^/]*\.)?(kubernetes\.io|k8s\.io)\/)/;

/** What a label key, a label value and an annotation key may be, as errors say it. */
const LABEL_KEY_RULE = "a label key (an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.')";
const LABEL_VALUE_RULE = "a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
export const ANNOTATION_KEY_RULE = "an annotation key (an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.')";

/** Whether a string is a label or annotation key: an optional DNS subdomain prefix, a name of at most 63 characters. */
export function isQualifiedName(key: string): boolean {
    const slash = key.lastIndexOf("/");
    const prefix = slash < 0 ? undefined : key.slice(0, slash);
    const name = key.slice(slash + 1);
    return name.length <= 63 && QUALIFIED_NAME.test(name)
        && (prefix === undefined || (prefix.length <= 253 && DNS1123_SUBDOMAIN.test(prefix)));
}

type Fail = (key: string, value: unknown, allowed: string) => void;

/**
 * Validates the escape hatches' raw config values (structured ones as JSON, as the Pulumi SDK returns
 * them). Every problem goes to `fail`, naming the key (and entry) and what is allowed.
 */
export function parsePodOverrides(raw: (key: string) => string | undefined, fail: Fail, isSecret: (key: string) => boolean): PodOverrides {
    const structured = (key: string, shape: "list" | "map", example: string, fail_: Fail = fail): unknown =>
        structuredValue(key, raw(key), shape, example, fail_);

    // Values of extraEnv may be credentials set by mistake: no error repeats them.
    const hidden: Fail = (key, value, allowed) => fail(key, key.endsWith(".name") ? value : "[not shown]", allowed);
    const env = parseExtraEnv(structured("extraEnv", "list", "[{ name: HTTPS_PROXY, value: http://proxy:3128 }]", hidden) as unknown[], hidden, isSecret("extraEnv"));

    const imagePullSecrets = (raw("imagePullSecrets") ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
    for (const name of imagePullSecrets) {
        if (!(name.length <= 253 && DNS1123_SUBDOMAIN.test(name))) {
            fail("imagePullSecrets", name, "a comma-separated list of Secret names (DNS-1123 subdomains) in the stack's namespace, such as registry-credentials");
        }
    }

    const upstreams = [...new Set(programImages().map(registryOf))];
    const mirrors = stringMap("imageMirrors", structured("imageMirrors", "map", "{ ghcr.io: registry.example.com/ghcr, docker.io: registry.example.com/dockerhub }") as Record<string, unknown>, fail, (k, v) =>
        !upstreams.includes(k) ? `a registry the program pulls from (${upstreams.join(", ")}); images you name yourself are not mirrored`
            : !REGISTRY.test(v.replace(/\/+$/, "")) ? "a registry host with an optional port and path that mirrors it, such as registry.example.com/ghcr or 123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub" : undefined);
    const imageMirrors = Object.fromEntries(Object.entries(mirrors).map(([k, v]) => [k, v.replace(/\/+$/, "")]));

    const nodeSelector = stringMap("nodeSelector", structured("nodeSelector", "map", "{ kubernetes.io/arch: amd64 }") as Record<string, unknown>, fail, (k, v) =>
        !isQualifiedName(k) ? LABEL_KEY_RULE
            : !(v.length <= 63 && LABEL_VALUE.test(v)) ? LABEL_VALUE_RULE : undefined);

    const tolerations = parseTolerations(structured("tolerations", "list", "[{ key: dedicated, operator: Equal, value: mlflow, effect: NoSchedule }]") as unknown[], fail);
    const topologySpreadConstraints = parseTopologySpread(
        structured("topologySpreadConstraints", "list", "[{ maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway }]") as unknown[], fail);

    const annotations = stringMap("podAnnotations", structured("podAnnotations", "map", "{ team: ml-platform }") as Record<string, unknown>, fail, (k) =>
        !isQualifiedName(k) ? ANNOTATION_KEY_RULE
            : RESERVED_ANNOTATION.test(k) ? "not one the program sets (checksum/*, prometheus.io/*) nor one that changes a container's confinement (AppArmor, seccomp)" : undefined);

    const labels = parseLabelMap("podLabels", raw("podLabels"), fail);

    return { env, imagePullSecrets, imageMirrors, nodeSelector, tolerations, topologySpreadConstraints, annotations, labels };
}

/**
 * A map of labels the program adds to its own objects (`podLabels`, `serviceMonitorLabels`): label
 * keys and values, never the program's own keys (which select its pods) nor Kubernetes's.
 */
export function parseLabelMap(key: string, value: string | undefined, fail: Fail): Record<string, string> {
    const map = structuredValue(key, value, "map", "{ team: ml-platform }", fail) as Record<string, unknown>;
    return stringMap(key, map, fail, (k, v) =>
        !isQualifiedName(k) ? LABEL_KEY_RULE
            : RESERVED_LABEL.test(k) ? "not under app.kubernetes.io/ (the program's own labels, which select its pods) nor kubernetes.io/ or k8s.io/ (Kubernetes's)"
            : !(v.length <= 63 && LABEL_VALUE.test(v)) ? LABEL_VALUE_RULE : undefined);
}

/**
 * A structured config value (a list or a map, which the SDK hands over as JSON); unset or empty is an
 * empty one. Anything else fails naming the key, and yields an empty one so validation goes on.
 */
export function structuredValue(key: string, value: string | undefined, shape: "list" | "map", example: string, fail: Fail): unknown {
    const empty = shape === "list" ? [] : {};
    if (value === undefined || value === "") {
        return empty;
    }
    let parsed: unknown;
    try {
        parsed = JSON.parse(value);
    } catch {
        fail(key, value, `a ${shape} set in the stack file or with \`pulumi config set --path\`, such as ${example}`);
        return empty;
    }
    const ok = shape === "list" ? Array.isArray(parsed) : isObject(parsed);
    if (!ok) {
        fail(key, parsed, `a ${shape === "list" ? "list" : "map of strings"}, such as ${example}`);
        return empty;
    }
    return parsed;
}

/** A map of strings; numbers and booleans (as YAML writes them) become strings. */
export function stringMap(key: string, map: Record<string, unknown>, fail: Fail, problem: (k: string, v: string) => string | undefined): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, raw] of Object.entries(map)) {
        if (typeof raw !== "string" && typeof raw !== "number" && typeof raw !== "boolean") {
            fail(`${key}.${k}`, raw, "a string");
            continue;
        }
        const v = String(raw);
        const p = problem(k, v);
        if (p !== undefined) {
            fail(`${key}.${k}`, v, p);
        }
        out[k] = v;
    }
    return out;
}

/** Checks that an entry holds only the given fields, naming the others. */
function onlyFields(at: string, entry: Record<string, unknown>, fields: readonly string[], fail: Fail): void {
    for (const field of Object.keys(entry)) {
        if (!fields.includes(field)) {
            fail(`${at}.${field}`, entry[field], `not a field here; the fields are ${fields.join(", ")}`);
        }
    }
}

function isObject(v: unknown): v is Record<string, unknown> {
    return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Visits each entry of a list key that is an object with only the given fields; others fail, named `key[i]`. */
function eachObject(key: string, entries: unknown[], shape: string, fields: readonly string[], fail: Fail,
    visit: (entry: Record<string, unknown>, at: string) => void): void {
    entries.forEach((entry, i) => {
        const at = `${key}[${i}]`;
        if (!isObject(entry)) {
            fail(at, entry, `an object ${shape}`);
            return;
        }
        onlyFields(at, entry, fields, fail);
        visit(entry, at);
    });
}

function parseExtraEnv(entries: unknown[], fail: Fail, setAsSecret: boolean): ExtraEnv[] {
    const out: ExtraEnv[] = [];
    const names = new Set<string>();
    eachObject("extraEnv", entries, "{ name, value } or { name, secretName, secretKey }", ["name", "value", "secretName", "secretKey", "optional", "workloads"], fail, (entry, at) => {
        const name = entry.name;
        if (typeof name !== "string" || !ENV_NAME.test(name)) {
            fail(`${at}.name`, name, "an environment variable name: letters, digits and '_', not starting with a digit");
            return;
        }
        const label = `${at} (${name})`;
        if (isReservedEnvName(name)) {
            fail(`${label}.name`, name, `not a variable the program sets or reserves (${RESERVED_ENV_PREFIXES.join("*, ")}*, and ${[...RESERVED_ENV_NAMES].join(", ")}); most have a config key of their own`);
        }
        if (names.has(name)) {
            fail(`${label}.name`, name, "a name no other entry of extraEnv has");
        }
        names.add(name);
        let workloads: Workload[] | undefined;
        if (entry.workloads !== undefined) {
            const w = entry.workloads;
            if (!Array.isArray(w) || w.length === 0 || !w.every((x) => (WORKLOADS as readonly unknown[]).includes(x))) {
                fail(`${label}.workloads`, w, `a non-empty list of the pods to set it in, among ${WORKLOADS.join(", ")}; absent: every pod`);
            } else {
                workloads = [...new Set(w as Workload[])];
            }
        }
        const scope = workloads === undefined ? {} : { workloads };
        const fromSecret = entry.secretName !== undefined || entry.secretKey !== undefined;
        if (fromSecret) {
            if (entry.value !== undefined) {
                fail(`${label}.value`, entry.value, "absent when secretName and secretKey are set: one source per variable");
            }
            const secretName = entry.secretName;
            const secretKey = entry.secretKey;
            if (typeof secretName !== "string" || !(secretName.length <= 253 && DNS1123_SUBDOMAIN.test(secretName))) {
                fail(`${label}.secretName`, secretName, "the name of a Secret in the stack's namespace (DNS-1123 subdomain)");
            }
            if (typeof secretKey !== "string" || !/^[-._a-zA-Z0-9]{1,253}$/.test(secretKey)) {
                fail(`${label}.secretKey`, secretKey, "a key of that Secret: letters, digits, '-', '_' or '.'");
            }
            if (entry.optional !== undefined && typeof entry.optional !== "boolean") {
                fail(`${label}.optional`, entry.optional, "true (the pods start without the variable when the Secret or key is missing) or false");
            }
            out.push({ name, ...scope, secretName: String(secretName), secretKey: String(secretKey), optional: entry.optional === true });
            return;
        }
        if (entry.optional !== undefined) {
            fail(`${label}.optional`, entry.optional, "only with secretName and secretKey");
        }
        const value = entry.value;
        if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
            fail(`${label}.value`, value, "a string, or secretName and secretKey to read it from a Secret");
            return;
        }
        if (isCredentialName(name)) {
            fail(`${label}.value`, value,
                "read from a Secret (secretName and secretKey): a variable named like a credential never goes into a pod spec as plain text");
            return;
        }
        if (setAsSecret) {
            fail(`${label}.value`, value,
                "a plain value in a stack whose extraEnv was set with --secret: a pod spec would carry it in clear; put it in a Secret and use secretName and secretKey");
            return;
        }
        if (/(^|[^$])\$\(/.test(String(value))) {
            // Kubernetes expands $(NAME) with the container's earlier variables, the program's credentials among them.
            fail(`${label}.value`, value, "free of $(NAME) references, which would copy the program's variables (credentials among them); write $$( for a literal $(");
            return;
        }
        out.push({ name, ...scope, value: String(value) });
    });
    return out;
}

const TOLERATION_OPERATORS = ["Exists", "Equal"] as const;
const TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"] as const;

function parseTolerations(entries: unknown[], fail: Fail): Toleration[] {
    const out: Toleration[] = [];
    eachObject("tolerations", entries, "{ key, operator, value, effect }", ["key", "operator", "value", "effect", "tolerationSeconds"], fail, (entry, at) => {
        const operator = entry.operator ?? "Equal";
        if (!(TOLERATION_OPERATORS as readonly unknown[]).includes(operator)) {
            fail(`${at}.operator`, operator, `one of ${TOLERATION_OPERATORS.join(", ")}`);
        }
        const key = entry.key;
        if (key !== undefined && (typeof key !== "string" || !isQualifiedName(key))) {
            fail(`${at}.key`, key, "a taint key (a label key)");
        }
        if (key === undefined) {
            // Without a key, Exists tolerates every taint (control-plane and not-ready nodes included).
            fail(`${at}.key`, key, "a taint key: a toleration without one would let every pod onto any tainted node");
        }
        const value = entry.value === undefined ? undefined : String(entry.value);
        if (operator === "Exists" && value !== undefined && value !== "") {
            fail(`${at}.value`, value, "absent with operator Exists");
        }
        if (value !== undefined && !(value.length <= 63 && LABEL_VALUE.test(value))) {
            fail(`${at}.value`, value, "a taint value (a label value)");
        }
        const effect = entry.effect;
        if (effect !== undefined && !(TAINT_EFFECTS as readonly unknown[]).includes(effect)) {
            fail(`${at}.effect`, effect, `absent (every effect) or one of ${TAINT_EFFECTS.join(", ")}`);
        }
        const seconds = entry.tolerationSeconds;
        if (seconds !== undefined && (!Number.isInteger(seconds) || (seconds as number) < 0 || effect !== "NoExecute")) {
            fail(`${at}.tolerationSeconds`, seconds, "a whole number of seconds, at least 0, with effect NoExecute only");
        }
        out.push({
            ...(key === undefined ? {} : { key: String(key) }),
            operator: operator as Toleration["operator"],
            ...(value === undefined || value === "" ? {} : { value }),
            ...(effect === undefined ? {} : { effect: effect as Toleration["effect"] }),
            ...(seconds === undefined ? {} : { tolerationSeconds: seconds as number }),
        });
    });
    return out;
}

const WHEN_UNSATISFIABLE = ["DoNotSchedule", "ScheduleAnyway"] as const;

function parseTopologySpread(entries: unknown[], fail: Fail): TopologySpread[] {
    const out: TopologySpread[] = [];
    const keys = new Set<string>();
    eachObject("topologySpreadConstraints", entries, "{ maxSkew, topologyKey, whenUnsatisfiable }", ["maxSkew", "topologyKey", "whenUnsatisfiable", "minDomains"], fail, (entry, at) => {
        const maxSkew = entry.maxSkew ?? 1;
        if (!Number.isInteger(maxSkew) || (maxSkew as number) < 1) {
            fail(`${at}.maxSkew`, maxSkew, "a whole number, at least 1");
        }
        const topologyKey = entry.topologyKey;
        if (typeof topologyKey !== "string" || !isQualifiedName(topologyKey)) {
            fail(`${at}.topologyKey`, topologyKey, "a node label key, such as topology.kubernetes.io/zone or kubernetes.io/hostname");
        } else if (keys.has(topologyKey)) {
            // The API server refuses two constraints on one key with the same whenUnsatisfiable; one per key is clearer still.
            fail(`${at}.topologyKey`, topologyKey, "a key no other constraint has");
        } else {
            keys.add(topologyKey);
        }
        const when = entry.whenUnsatisfiable ?? "ScheduleAnyway";
        if (!(WHEN_UNSATISFIABLE as readonly unknown[]).includes(when)) {
            fail(`${at}.whenUnsatisfiable`, when, `one of ${WHEN_UNSATISFIABLE.join(", ")}`);
        }
        const minDomains = entry.minDomains;
        if (minDomains !== undefined && (!Number.isInteger(minDomains) || (minDomains as number) < 1 || when !== "DoNotSchedule")) {
            fail(`${at}.minDomains`, minDomains, "a whole number, at least 1, with whenUnsatisfiable DoNotSchedule only");
        }
        out.push({
            maxSkew: maxSkew as number, topologyKey: String(topologyKey), whenUnsatisfiable: when as TopologySpread["whenUnsatisfiable"],
            ...(minDomains === undefined ? {} : { minDomains: minDomains as number }),
        });
    });
    return out;
}

/** The program's own images, which `imageMirrors` redirects; an image a user names is left as given. */
export function programImages(): readonly string[] {
    return [MLFLOW_IMAGE, POSTGRES_IMAGE];
}

/** The registry host of a fully qualified image reference (the program's are). */
export function registryOf(image: string): string {
    return image.slice(0, image.indexOf("/"));
}

/**
 * An image pulled from its registry's mirror: the registry host replaced, the repository path and
 * the pinned tag kept (`ghcr.io/mlflow/mlflow:v3.17.2-full` with `ghcr.io` mirrored at
 * `registry.example.com/ghcr` is `registry.example.com/ghcr/mlflow/mlflow:v3.17.2-full`), as
 * pull-through caches (ECR's rules, Harbor's proxy projects) serve one upstream under a prefix.
 */
export function mirroredImage(image: string, mirrors: Readonly<Record<string, string>>): string {
    const mirror = mirrors[registryOf(image)];
    if (mirror === undefined || !programImages().includes(image)) {
        return image;
    }
    return `${mirror}/${image.slice(image.indexOf("/") + 1)}`;
}

/** Where each workload kind keeps its pod template. */
const POD_TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
    "kubernetes:apps/v1:Deployment": ["spec", "template"],
    "kubernetes:apps/v1:StatefulSet": ["spec", "template"],
    "kubernetes:apps/v1:DaemonSet": ["spec", "template"],
    "kubernetes:batch/v1:Job": ["spec", "template"],
    "kubernetes:batch/v1:CronJob": ["spec", "jobTemplate", "spec", "template"],
};

/** The labels that select one component's pods (kube.ts `selectorLabels`). */
const SELECTOR_KEYS = ["app.kubernetes.io/name", "app.kubernetes.io/instance"];

/** Whether the overrides add nothing at all. */
export function isEmpty(o: PodOverrides): boolean {
    return o.env.length === 0 && o.imagePullSecrets.length === 0 && Object.keys(o.imageMirrors).length === 0
        && Object.keys(o.nodeSelector).length === 0 && o.tolerations.length === 0 && o.topologySpreadConstraints.length === 0
        && Object.keys(o.annotations).length === 0 && Object.keys(o.labels).length === 0;
}

/**
 * A workload's inputs with the overrides applied to its pod template; other resources unchanged.
 * What the program sets wins over nothing: the validation keeps the two apart (reserved names and keys).
 */
export function withPodOverrides(type: string, props: Record<string, unknown>, o: PodOverrides): Record<string, unknown> {
    const path = POD_TEMPLATE_PATHS[type];
    if (path === undefined || isEmpty(o)) {
        return props;
    }
    const deployment = type === "kubernetes:apps/v1:Deployment";
    return at(props, path, (template: any) => withTemplateOverrides(template, o, deployment));
}

function withTemplateOverrides(template: any, o: PodOverrides, deployment: boolean): unknown {
    // Which kind of pod this is, for extraEnv's `workloads`; the components set the label as a plain value.
    const workload: unknown = template.metadata?.labels?.["app.kubernetes.io/name"];
    return ({
        ...template,
        metadata: mapInput(template.metadata ?? {}, (m: any) => ({
            ...m,
            labels: mapInput(m.labels ?? {}, (l: Record<string, unknown>) => ({ ...o.labels, ...l })),
            annotations: mapInput(m.annotations ?? {}, (a: Record<string, unknown>) => ({ ...o.annotations, ...a })),
        })),
        spec: mapInput(template.spec, (spec: any) => ({
            ...spec,
            ...(Object.keys(o.nodeSelector).length === 0 ? {} : { nodeSelector: mapInput(spec.nodeSelector ?? {}, (n: object) => ({ ...o.nodeSelector, ...n })) }),
            ...(o.tolerations.length === 0 ? {} : { tolerations: append(spec.tolerations, o.tolerations) }),
            ...(o.topologySpreadConstraints.length === 0 ? {} : {
                topologySpreadConstraints: append(spec.topologySpreadConstraints, mapInput(template.metadata?.labels ?? {}, (l: Record<string, unknown>) =>
                    o.topologySpreadConstraints.map((c) => ({
                        ...c,
                        labelSelector: { matchLabels: Object.fromEntries(SELECTOR_KEYS.filter((k) => l[k] !== undefined).map((k) => [k, l[k]])) },
                        // A rollout's new pods count against themselves only, not against the old ReplicaSet's.
                        ...(deployment ? { matchLabelKeys: ["pod-template-hash"] } : {}),
                    })))),
            }),
            ...(o.imagePullSecrets.length === 0 ? {} : { imagePullSecrets: append(spec.imagePullSecrets, o.imagePullSecrets.map((name) => ({ name }))) }),
            containers: mapInput(spec.containers, (cs: unknown[]) => cs.map((c) => container(c, o, workload))),
            ...(spec.initContainers === undefined ? {} : { initContainers: mapInput(spec.initContainers, (cs: unknown[]) => cs.map((c) => container(c, o, workload))) }),
        })),
    });
}

function container(c: any, o: PodOverrides, workload: unknown): unknown {
    const env = o.env.filter((e) => e.workloads === undefined || (e.workloads as readonly unknown[]).includes(workload));
    return mapInput(c, (c: any) => ({
        ...c,
        ...(typeof c.image === "string" ? { image: mirroredImage(c.image, o.imageMirrors) } : {}),
        ...(env.length === 0 ? {} : {
            env: append(c.env, env.map((e) => "value" in e
                ? { name: e.name, value: e.value }
                : { name: e.name, valueFrom: { secretKeyRef: { name: e.secretName, key: e.secretKey, ...(e.optional ? { optional: true } : {}) } } })),
        }),
    }));
}

/** Applies `f` to a value that may be an Output or a promise (kept one), or a plain value. */
function mapInput<U>(value: unknown, f: (v: any) => U): any {
    if (pulumi.Output.isInstance(value) || value instanceof Promise) {
        return (pulumi.output(value) as pulumi.Output<unknown>).apply(f);
    }
    return f(value);
}

/** A list input with more entries after it. */
function append(list: unknown, more: unknown): unknown {
    return mapInput(list ?? [], (l: unknown[]) => mapInput(more, (m: unknown[]) => [...l, ...m]));
}

function at(obj: any, path: readonly string[], f: (v: any) => unknown): any {
    if (path.length === 0) {
        return mapInput(obj, f);
    }
    const [head, ...rest] = path;
    return mapInput(obj, (o: any) => ({ ...o, [head!]: at(o[head!], rest, f) }));
}

/** The resource transformation that applies the overrides to every workload under a component. */
export function podOverridesTransformation(o: PodOverrides): pulumi.ResourceTransformation {
    return (args) => {
        const props = withPodOverrides(args.type, args.props, o);
        return props === args.props ? undefined : { props, opts: args.opts };
    };
}
