/**
 * What stands in for a ClusterIP Service at layer 4: a TCP proxy on a loopback port that spreads
 * connections over the ready pods (loopback ports) as kube-proxy does, one backend connection per
 * client connection. With no ready pod, a connection is reset at once, as kube-proxy rejects
 * connections to a Service without endpoints; a pod that stops takes its open connections with it.
 */
import * as net from "net";

export interface ServiceProxy {
    readonly port: number;
    /** Connections forwarded to each backend port, and those reset for want of one. */
    readonly counts: { forwarded: Map<number, number>; rejected: number };
    /** The pods the Service selects now. */
    setBackends(ports: readonly number[]): void;
    close(): Promise<void>;
}

export function startServiceProxy(initial: readonly number[]): Promise<ServiceProxy> {
    let backends = [...initial];
    let next = 0;
    const counts = { forwarded: new Map<number, number>(), rejected: 0 };
    const sockets = new Set<net.Socket>();
    const server = net.createServer((client) => {
        sockets.add(client);
        client.on("close", () => sockets.delete(client));
        if (backends.length === 0) {
            counts.rejected += 1;
            client.resetAndDestroy();
            return;
        }
        const port = backends[next++ % backends.length]!;
        counts.forwarded.set(port, (counts.forwarded.get(port) ?? 0) + 1);
        const upstream = net.connect({ host: "127.0.0.1", port });
        sockets.add(upstream);
        upstream.on("close", () => sockets.delete(upstream));
        upstream.on("error", () => client.resetAndDestroy());
        client.on("error", () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
    });
    return new Promise((resolve) => {
        server.listen(0, "127.0.0.1", () => {
            const address = server.address();
            resolve({
                port: typeof address === "object" && address ? address.port : 0,
                counts,
                setBackends: (ports) => { backends = [...ports]; },
                close: () => new Promise((r) => {
                    for (const s of sockets) {
                        s.destroy();
                    }
                    server.close(() => r());
                }),
            });
        });
    });
}
