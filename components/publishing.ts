/**
 * How the server is published beyond the cluster (an Ingress, or an HTTPRoute to a Gateway) and
 * how it is scraped (a ServiceMonitor). Pure builders of the objects' specs; the tracking server
 * creates them.
 */
import type { StackConfig } from "./config";

/** The Ingress settings from config (`ingressHost` without `gatewayName`). */
export type IngressSettings = NonNullable<StackConfig["mlflow"]["ingress"]>;
/** The HTTPRoute settings from config (`ingressHost` with `gatewayName`). */
export type HttpRouteSettings = NonNullable<StackConfig["mlflow"]["httpRoute"]>;

/** Gateway API group of HTTPRoute and Gateway (standard channel, v1). */
export const GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1";

/** Prometheus Operator's API of ServiceMonitor. */
export const SERVICE_MONITOR_API_VERSION = "monitoring.coreos.com/v1";

/** The host the UI and API are published at and whether browsers reach it over TLS, for CORS and the URL output. */
export function publicEndpoint(ingress: IngressSettings | undefined, route: HttpRouteSettings | undefined): { host: string; tls: boolean } | undefined {
    if (ingress !== undefined) {
        return { host: ingress.host, tls: ingress.tlsSecretName !== undefined };
    }
    return route === undefined ? undefined : { host: route.host, tls: route.https };
}

/**
 * The URL browsers and clients use, under the server's static prefix: `""` when the server is not
 * published (an undefined output warns on every update).
 */
export function publicUrl(endpoint: { host: string; tls: boolean } | undefined, staticPrefix = ""): string {
    return endpoint === undefined ? "" : `${endpoint.tls ? "https" : "http"}://${endpoint.host}${staticPrefix}`;
}

/**
 * An HTTPRoute's spec: the host (under the server's static prefix) to the server's Service port, attached to the configured Gateway
 * (the Gateway's `allowedRoutes` must admit the stack's namespace). Gateway API has no portable
 * body-size limit (the common implementations set none).
 */
export function httpRouteSpec(route: HttpRouteSettings, service: { name: string; port: number }, pathPrefix = "/"): Record<string, unknown> {
    // The whole request, artifact transfers included (an Extended feature of Gateway API: the
    // implementations that support it apply it; `0s` disables it).
    const timeout = route.requestTimeout;
    return {
        parentRefs: [{
            group: "gateway.networking.k8s.io",
            kind: "Gateway",
            name: route.gateway.name,
            ...(route.gateway.namespace === undefined ? {} : { namespace: route.gateway.namespace }),
            ...(route.gateway.sectionName === undefined ? {} : { sectionName: route.gateway.sectionName }),
        }],
        hostnames: [route.host],
        rules: [{
            matches: [{ path: { type: "PathPrefix", value: pathPrefix } }],
            backendRefs: [{ group: "", kind: "Service", name: service.name, port: service.port, weight: 1 }],
            timeouts: { request: timeout, backendRequest: timeout },
        }],
    };
}

/**
 * A ServiceMonitor's spec: Prometheus Operator scrapes each server pod's exporter through the
 * metrics Service's endpoints, labelled with the namespace and pod (what the dashboard selects on).
 */
export function serviceMonitorSpec(selector: Readonly<Record<string, string>>, port: string, path: string): Record<string, unknown> {
    return {
        selector: { matchLabels: { ...selector } },
        endpoints: [{ port, path, scheme: "http", interval: "30s", scrapeTimeout: "10s" }],
    };
}
