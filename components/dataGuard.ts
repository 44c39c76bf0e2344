/**
 * The settings that decide where the stack's data lives, and a guard that refuses to change them.
 *
 * Some changes cannot be carried out without losing data: a new StorageClass or namespace means
 * a new, empty volume (the provider replaces the claim, delete first); a smaller volume cannot
 * exist; a new PostgreSQL major version cannot open the old data directory; a new bucket,
 * region or prefix leaves every artifact logged so far behind. Pulumi would plan the first
 * kinds as replacements and carry them out. The guard, a resource everything that holds data
 * depends on, compares the previous settings with the new ones in its `check` step, which the
 * engine runs in `pulumi preview` and `pulumi up` before any dependent resource is touched, and
 * fails with the key, the change and the way to make it safely.
 */
import * as pulumi from "@pulumi/pulumi";
import { PROJECT, parseQuantity } from "./config";

/** What the guard remembers between updates. Field names are config keys, except `postgresMajor`. */
export interface DataIdentity {
    /** Where the metadata lives: the in-cluster PostgreSQL's volume, or an external database. */
    readonly databaseMode: string;
    readonly kubeContext: string;
    readonly namespace: string;
    readonly postgresStorageClass: string;
    readonly postgresStorageSize: string;
    /** Major version of PostgreSQL (components/versions.ts), which its data directory is tied to. */
    readonly postgresMajor: string;
    readonly awsRegion: string;
    readonly awsEndpoint: string;
    readonly bucketPrefix: string;
    readonly artifactPrefix: string;
    readonly backupPrefix: string;
}

/** The way to move the database to a new volume, cluster or namespace without losing it. */
const DATABASE_MOVE = "the database moves only through a backup: take one (`kubectl create job --from=cronjob/<backup CronJob>`, "
    + "see `pulumi stack output backupStatusCommand`), bring up a new stack with the new setting, restore into it "
    + "(`npm run restore -- --stack <new stack>`), then destroy the old stack. See README, \"Backups and restore\"";
/** The way to move artifacts to a new bucket, region or prefix. */
const ARTIFACTS_MOVE = "artifacts move with the data: bring up a new stack with the new setting, copy the objects "
    + "(`aws s3 sync s3://<old bucket>/<old prefix> s3://<new bucket>/<new prefix>`), restore the database into it, then destroy "
    + "the old stack. See README, \"Upgrading\"";

/** Why each field may not change, and how to get there instead. */
const RULES: Readonly<Record<keyof DataIdentity, { why: string; how: string }>> = {
    databaseMode: {
        why: "the metadata lives in the current database: moving away from the in-cluster one deletes its volume, moving to it starts empty",
        how: "take a backup, bring up a new stack with the new mode, restore into it (`npm run restore -- --stack <new stack>`), then destroy the old stack. See README, \"External PostgreSQL\"",
    },
    kubeContext: { why: "the database volume lives in the cluster of the current context", how: DATABASE_MOVE },
    namespace: { why: "the namespace holds the database volume; a new namespace is a new, empty volume", how: DATABASE_MOVE },
    postgresStorageClass: { why: "a volume's StorageClass is fixed; a new class means a new, empty volume", how: DATABASE_MOVE },
    postgresStorageSize: { why: "a volume can grow in place but never shrink", how: DATABASE_MOVE },
    postgresMajor: {
        why: "PostgreSQL opens only data directories of its own major version (components/versions.ts POSTGRES_VERSION)",
        how: DATABASE_MOVE,
    },
    awsRegion: { why: "the bucket holding every artifact and backup lives in this region", how: ARTIFACTS_MOVE },
    awsEndpoint: { why: "the bucket holding every artifact and backup lives behind this endpoint", how: ARTIFACTS_MOVE },
    bucketPrefix: { why: "a new bucket name prefix replaces the bucket holding every artifact and backup", how: ARTIFACTS_MOVE },
    artifactPrefix: { why: "every run logged so far keeps its artifacts under the current prefix", how: ARTIFACTS_MOVE },
    backupPrefix: { why: "the backups taken so far stay under the current prefix, out of reach of restores", how: "copy them to the new prefix first, then change it" },
};

/**
 * What a stack recorded before a field existed: every stack ran the in-cluster PostgreSQL until
 * `databaseMode` came, so a guard state without it means `inCluster`.
 */
const BEFORE_THE_FIELD: Partial<Record<keyof DataIdentity, string>> = { databaseMode: "inCluster" };

/** Fields that may change in one direction only: the same or a larger size, in any unit. */
function grows(field: keyof DataIdentity, before: string, after: string): boolean {
    return field === "postgresStorageSize" && parseQuantity(after) >= parseQuantity(before);
}

/**
 * Why the change from `before` (the settings of the last update; empty on the first) to `after`
 * would lose or strand data, one message per field, naming the config key. Empty when safe.
 */
export function dataIdentityProblems(before: object, after: DataIdentity): string[] {
    const problems: string[] = [];
    const recorded = before as Record<string, unknown>;
    const first = !Object.keys(RULES).some((field) => field in recorded);
    for (const field of Object.keys(RULES) as Array<keyof DataIdentity>) {
        const old = recorded[field] ?? (first ? undefined : BEFORE_THE_FIELD[field]);
        if (typeof old !== "string" || old === after[field] || grows(field, old, after[field])) {
            continue;
        }
        const key = field === "postgresMajor" ? "PostgreSQL major version" : `${PROJECT}:${field}`;
        const { why, how } = RULES[field];
        problems.push(`${key} cannot change from ${JSON.stringify(old)} to ${JSON.stringify(after[field])}: ${why}. `
            + `Set it back to ${JSON.stringify(old)}; to make the change, ${how}.`);
        if (field === "databaseMode") {
            // The cluster-side fields follow the mode (empty for an external database): one message says it all.
            break;
        }
    }
    return problems;
}

/**
 * The guard's provider. `check` refuses an unsafe change; everything else only records the
 * settings. It creates nothing outside Pulumi's state, so deleting it is a no-op.
 */
export const dataGuardProvider: pulumi.dynamic.ResourceProvider = {
    async check(olds: any, news: any) {
        const failures = dataIdentityProblems(olds ?? {}, news).map((reason) => ({ property: "identity", reason }));
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        const changed = Object.keys(news).filter((k) => k !== "__provider" && olds[k] !== news[k]);
        return { changes: changed.length > 0, replaces: [], deleteBeforeReplace: false };
    },
    async create(inputs: any) {
        return { id: "data-identity", outs: inputs };
    },
    async update(_id: string, _olds: any, news: any) {
        return { outs: news };
    },
};

/**
 * Records where the stack's data lives and refuses, at preview and update time, a change that
 * would replace or strand it (see {@link dataIdentityProblems}). Make every resource that holds
 * data depend on it.
 */
export class DataGuard extends pulumi.dynamic.Resource {
    constructor(name: string, identity: DataIdentity, opts?: pulumi.CustomResourceOptions) {
        super(dataGuardProvider, name, { ...identity }, opts, undefined, "DataGuard");
    }
}
