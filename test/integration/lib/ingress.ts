/**
 * What stands in for the Ingress controller and the Service on this machine: an HTTP reverse proxy
 * on a loopback port that forwards every request, headers untouched (Host, Origin, Authorization),
 * to the server pods in turn, as kube-proxy spreads a Service's connections over its endpoints.
 *
 * A browser reaches it as an HTTP proxy (`--proxy-server`), so it can load
 * `http://<ingress host>/` and send the Origin it would send through the real Ingress. Requests for
 * any other host get a small static page: a foreign site, for cross-origin checks.
 */
import * as http from "http";

/**
 * How long a pod's endpoint takes to leave the proxies once the pod is deleted (kube-proxy and
 * Ingress controllers take about as long): requests still reach a stopping pod meanwhile, which
 * its preStop hook must outlast.
 */
export const ENDPOINT_LAG_MS = 2000;

/** A running proxy. */
export interface Ingress {
    readonly port: number;
    /** Requests forwarded to each backend port. */
    readonly served: Map<number, number>;
    /** The pods the Service selects now (a rollout adds and removes them). */
    setBackends(ports: readonly number[]): void;
    close(): Promise<void>;
}

/** Starts the proxy for `host`, spreading requests over `backends` (loopback ports). */
export function startIngress(host: string, initial: readonly number[], foreignPage: string): Promise<Ingress> {
    let next = 0;
    let backends = [...initial];
    const served = new Map<number, number>(backends.map((b) => [b, 0]));
    const server = http.createServer((req, res) => {
        // A browser using a proxy sends the absolute URL; a client talking to it directly, the path.
        const url = new URL(req.url ?? "/", `http://${req.headers.host ?? host}`);
        if (url.hostname !== host) {
            res.writeHead(200, { "Content-Type": "text/html" }).end(foreignPage);
            return;
        }
        const backend = backends[next++ % backends.length]!;
        served.set(backend, (served.get(backend) ?? 0) + 1);
        const upstream = http.request({
            host: "127.0.0.1", port: backend, method: req.method, path: `${url.pathname}${url.search}`,
            headers: { ...req.headers, host: url.host },
            // One backend connection per client connection, as kube-proxy forwards (no pool of
            // kept-alive upstream connections).
            agent: false,
        }, (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
        });
        upstream.on("error", () => res.writeHead(502).end());
        req.pipe(upstream);
    });
    return new Promise((resolve) => {
        server.listen(0, "127.0.0.1", () => {
            const address = server.address();
            resolve({
                port: typeof address === "object" && address ? address.port : 0,
                served,
                setBackends: (ports) => { backends = [...ports]; },
                close: () => new Promise((r) => server.close(() => r())),
            });
        });
    });
}
