/**
 * What the benchmark reads from /proc: a process tree (a service's pid and every descendant), its
 * CPU time, its proportional set size (PSS, from smaps_rollup: shared pages divided among the
 * processes sharing them, so the sum over a tree is what a container's memory accounting sees,
 * unlike a sum of RSS), the machine's load average, and PostgreSQL's backends per database.
 */
import * as fs from "fs";

/** Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`, 100 on Linux x86-64 and arm64). */
const CLK_TCK = 100;

interface Stat {
    readonly pid: number;
    readonly ppid: number;
    readonly comm: string;
    /** utime + stime + cutime + cstime, in ticks: the process and its reaped children. */
    readonly ticks: number;
}

function readStat(pid: number): Stat | undefined {
    let text: string;
    try {
        text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
        return undefined;
    }
    // comm may hold spaces and parentheses: the fields after it start after the last ')'.
    const close = text.lastIndexOf(")");
    const comm = text.slice(text.indexOf("(") + 1, close);
    const f = text.slice(close + 2).split(" ");
    // f[0] is field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
    const n = (i: number): number => Number(f[i - 3]);
    return { pid, ppid: n(4), comm, ticks: n(14) + n(15) + n(16) + n(17) };
}

function allStats(): Stat[] {
    const out: Stat[] = [];
    for (const name of fs.readdirSync("/proc")) {
        if (/^\d+$/.test(name)) {
            const s = readStat(Number(name));
            if (s !== undefined) {
                out.push(s);
            }
        }
    }
    return out;
}

/** `root` and all its descendants. */
export function processTree(root: number): Stat[] {
    const stats = allStats();
    const children = new Map<number, Stat[]>();
    for (const s of stats) {
        const list = children.get(s.ppid) ?? [];
        list.push(s);
        children.set(s.ppid, list);
    }
    const self = stats.find((s) => s.pid === root);
    if (self === undefined) {
        return [];
    }
    const out: Stat[] = [];
    const queue = [self];
    while (queue.length > 0) {
        const s = queue.shift()!;
        out.push(s);
        queue.push(...(children.get(s.pid) ?? []));
    }
    return out;
}

/** CPU seconds used so far by a process tree (live processes and the children they reaped). */
export function treeCpuSeconds(root: number): number {
    return processTree(root).reduce((sum, s) => sum + s.ticks, 0) / CLK_TCK;
}

function pssKiB(pid: number): number {
    try {
        const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
        return m ? Number(m[1]) : 0;
    } catch {
        return 0;
    }
}

function cmdline(pid: number): string {
    try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a !== "").join(" ");
    } catch {
        return "";
    }
}

/** One memory snapshot of a tree. */
export interface TreeMemory {
    readonly pssMiB: number;
    readonly processes: number;
    /** Per process: pid, PSS and a short command line, largest first. */
    readonly detail: Array<{ pid: number; pssMiB: number; cmd: string }>;
}

/** Short, recognisable name of an MLflow-tree process. */
function shortCmd(cmd: string): string {
    const rules: Array<[RegExp, string]> = [
        [/^\/usr\/bin\/bwrap/, "bwrap"],
        [/huey_consumer mlflow\.server\.jobs\._periodic_tasks_consumer/, "huey consumer (periodic tasks)"],
        [/huey_consumer mlflow\.server\.jobs\._huey_consumer/, "huey consumer (job queue)"],
        [/mlflow\.server\.jobs\._job_runner/, "job runner"],
        [/multiprocessing\.resource_tracker/, "multiprocessing resource tracker"],
        [/multiprocessing\.spawn|--multiprocessing-fork/, "uvicorn worker"],
        [/-m uvicorn/, "uvicorn supervisor"],
        [/bin\/uvicorn .*mlflow\.pyfunc\.scoring_server/, "uvicorn (MLflow scoring server)"],
        [/bin\/mlflow server|mlflow server/, "mlflow server (CLI parent)"],
    ];
    for (const [re, name] of rules) {
        if (re.test(cmd)) {
            return name;
        }
    }
    return cmd.slice(0, 80);
}

export function treeMemory(root: number): TreeMemory {
    const detail = processTree(root).map((s) => {
        const cmd = cmdline(s.pid);
        return { pid: s.pid, pssMiB: pssKiB(s.pid) / 1024, cmd: shortCmd(cmd || s.comm) };
    }).sort((a, b) => b.pssMiB - a.pssMiB);
    return { pssMiB: detail.reduce((a, d) => a + d.pssMiB, 0), processes: detail.length, detail };
}

/** Busy CPU seconds of the whole machine so far (all CPUs: user, nice, system, irq, softirq, steal). */
export function machineBusySeconds(): number {
    const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!;
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    return (user! + nice! + system! + irq! + softirq! + steal!) / CLK_TCK;
}

/**
 * CPU used on the machine during a window by anything but this process and its descendants
 * (every service the benchmark starts is one): other work on a shared machine disturbs the
 * figures, and this says by how much.
 */
export class ForeignCpu {
    private readonly machine0 = machineBusySeconds();
    private readonly own0 = treeCpuSeconds(process.pid);
    private readonly t0 = performance.now();

    /** Cores used by others on average over the window so far. */
    coresBusy(): number {
        const own = treeCpuSeconds(process.pid) - this.own0;
        const seconds = (performance.now() - this.t0) / 1000;
        return Math.max(0, (machineBusySeconds() - this.machine0 - own) / seconds);
    }
}

/** The 1-, 5- and 15-minute load averages. */
export function loadAverage(): [number, number, number] {
    const [a, b, c] = fs.readFileSync("/proc/loadavg", "utf8").split(" ").map(Number);
    return [a!, b!, c!];
}

/**
 * PostgreSQL backends per database, from the postmaster's children's titles
 * (`postgres: <user> <database> <client> <state>`): no SQL connection of our own is needed.
 */
export function postgresBackends(postmasterTreeRoot: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of processTree(postmasterTreeRoot)) {
        const m = /^postgres: (\S+) (\S+) (\d+\.\d+\.\d+\.\d+\(\d+\)|\[local\])/.exec(cmdline(s.pid));
        if (m) {
            out[m[2]!] = (out[m[2]!] ?? 0) + 1;
        }
    }
    return out;
}

/**
 * Established TCP connections accepted on `port`, per process of a tree that holds them (which
 * uvicorn worker got which client: keep-alive connections stay with the worker that accepted them).
 */
export function connectionsPerProcess(root: number, port: number): Record<string, number> {
    const inodes = new Set<string>();
    for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
        let text = "";
        try {
            text = fs.readFileSync(file, "utf8");
        } catch {
            continue;
        }
        for (const line of text.split("\n").slice(1)) {
            const f = line.trim().split(/\s+/);
            // local_address is "HEXIP:HEXPORT"; state 01 is ESTABLISHED; the inode is field 10.
            if (f.length > 9 && f[3] === "01" && parseInt(f[1]!.split(":")[1]!, 16) === port) {
                inodes.add(f[9]!);
            }
        }
    }
    const out: Record<string, number> = {};
    for (const s of processTree(root)) {
        let n = 0;
        try {
            for (const fd of fs.readdirSync(`/proc/${s.pid}/fd`)) {
                try {
                    const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${s.pid}/fd/${fd}`));
                    if (m && inodes.has(m[1]!)) {
                        n += 1;
                    }
                } catch {
                    // fd closed meanwhile
                }
            }
        } catch {
            continue;
        }
        if (n > 0) {
            out[String(s.pid)] = n;
        }
    }
    return out;
}

/** Samples a tree's PSS (and PostgreSQL's backends) every `intervalMs` until stopped; keeps the peaks. */
export class PeakSampler {
    private timer: NodeJS.Timeout | undefined;
    peakPssMiB = 0;
    peakProcesses = 0;
    peakBackends: Record<string, number> = {};
    samples = 0;
    /** CPU seconds this sampler spent reading /proc (it runs in the benchmark's own process). */
    cpuSeconds = 0;

    constructor(private readonly root: number, private readonly postmaster: number | undefined, private readonly intervalMs = 1000) {}

    start(): void {
        const tick = (): void => {
            const u0 = process.cpuUsage();
            const m = treeMemory(this.root);
            this.samples += 1;
            this.peakPssMiB = Math.max(this.peakPssMiB, m.pssMiB);
            this.peakProcesses = Math.max(this.peakProcesses, m.processes);
            if (this.postmaster !== undefined) {
                for (const [db, n] of Object.entries(postgresBackends(this.postmaster))) {
                    this.peakBackends[db] = Math.max(this.peakBackends[db] ?? 0, n);
                }
            }
            const u = process.cpuUsage(u0);
            this.cpuSeconds += (u.user + u.system) / 1e6;
        };
        tick();
        this.timer = setInterval(tick, this.intervalMs);
    }

    stop(): void {
        if (this.timer !== undefined) {
            clearInterval(this.timer);
        }
    }
}
