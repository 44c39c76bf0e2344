/**
 * Child processes of the contract tests: free loopback ports, long-running services in their own
 * process groups with their output in log files, commands run to completion, and a cleanup that
 * stops whatever is still running when the test process ends, however it ends.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";

/** A free TCP port on 127.0.0.1 (the kernel picks it; the socket is closed before use). */
export async function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.unref();
        server.on("error", reject);
        server.listen(0, "127.0.0.1", () => {
            const address = server.address();
            server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
        });
    });
}

/** A service started by {@link startService}. */
export interface Service {
    readonly name: string;
    readonly child: ChildProcess;
    readonly logFile: string;
    /** Resolves with the exit code (or the signal's name) when the process ends. */
    readonly exited: Promise<number | string>;
    /** Whether the process has ended. */
    hasExited(): boolean;
}

const live = new Set<Service>();
let pidFile: string | undefined;

/** Where the pids of running services are listed, so the calling shell script can clean up too. */
export function setPidFile(file: string): void {
    pidFile = file;
    writePids();
}

function writePids(): void {
    if (pidFile !== undefined) {
        fs.writeFileSync(pidFile, [...live].map((s) => `${s.child.pid}\n`).join(""));
    }
}

/** Starts a long-running process in its own process group, stdout and stderr appended to `logFile`. */
export function startService(name: string, command: string, args: readonly string[], options: {
    env: NodeJS.ProcessEnv; cwd?: string; logFile: string;
}): Service {
    const log = fs.openSync(options.logFile, "a");
    const child = spawn(command, [...args], {
        env: options.env, cwd: options.cwd, detached: true, stdio: ["ignore", log, log],
    });
    fs.closeSync(log);
    let done = false;
    const exited = new Promise<number | string>((resolve) => {
        child.on("exit", (code, signal) => { done = true; resolve(code ?? signal ?? "unknown"); });
        child.on("error", (err) => { done = true; fs.appendFileSync(options.logFile, `\nspawn error: ${err.message}\n`); resolve("spawn-error"); });
    });
    const service: Service = { name, child, logFile: options.logFile, exited, hasExited: () => done };
    live.add(service);
    writePids();
    void exited.then(() => { live.delete(service); writePids(); });
    return service;
}

/** Stops a service's whole process group: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopService(service: Service, graceMs = 15000): Promise<number | string> {
    if (!service.hasExited() && service.child.pid !== undefined) {
        signalGroup(service.child.pid, "SIGTERM");
        const timer = setTimeout(() => signalGroup(service.child.pid!, "SIGKILL"), graceMs);
        await service.exited;
        clearTimeout(timer);
    }
    // Workers that outlived their parent go with the group.
    if (service.child.pid !== undefined) {
        signalGroup(service.child.pid, "SIGKILL");
    }
    return service.exited;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
    try {
        process.kill(-pid, signal);
    } catch {
        // already gone
    }
}

/** Stops every service still running. */
export async function stopAll(): Promise<void> {
    await Promise.all([...live].map((s) => stopService(s, 5000)));
}

// Last resort when the test process is interrupted or crashes: no orphaned services.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
        for (const s of live) {
            if (s.child.pid !== undefined) {
                signalGroup(s.child.pid, "SIGKILL");
            }
        }
        process.exit(130);
    });
}
process.once("exit", () => {
    for (const s of live) {
        if (s.child.pid !== undefined) {
            signalGroup(s.child.pid, "SIGKILL");
        }
    }
});

/** The result of {@link runToCompletion}. */
export interface Completed {
    readonly code: number | string;
    readonly stdout: string;
    readonly stderr: string;
}

/** Runs a command to completion with `input` on stdin; output captured (and appended to `logFile`). */
export async function runToCompletion(command: string, args: readonly string[], options: {
    env: NodeJS.ProcessEnv; cwd?: string; input?: string; logFile?: string; timeoutMs?: number;
}): Promise<Completed> {
    return new Promise((resolve) => {
        const child = spawn(command, [...args], { env: options.env, cwd: options.cwd, detached: true, stdio: ["pipe", "pipe", "pipe"] });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout.on("data", (b: Buffer) => out.push(b));
        child.stderr.on("data", (b: Buffer) => err.push(b));
        const timer = options.timeoutMs === undefined ? undefined
            : setTimeout(() => child.pid !== undefined && signalGroup(child.pid, "SIGKILL"), options.timeoutMs);
        const finish = (code: number | string): void => {
            if (timer !== undefined) {
                clearTimeout(timer);
            }
            const stdout = Buffer.concat(out).toString("utf8");
            const stderr = Buffer.concat(err).toString("utf8");
            if (options.logFile !== undefined) {
                fs.appendFileSync(options.logFile, `$ ${command} ${args.join(" ")}\n${stdout}${stderr}[exit ${code}]\n`);
            }
            resolve({ code, stdout, stderr });
        };
        child.on("error", (e) => { err.push(Buffer.from(`spawn error: ${e.message}`)); finish("spawn-error"); });
        child.on("close", (code, signal) => finish(code ?? signal ?? "unknown"));
        // A command that reads no stdin may exit before it is written (psql -c under load): the
        // write then fails with EPIPE, which says nothing about the command; its exit code does.
        child.stdin.on("error", () => undefined);
        child.stdin.end(options.input ?? "");
    });
}

/** Polls `check` every `intervalMs` until it returns true; throws with `what` after `timeoutMs`. */
export async function waitUntil(what: string, timeoutMs: number, intervalMs: number, check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        if (await check()) {
            return;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
        }
        await new Promise((r) => setTimeout(r, intervalMs));
    }
}

/** The last `lines` lines of a log file, for error messages. */
export function tail(file: string, lines = 40): string {
    try {
        return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
        return "(no log)";
    }
}
