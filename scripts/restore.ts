/**
 * Restores a database backup into a stack's PostgreSQL:
 *
 *   npm run restore -- --stack <stack> [--backup <id>|latest] [--force]
 *   npm run restore -- --context <kube context> --namespace <namespace> [--backup <id>] [--force]
 *
 * 1. reads where the stack runs (`pulumi stack output`, or the two flags);
 * 2. scales the tracking server to zero and waits for its pods to go, so nothing writes during the
 *    restore (an autoscaler does not act on a Deployment at zero);
 * 3. creates a Job from the suspended restore CronJob the program deploys, with the backup to
 *    restore (newest complete one by default) and whether to replace a database that is not empty;
 * 4. follows it to the end and prints its logs;
 * 5. scales the server back to its replicas. A Job that refused to run (a database not empty, no
 *    such backup) changed nothing, so the server comes back then too; a restore that failed part
 *    way leaves the server at zero, for an operator to look at first.
 *
 * Only kubectl is needed beyond this script (and the Pulumi CLI with --stack).
 */
import { spawn } from "child_process";

/** Names the program gives the objects the restore works with (components/*.ts). */
export const OBJECTS = Object.freeze({
    deployment: "mlflow-tracking-server",
    restoreCronJob: "mlflow-db-backup-restore",
});
/** Exit codes of the restore containers (components/backup-scripts) that mean "refused, nothing changed". */
export const REFUSED_EXIT_CODES: readonly number[] = [3, 4];

/** What to restore, and where. */
export interface RestoreOptions {
    readonly context: string;
    readonly namespace: string;
    /** A backup id (UTC timestamp, as listed under the backup prefix) or `latest`. */
    readonly backup: string;
    /** Replace the contents of databases that are not empty. */
    readonly force: boolean;
}

/** A kubectl invocation's outcome. */
export interface CommandResult {
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
}

/** Runs kubectl (or a stand-in in tests) with arguments and optional standard input. */
export type Kubectl = (args: readonly string[], input?: string) => Promise<CommandResult>;

/** Parses the command line; throws with the usage on anything it does not understand. */
export function parseArgs(argv: readonly string[]): { stack?: string; context?: string; namespace?: string; backup: string; force: boolean } {
    const usage = "usage: npm run restore -- (--stack <stack> | --context <context> --namespace <namespace>) [--backup <id>|latest] [--force]";
    const out: { stack?: string; context?: string; namespace?: string; backup: string; force: boolean } = { backup: "latest", force: false };
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i]!;
        const value = (): string => {
            const v = argv[++i];
            if (v === undefined || v.startsWith("--")) {
                throw new Error(`${flag} needs a value\n${usage}`);
            }
            return v;
        };
        switch (flag) {
            case "--stack": out.stack = value(); break;
            case "--context": out.context = value(); break;
            case "--namespace": out.namespace = value(); break;
            case "--backup": out.backup = value(); break;
            case "--force": out.force = true; break;
            default: throw new Error(`unknown argument ${flag}\n${usage}`);
        }
    }
    if ((out.stack === undefined) === (out.context === undefined || out.namespace === undefined)) {
        throw new Error(`name either --stack, or both --context and --namespace\n${usage}`);
    }
    if (out.backup !== "latest" && !/^\d{8}T\d{6}Z$/.test(out.backup)) {
        throw new Error(`--backup ${out.backup}: a backup id is a UTC timestamp such as 20260101T023000Z, or latest\n${usage}`);
    }
    return out;
}

/**
 * The Job a restore runs: the restore CronJob's job template (exactly what the program deployed),
 * with the backup and the force flag set in every container that reads them, as
 * `kubectl create job --from=cronjob/...` would make it plus those two values.
 */
export function restoreJob(cronJob: any, options: { name: string; backup: string; force: boolean }): any {
    const spec = structuredClone(cronJob.spec.jobTemplate.spec);
    const values: Record<string, string> = { BACKUP_ID: options.backup, RESTORE_FORCE: String(options.force) };
    let set = 0;
    for (const c of [...(spec.template.spec.initContainers ?? []), ...spec.template.spec.containers]) {
        for (const e of c.env ?? []) {
            if (e.name in values) {
                e.value = values[e.name];
                set++;
            }
        }
    }
    if (set < Object.keys(values).length) {
        throw new Error(`CronJob ${cronJob.metadata.name} is not a restore template: it reads neither BACKUP_ID nor RESTORE_FORCE`);
    }
    return {
        apiVersion: "batch/v1",
        kind: "Job",
        metadata: {
            name: options.name,
            namespace: cronJob.metadata.namespace,
            labels: { ...(cronJob.spec.jobTemplate.metadata?.labels ?? {}) },
            annotations: { "cronjob.kubernetes.io/instantiate": "manual", "mlflow-k8s/backup": options.backup },
            ownerReferences: [{ apiVersion: "batch/v1", kind: "CronJob", name: cronJob.metadata.name, uid: cronJob.metadata.uid, controller: false }],
        },
        spec,
    };
}

/** A label selector (`k=v,k2=v2`) from matchLabels. */
function selector(matchLabels: Record<string, string>): string {
    return Object.entries(matchLabels).map(([k, v]) => `${k}=${v}`).join(",");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a restore did, for its caller and its tests. */
export interface RestoreOutcome {
    readonly job: string;
    readonly succeeded: boolean;
    /** The server runs again with its replicas. */
    readonly serverRestored: boolean;
    readonly logs: string;
}

/**
 * Runs a restore with kubectl (see the file comment). `log` receives progress lines; `pollMs`
 * is how often the Job and the pods are checked.
 */
export async function restore(kubectl: Kubectl, options: RestoreOptions, log: (line: string) => void = console.log, pollMs = 2000): Promise<RestoreOutcome> {
    const k = async (args: readonly string[], input?: string): Promise<string> => {
        const result = await kubectl(["--context", options.context, "-n", options.namespace, ...args], input);
        if (result.code !== 0) {
            throw new Error(`kubectl ${args.join(" ")} failed: ${result.stderr.trim()}`);
        }
        return result.stdout;
    };
    const cronJob = JSON.parse(await k(["get", "cronjob", OBJECTS.restoreCronJob, "-o", "json"]));
    const deployment = JSON.parse(await k(["get", "deployment", OBJECTS.deployment, "-o", "json"]));
    const replicas: number = deployment.spec.replicas ?? 1;
    const pods = selector(deployment.spec.selector.matchLabels);

    log(`scaling ${OBJECTS.deployment} from ${replicas} to 0 replicas`);
    await k(["scale", "deployment", OBJECTS.deployment, "--replicas=0"]);
    await k(["wait", "--for=delete", "pod", "-l", pods, "--timeout=300s"]);

    const name = `${OBJECTS.restoreCronJob}-${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").toLowerCase()}`;
    const job = restoreJob(cronJob, { name, backup: options.backup, force: options.force });
    log(`restoring backup ${options.backup}${options.force ? " (replacing databases that are not empty)" : ""} with Job ${name}`);
    await k(["create", "-f", "-"], JSON.stringify(job));

    const deadline = Date.now() + ((job.spec.activeDeadlineSeconds ?? 3600) + 120) * 1000;
    let status: any = {};
    while (Date.now() < deadline) {
        status = JSON.parse(await k(["get", "job", name, "-o", "json"])).status ?? {};
        if ((status.succeeded ?? 0) > 0 || (status.failed ?? 0) > 0) {
            break;
        }
        await sleep(pollMs);
    }
    const logs = await k(["logs", `job/${name}`, "--all-containers", "--prefix"]).catch((e: Error) => `(no logs: ${e.message})`);
    log(logs);
    const succeeded = (status.succeeded ?? 0) > 0;

    let refused = false;
    if (!succeeded) {
        const podList = JSON.parse(await k(["get", "pods", "-l", `job-name=${name}`, "-o", "json"]));
        const codes: number[] = podList.items.flatMap((p: any) => [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])])
            .map((s: any) => s.state?.terminated?.exitCode).filter((c: unknown) => typeof c === "number" && c !== 0);
        refused = codes.length > 0 && codes.every((c) => REFUSED_EXIT_CODES.includes(c));
    }
    if (succeeded || refused) {
        log(`${succeeded ? "restore complete" : "restore refused; nothing was changed"}: scaling ${OBJECTS.deployment} back to ${replicas}`);
        await k(["scale", "deployment", OBJECTS.deployment, `--replicas=${replicas}`]);
        await k(["rollout", "status", "deployment", OBJECTS.deployment, "--timeout=600s"]);
        return { job: name, succeeded, serverRestored: true, logs };
    }
    log(`restore FAILED part way: ${OBJECTS.deployment} stays at 0 replicas. Look at the logs above, fix the cause and run the restore again ` +
        `(with --force, since a database may now hold part of the backup), or scale back with ` +
        `kubectl --context ${options.context} -n ${options.namespace} scale deployment ${OBJECTS.deployment} --replicas=${replicas}`);
    return { job: name, succeeded, serverRestored: false, logs };
}

/** Runs a command, capturing its output. */
function run(command: string, args: readonly string[], input?: string): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
        const child = spawn(command, [...args], { stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => { stdout += d; });
        child.stderr.on("data", (d) => { stderr += d; });
        child.on("error", reject);
        child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
        child.stdin.end(input ?? "");
    });
}

async function main(): Promise<void> {
    const args = parseArgs(process.argv.slice(2));
    let context = args.context;
    let namespace = args.namespace;
    if (args.stack !== undefined) {
        const out = await run("pulumi", ["stack", "output", "--json", "--stack", args.stack]);
        if (out.code !== 0) {
            throw new Error(`pulumi stack output --stack ${args.stack} failed: ${out.stderr.trim()}`);
        }
        const outputs = JSON.parse(out.stdout);
        context = outputs.kubeContext;
        namespace = outputs.namespaceName;
    }
    const outcome = await restore((a, input) => run("kubectl", a, input), {
        context: context!, namespace: namespace!, backup: args.backup, force: args.force,
    });
    process.exitCode = outcome.succeeded ? 0 : outcome.serverRestored ? 3 : 1;
}

if (require.main === module) {
    main().catch((e: Error) => {
        console.error(e.message);
        process.exitCode = 2;
    });
}
