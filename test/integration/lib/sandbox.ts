/**
 * A container, as far as the contract tests need one, built with bubblewrap: the machine's
 * filesystem read-only (the pods run with `readOnlyRootFilesystem: true`), the pod's volumes
 * mounted read-write or read-only at their real `mountPath`s, the container's uid and gid, its
 * working directory and exactly its environment. Network and DNS stay the host's: the loopback
 * mapping is done on the values (see `rendered.ts`).
 *
 * bubblewrap cannot create a mount point inside a read-only bind, so the directories on the way to
 * each mount path are rebuilt in the sandbox's own root: their entries are bound one by one, the
 * mount point is added, and the root is made read-only at the end.
 */
import * as fs from "fs";
import * as path from "path";

/** One volume mount. */
export interface Mount {
    /** Path inside the sandbox (the container's `mountPath`, or a file such as /etc/passwd). */
    readonly target: string;
    /** Directory or file on the host. */
    readonly source: string;
    readonly readOnly: boolean;
}

/** What runs in the sandbox. */
export interface SandboxSpec {
    readonly mounts: readonly Mount[];
    readonly uid: number;
    readonly gid: number;
    readonly workingDir: string;
    readonly hostname: string;
}

export const BWRAP = "/usr/bin/bwrap";
/** Host paths never exposed: the sandbox gets its own /proc and /dev. */
const REPLACED = new Set(["/proc", "/dev"]);

/**
 * The path a mount really lands on: symbolic links among its existing ancestors resolved, as the
 * kernel does for a container (`/var/run/postgresql` is `/run/postgresql` on Debian).
 */
export function canonical(target: string): string {
    let existing = target;
    const rest: string[] = [];
    while (!fs.existsSync(existing) && existing !== "/") {
        rest.unshift(path.basename(existing));
        existing = path.dirname(existing);
    }
    return path.join(fs.realpathSync(existing), ...rest);
}

/** bubblewrap arguments for `spec`, to be followed by the command and its arguments. */
export function bwrapArgs(spec: SandboxSpec): string[] {
    const mounts = spec.mounts.map((m) => ({ ...m, target: canonical(m.target) }));
    const targets = new Map(mounts.map((m) => [m.target, m]));
    const opened = new Set<string>();
    for (const m of mounts) {
        for (let d = path.dirname(m.target); ; d = path.dirname(d)) {
            opened.add(d);
            if (d === "/") {
                break;
            }
        }
    }
    const args = [
        "--die-with-parent", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--uid", String(spec.uid), "--gid", String(spec.gid), "--hostname", spec.hostname,
        "--proc", "/proc", "--dev", "/dev",
    ];
    const visit = (dir: string): void => {
        const entries = fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : [];
        const names = new Set(entries.map((e) => e.name));
        for (const entry of entries) {
            const p = path.join(dir, entry.name);
            if (REPLACED.has(p) || targets.has(p)) {
                continue;
            }
            if (opened.has(p) && entry.isDirectory()) {
                args.push("--dir", p);
                visit(p);
            } else if (entry.isSymbolicLink()) {
                args.push("--symlink", fs.readlinkSync(p), p);
            } else {
                args.push("--ro-bind", p, p);
            }
        }
        // Directories on the way to a mount point that the host does not have.
        for (const o of opened) {
            if (path.dirname(o) === dir && o !== dir && !names.has(path.basename(o))) {
                args.push("--dir", o);
                visit(o);
            }
        }
        for (const m of mounts) {
            if (path.dirname(m.target) === dir) {
                args.push(m.readOnly ? "--ro-bind" : "--bind", m.source, m.target);
            }
        }
    };
    visit("/");
    args.push("--remount-ro", "/", "--chdir", spec.workingDir);
    return args;
}
