/**
 * The processes standing in for the cluster's and the cloud's services: moto (S3 and IAM) over
 * HTTPS, PostgreSQL started from the rendered StatefulSet, and rendered containers run in the
 * sandbox with their probes.
 */
import * as fs from "fs";
import * as https from "https";
import * as path from "path";
import { freePort, runToCompletion, Service, startService, stopService, tail, waitUntil } from "./processes";
import { processTree } from "./procfs";
import { ImageRuntime, LocalContainer, Rendered, TYPES } from "./rendered";
import { BWRAP, bwrapArgs } from "./sandbox";

/** Requests moto serves before it starts enforcing IAM: the three that create the deploying identity. */
export const MOTO_BOOTSTRAP_REQUESTS = 3;

/** A running moto server. */
export interface Moto {
    readonly service: Service;
    readonly url: string;
    /** The self-signed certificate clients must trust (AWS_CA_BUNDLE). */
    readonly caBundle: string;
}

/** Starts moto on a free loopback port, HTTPS only, with IAM enforced after the bootstrap requests. */
export async function startMoto(venv: string, dir: string, logDir: string): Promise<Moto> {
    fs.mkdirSync(dir, { recursive: true });
    const cert = path.join(dir, "cert.pem");
    const key = path.join(dir, "key.pem");
    const gen = await runToCompletion("openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert,
    ], { env: process.env, logFile: path.join(logDir, "openssl.log") });
    if (gen.code !== 0) {
        throw new Error(`openssl failed: ${gen.stderr}`);
    }
    const port = await freePort();
    const logFile = path.join(logDir, "moto.log");
    const service = startService("moto", path.join(venv, "bin", "moto_server"),
        ["-H", "127.0.0.1", "-p", String(port), "--ssl-cert", cert, "--ssl-key", key], {
            env: { PATH: process.env.PATH, INITIAL_NO_AUTH_ACTION_COUNT: String(MOTO_BOOTSTRAP_REQUESTS) },
            logFile,
        });
    const ca = fs.readFileSync(cert);
    await waitUntil("moto", 60000, 250, async () => {
        if (service.hasExited()) {
            throw new Error(`moto exited:\n${tail(logFile)}`);
        }
        return new Promise<boolean>((resolve) => {
            // The moto-api endpoints are not AWS actions: they do not use up the bootstrap requests.
            https.get({ host: "127.0.0.1", port, path: "/moto-api/data.json", ca, timeout: 2000 }, (res) => {
                res.resume();
                resolve(res.statusCode === 200);
            }).on("error", () => resolve(false));
        });
    });
    return { service, url: `https://127.0.0.1:${port}`, caBundle: cert };
}

/**
 * Turns moto's IAM enforcement off (every request allowed, signed or not) or back on (every
 * request must be signed by a known key and allowed by its policies).
 */
export async function setMotoEnforcement(moto: Moto, on: boolean): Promise<void> {
    const ca = fs.readFileSync(moto.caBundle);
    const url = new URL("/moto-api/reset-auth", moto.url);
    await new Promise<void>((resolve, reject) => {
        const req = https.request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", ca }, (res) => {
            res.resume();
            res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`moto reset-auth: HTTP ${res.statusCode}`))));
        });
        req.on("error", reject);
        req.end(on ? "0" : "inf");
    });
}

/** Runs a resolved container in the sandbox as a long-running service. */
export function startContainer(c: LocalContainer, logFile: string, argv: readonly string[] = c.argv): Service {
    return startService(c.name, BWRAP, [...bwrapArgs(c.sandbox), "--", ...argv], { env: c.env, logFile });
}

/**
 * Stops a container as the kubelet does: SIGTERM to the container's main process only (the
 * command under the sandbox, its PID 1 in a pod), then SIGKILL to whatever is left once
 * `graceMs` (the pod's terminationGracePeriodSeconds) has passed. Signalling the sandbox itself
 * would take the whole pid namespace down at once, with no graceful shutdown.
 */
export async function stopContainer(service: Service, graceMs: number): Promise<number | string> {
    const root = service.child.pid;
    const main = root === undefined ? undefined : processTree(root).find((s) => s.comm !== "bwrap");
    if (main === undefined || service.hasExited()) {
        return stopService(service, graceMs);
    }
    process.kill(main.pid, "SIGTERM");
    const deadline = new Promise<"grace over">((r) => setTimeout(() => r("grace over"), graceMs).unref());
    await Promise.race([service.exited, deadline]);
    return stopService(service, 0);
}

/** Runs a resolved container in the sandbox to completion (a Job's container, an exec probe). */
export async function runContainer(c: LocalContainer, logFile: string, argv: readonly string[] = c.argv, timeoutMs = 600000) {
    return runToCompletion(BWRAP, [...bwrapArgs(c.sandbox), "--", ...argv], { env: c.env, logFile, timeoutMs });
}

/**
 * Waits the way the kubelet would: the startup probe first (within its failureThreshold × period),
 * then one readiness probe. Polls more often than `periodSeconds` to keep the tests fast; the
 * deadline is the probe's own. Fails early when the process exits.
 */
export async function waitForProbes(c: LocalContainer, service: Service, check: (probe: any) => Promise<boolean>): Promise<void> {
    const startup = c.spec.startupProbe;
    const readiness = c.spec.readinessProbe;
    if (readiness === undefined) {
        throw new Error(`${c.name} renders no readiness probe`);
    }
    const first = startup ?? readiness;
    const budgetMs = (first.periodSeconds ?? 10) * (first.failureThreshold ?? 3) * 1000 + (first.initialDelaySeconds ?? 0) * 1000;
    await waitUntil(`${c.name}'s ${startup ? "startup" : "readiness"} probe`, budgetMs, 500, async () => {
        if (service.hasExited()) {
            throw new Error(`${c.name} exited with ${await service.exited}:\n${tail(service.logFile)}`);
        }
        return check(first);
    });
    if (!(await check(readiness))) {
        throw new Error(`${c.name}: the readiness probe fails after the startup probe passed`);
    }
}

/** A running PostgreSQL. */
export interface Postgres {
    readonly service: Service;
    readonly port: number;
    readonly container: LocalContainer;
}

/**
 * What the official postgres image's entrypoint does on an empty data directory, reduced to what
 * this program uses: initdb with the superuser password from the environment, every *.sql file of
 * /docker-entrypoint-initdb.d run by psql against a server listening on the socket only, then the
 * real server with the container's args. Host connections use scram-sha-256: the image trusts
 * loopback connections, and here loopback stands in for the pod network, where the image's
 * catch-all rule asks for a scram password.
 */
const ENTRYPOINT = `
set -euo pipefail
user="\${POSTGRES_USER:-postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
    initdb --username="$user" --pwfile=<(printf '%s\\n' "$POSTGRES_PASSWORD") \\
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA"
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$user" --dbname postgres \\
                       --host /var/run/postgresql -f "$f" ;;
            *) echo "entrypoint: no rule for init file $f" >&2; exit 1 ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec "$@"
`;

/**
 * What the official postgres image contributes: Debian's server binaries on PATH (`pgBin`) and its
 * `/etc/passwd` and `/etc/group` entries for uid 999 (initdb needs a name for its uid).
 */
export function postgresImage(pgBin: string, uid: number, dir: string): ImageRuntime {
    fs.mkdirSync(dir, { recursive: true });
    const keep = (file: string) => fs.readFileSync(file, "utf8").split("\n").filter((l) => l && !l.startsWith("postgres:")).join("\n");
    fs.writeFileSync(path.join(dir, "passwd"), `${keep("/etc/passwd")}\npostgres:x:${uid}:${uid}:PostgreSQL:/var/lib/postgresql:/bin/bash\n`);
    fs.writeFileSync(path.join(dir, "group"), `${keep("/etc/group")}\npostgres:x:${uid}:\n`);
    return {
        env: { PATH: `${pgBin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, LANG: "C.UTF-8" },
        mounts: [
            { target: "/etc/passwd", source: path.join(dir, "passwd"), readOnly: true },
            { target: "/etc/group", source: path.join(dir, "group"), readOnly: true },
        ],
    };
}

/**
 * Starts PostgreSQL from the rendered StatefulSet: its init containers to completion, then its
 * container with its env (credentials from the rendered Secret), its volumes (the init SQL from the
 * rendered ConfigMap, the data on the claim's directory, kept across starts), its uid, its args,
 * and its startup probe. The Services selecting it are mapped to the loopback port.
 */
export async function startPostgres(r: Rendered, images: Readonly<Record<string, ImageRuntime>>, root: string, logDir: string): Promise<Postgres> {
    const sts = r.one(TYPES.statefulSet, /postgres/);
    const port = await freePort();
    const podLabels = sts.inputs.spec.template.metadata.labels;
    for (const svc of r.all(TYPES.service)) {
        const selector: Record<string, string> = svc.inputs.spec.selector ?? {};
        if (Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => podLabels[k] === v)) {
            r.mapAddress(r.serviceAddress(svc.state.metadata.name), `127.0.0.1:${port}`);
        }
    }
    const options = { claimRoot: path.join(root, "claims"), images };
    // Init containers first, in order, each to completion, as the kubelet runs them.
    for (const c of sts.inputs.spec.template.spec.initContainers ?? []) {
        const init = r.container(sts, c.name, path.join(root, "pod"), options);
        const result = await runContainer(init, path.join(logDir, `postgres-${c.name}.log`));
        if (result.code !== 0) {
            throw new Error(`postgres init container ${c.name} failed (${result.code}):\n${result.stderr.slice(-3000)}`);
        }
    }
    const container = r.container(sts, "postgres", path.join(root, "pod"), options);
    const [entrypoint, program, ...args] = container.argv;
    if (entrypoint !== "docker-entrypoint.sh" || program !== "postgres") {
        throw new Error(`postgres container runs ${container.argv.join(" ")}; the tests emulate docker-entrypoint.sh postgres …`);
    }
    const containerPort: number = container.spec.ports.find((p: any) => p.name === "postgres").containerPort;
    const argv = ["bash", "-c", ENTRYPOINT, "docker-entrypoint.sh", "postgres", ...args,
        "-c", "listen_addresses=127.0.0.1", "-c", `port=${port}`];
    const logFile = path.join(logDir, "postgres.log");
    const service = startContainer(container, logFile, argv);
    // The exec probes run inside the container against its port: the container port maps to ours.
    const probe = async (p: any): Promise<boolean> => {
        const command = (p.exec.command as string[]).map((a) => (a === String(containerPort) ? String(port) : a));
        return (await runContainer(container, path.join(logDir, "postgres-probes.log"), command, 10000)).code === 0;
    };
    await waitForProbes(container, service, probe);
    return { service, port, container };
}

/** A PostgreSQL outside the cluster, reachable over TLS only, as a team's RDS instance is. */
export interface ExternalPostgres {
    readonly service: Service;
    readonly port: number;
    /** The host name its certificate is issued for (and the only one verify-full accepts). */
    readonly host: string;
    /** PEM of the CA that signed the server's certificate. */
    readonly caFile: string;
    /** Runs SQL as the server's superuser over its local socket (the team's DBA). */
    admin(sql: string): Promise<string>;
}

/** Runs openssl, failing with its output. */
export async function openssl(args: string[], logDir: string): Promise<void> {
    const result = await runToCompletion("openssl", args, { env: process.env, logFile: path.join(logDir, "openssl.log") });
    if (result.code !== 0) {
        throw new Error(`openssl ${args[0]} failed: ${result.stderr}`);
    }
}

/** A CA (its key and certificate) in `dir`, for signing a server certificate. */
export async function makeCa(dir: string, name: string, logDir: string): Promise<{ cert: string; key: string }> {
    fs.mkdirSync(dir, { recursive: true });
    const ca = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
    await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${name}`,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", ca.key, "-out", ca.cert], logDir);
    return ca;
}

/**
 * Starts PostgreSQL (the machine's server binaries, in the sandbox as uid `uid`) with a fresh data
 * directory, TLS on with a certificate for `localhost` signed by a CA of its own, and a pg_hba that
 * refuses every connection over TCP without TLS.
 */
export async function startExternalPostgres(options: { dir: string; logDir: string; pgBin: string; uid: number; image: ImageRuntime }): Promise<ExternalPostgres> {
    const { dir, logDir } = options;
    const host = "localhost";
    const tls = path.join(dir, "tls");
    const ca = await makeCa(tls, "external-db-ca", logDir);
    const serverKey = path.join(tls, "server.key");
    const serverCsr = path.join(tls, "server.csr");
    const serverCert = path.join(tls, "server.crt");
    const ext = path.join(tls, "server.ext");
    fs.writeFileSync(ext, `subjectAltName=DNS:${host}\nextendedKeyUsage=serverAuth\n`);
    await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${host}`, "-keyout", serverKey, "-out", serverCsr], logDir);
    await openssl(["x509", "-req", "-in", serverCsr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", serverCert], logDir);
    // PostgreSQL refuses a key others may read.
    fs.chmodSync(serverKey, 0o600);
    for (const d of ["data", "run", "tmp", "sql"]) {
        fs.mkdirSync(path.join(dir, d), { recursive: true });
    }
    const port = await freePort();
    const container: LocalContainer = {
        name: "external-postgres",
        spec: {},
        argv: [],
        // PGPORT names the socket too (.s.PGSQL.<port>), for the DBA's psql.
        env: { ...options.image.env, PGDATA: "/var/lib/postgresql/data", PGPORT: String(port), HOME: "/tmp" },
        sandbox: {
            uid: options.uid,
            gid: options.uid,
            workingDir: "/tmp",
            hostname: "external-postgres",
            mounts: [
                ...(options.image.mounts ?? []),
                { target: "/var/lib/postgresql/data", source: path.join(dir, "data"), readOnly: false },
                { target: "/var/run/postgresql", source: path.join(dir, "run"), readOnly: false },
                { target: "/tmp", source: path.join(dir, "tmp"), readOnly: false },
                { target: "/etc/external-db/tls", source: tls, readOnly: true },
                { target: "/etc/external-db/sql", source: path.join(dir, "sql"), readOnly: true },
            ],
        },
    };
    const script = `
set -euo pipefail
initdb --username=postgres --auth-local=trust --auth-host=reject --encoding=UTF8 -D "$PGDATA" > /dev/null
cat > "$PGDATA/pg_hba.conf" <<'HBA'
local     all all              trust
hostssl   all all 127.0.0.1/32 scram-sha-256
hostssl   all all ::1/128      scram-sha-256
hostnossl all all 0.0.0.0/0    reject
hostnossl all all ::/0         reject
HBA
exec postgres -D "$PGDATA" -c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=/var/run/postgresql \\
    -c ssl=on -c ssl_cert_file=/etc/external-db/tls/server.crt -c ssl_key_file=/etc/external-db/tls/server.key \\
    -c ssl_min_protocol_version=TLSv1.2 -c max_connections=300 -c password_encryption=scram-sha-256`;
    const service = startContainer(container, path.join(logDir, "external-postgres.log"), ["bash", "-c", script]);
    let sqlRuns = 0;
    const admin = async (sql: string): Promise<string> => {
        // The statements go in a file the sandbox reads: passwords in them stay off command lines.
        const file = `${++sqlRuns}.sql`;
        fs.writeFileSync(path.join(dir, "sql", file), sql, { mode: 0o600 });
        const result = await runContainer(container, path.join(logDir, "external-postgres-admin.log"),
            ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "/var/run/postgresql", "-U", "postgres", "-d", "postgres", "-f", `/etc/external-db/sql/${file}`], 60000);
        fs.rmSync(path.join(dir, "sql", file));
        if (result.code !== 0) {
            throw new Error(`external PostgreSQL admin SQL failed: ${result.stderr}`);
        }
        return result.stdout.trim();
    };
    await waitUntil("external PostgreSQL", 60000, 250, async () => {
        if (service.hasExited()) {
            throw new Error(`external PostgreSQL exited with ${await service.exited}:\n${tail(path.join(logDir, "external-postgres.log"))}`);
        }
        return (await runContainer(container, path.join(logDir, "external-postgres-admin.log"),
            ["pg_isready", "-h", "/var/run/postgresql", "-U", "postgres"], 10000)).code === 0;
    });
    return { service, port, host, caFile: ca.cert, admin };
}
