/**
 * A real Kubernetes API server on loopback (etcd and kube-apiserver built from the Go module proxy
 * by scripts/integration/kube-apiserver.sh), for the contract tests that need the API's own
 * semantics: RBAC as the rendered Roles grant it, ServiceAccount tokens the server issues, field
 * ownership under server-side apply. There are no controllers and no kubelet: the tests play the
 * Deployment controller for the pods they run as processes ({@link KubeApi.setDeploymentStatus}).
 */
import * as fs from "fs";
import * as https from "https";
import * as path from "path";
import { freePort, runToCompletion, Service, startService, stopService, waitUntil } from "./processes";
import { makeCa, openssl } from "./services";

/** The field manager Pulumi's Kubernetes provider applies as (`pulumi-kubernetes-<suffix>`). */
export const PULUMI_FIELD_MANAGER = "pulumi-kubernetes-contract";

/** An API answer: status and parsed body. */
export interface ApiReply {
    readonly status: number;
    readonly body: any;
}

/** The API server's address and CA, as a pod's ServiceAccount mount and env give them. */
export interface ApiEndpoint {
    readonly host: string;
    readonly port: number;
    readonly caFile: string;
}

export class KubeApi implements ApiEndpoint {
    readonly host = "127.0.0.1";
    private constructor(
        readonly port: number,
        readonly caFile: string,
        private readonly adminToken: string,
        private readonly services: Service[],
    ) {}

    /** Builds (once) and starts etcd and kube-apiserver under `dir`. */
    static async start(root: string, dir: string, logDir: string): Promise<KubeApi> {
        const built = await runToCompletion("bash", [path.join(root, "scripts/integration/kube-apiserver.sh")], {
            env: process.env, logFile: path.join(logDir, "kube-apiserver-build.log"), timeoutMs: 60 * 60 * 1000,
        });
        if (built.code !== 0) {
            throw new Error(`kube-apiserver.sh failed:\n${built.stderr.slice(-3000)}`);
        }
        const bin = built.stdout.trim().split("\n").pop()!;
        fs.rmSync(dir, { recursive: true, force: true });
        const pki = path.join(dir, "pki");
        fs.mkdirSync(pki, { recursive: true });
        const ca = await makeCa(pki, "kube-ca", logDir);
        const key = path.join(pki, "apiserver.key");
        const csr = path.join(pki, "apiserver.csr");
        const cert = path.join(pki, "apiserver.crt");
        fs.writeFileSync(path.join(pki, "apiserver.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n");
        await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver", "-keyout", key, "-out", csr], logDir);
        await openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-days", "2",
            "-extfile", path.join(pki, "apiserver.ext"), "-out", cert], logDir);
        const saKey = path.join(pki, "sa.key");
        await openssl(["genrsa", "-out", saKey, "2048"], logDir);
        const saPub = path.join(pki, "sa.pub");
        await openssl(["rsa", "-in", saKey, "-pubout", "-out", saPub], logDir);
        const adminToken = (await runToCompletion("openssl", ["rand", "-hex", "24"], { env: process.env })).stdout.trim();
        fs.writeFileSync(path.join(pki, "tokens.csv"), `${adminToken},contract-admin,contract-admin,system:masters\n`, { mode: 0o600 });

        const [etcdClient, etcdPeer, port] = [await freePort(), await freePort(), await freePort()];
        const etcd = startService("etcd", path.join(bin, "etcd"), [
            "--data-dir", path.join(dir, "etcd"), "--name", "contract",
            "--listen-client-urls", `http://127.0.0.1:${etcdClient}`, "--advertise-client-urls", `http://127.0.0.1:${etcdClient}`,
            "--listen-peer-urls", `http://127.0.0.1:${etcdPeer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${etcdPeer}`,
            "--initial-cluster", `contract=http://127.0.0.1:${etcdPeer}`, "--log-level", "warn",
        ], { env: process.env, logFile: path.join(logDir, "etcd.log") });
        const apiserver = startService("kube-apiserver", path.join(bin, "kube-apiserver"), [
            `--etcd-servers=http://127.0.0.1:${etcdClient}`,
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", `--secure-port=${port}`,
            `--tls-cert-file=${cert}`, `--tls-private-key-file=${key}`,
            `--token-auth-file=${path.join(pki, "tokens.csv")}`,
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            `--service-account-key-file=${saPub}`, `--service-account-signing-key-file=${saKey}`,
            "--service-cluster-ip-range=10.96.0.0/16",
            "--enable-priority-and-fairness=false", "--profiling=false", "--v=1",
        ], { env: process.env, logFile: path.join(logDir, "kube-apiserver.log") });
        const api = new KubeApi(port, ca.cert, adminToken, [apiserver, etcd]);
        await waitUntil("the API server to be ready", 120000, 500, async () => {
            if (apiserver.hasExited()) {
                throw new Error(`kube-apiserver exited; see ${apiserver.logFile}`);
            }
            return (await api.request("GET", "/readyz").catch(() => ({ status: 0, body: undefined }))).status === 200;
        });
        return api;
    }

    /** One API call, as the admin or with `token`. */
    request(method: string, apiPath: string, body?: unknown, options: { token?: string; contentType?: string } = {}): Promise<ApiReply> {
        const data = body === undefined ? undefined : JSON.stringify(body);
        return new Promise((resolve, reject) => {
            const req = https.request({
                host: this.host, port: this.port, path: apiPath, method, ca: fs.readFileSync(this.caFile),
                headers: {
                    Authorization: `Bearer ${options.token ?? this.adminToken}`, Accept: "application/json",
                    ...(data === undefined ? {} : { "Content-Type": options.contentType ?? "application/json", "Content-Length": Buffer.byteLength(data) }),
                },
                timeout: 30000,
            }, (res) => {
                const chunks: Buffer[] = [];
                res.on("data", (c: Buffer) => chunks.push(c));
                res.on("end", () => {
                    const text = Buffer.concat(chunks).toString("utf8");
                    let parsed: any = text;
                    try { parsed = JSON.parse(text); } catch { /* plain text (readyz) */ }
                    resolve({ status: res.statusCode ?? 0, body: parsed });
                });
            });
            req.on("error", reject);
            req.end(data);
        });
    }

    /** Like {@link request}, failing unless the status is 2xx. */
    async ok(method: string, apiPath: string, body?: unknown, options: { token?: string; contentType?: string } = {}): Promise<any> {
        const reply = await this.request(method, apiPath, body, options);
        if (reply.status < 200 || reply.status >= 300) {
            throw new Error(`${method} ${apiPath}: ${reply.status} ${JSON.stringify(reply.body).slice(0, 600)}`);
        }
        return reply.body;
    }

    /**
     * Server-side apply of one object as Pulumi's provider sends it: its field manager, and force
     * only when the object carries `pulumi.com/patchForce: "true"` (the provider's `patchForce`).
     */
    apply(object: any, options: { force?: boolean } = {}): Promise<ApiReply> {
        const force = options.force ?? object.metadata?.annotations?.["pulumi.com/patchForce"] === "true";
        const query = `?fieldManager=${PULUMI_FIELD_MANAGER}${force ? "&force=true" : ""}`;
        return this.request("PATCH", `${objectPath(object)}${query}`, object, { contentType: "application/apply-patch+yaml" });
    }

    /** A token for a ServiceAccount, as the kubelet projects one into a pod. */
    async serviceAccountToken(namespace: string, name: string): Promise<string> {
        const reply = await this.ok("POST", `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
            { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } });
        return reply.status.token;
    }

    get(apiPath: string): Promise<any> {
        return this.ok("GET", apiPath);
    }

    /** What the Deployment and ReplicaSet controllers would report for the pods the tests run. */
    async setDeploymentStatus(namespace: string, name: string, status: Record<string, number>): Promise<void> {
        await this.ok("PATCH", `/apis/apps/v1/namespaces/${namespace}/deployments/${name}/status`, { status },
            { contentType: "application/merge-patch+json" });
    }

    async stop(): Promise<void> {
        for (const s of this.services) {
            await stopService(s, 10000);
        }
    }
}

/** The API path of an object (the kinds the tests apply). */
export function objectPath(o: any): string {
    const plural: Record<string, string> = {
        Namespace: "namespaces", ServiceAccount: "serviceaccounts", Role: "roles", RoleBinding: "rolebindings",
        Deployment: "deployments", CronJob: "cronjobs", Job: "jobs", ConfigMap: "configmaps", Secret: "secrets", Service: "services",
    };
    const resource = plural[o.kind];
    if (resource === undefined) {
        throw new Error(`objectPath: no plural for ${o.kind}`);
    }
    const [group, version] = String(o.apiVersion).includes("/") ? String(o.apiVersion).split("/") : ["", o.apiVersion];
    const prefix = group === "" ? `/api/${version}` : `/apis/${group}/${version}`;
    return o.kind === "Namespace" ? `${prefix}/namespaces/${o.metadata.name}` : `${prefix}/namespaces/${o.metadata.namespace}/${resource}/${o.metadata.name}`;
}
