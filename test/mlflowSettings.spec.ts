import { expect } from "chai";
import {
    KEEP_ALIVE_SECONDS, allowedHosts, authConfigIni, corsAllowedOrigins, databaseUri, serverArgs,
} from "../components/mlflowSettings";

describe("mlflowSettings", () => {
    it("allows writes from the Ingress's origin, with its scheme, and from extra origins, once each", () => {
        expect(corsAllowedOrigins(undefined, [])).to.deep.equal([]);
        expect(corsAllowedOrigins({ host: "mlflow.example.com", tls: true }, [])).to.deep.equal(["https://mlflow.example.com"]);
        expect(corsAllowedOrigins({ host: "mlflow.example.com", tls: false }, ["http://mlflow.example.com", "https://nb.example.com"]))
            .to.deep.equal(["http://mlflow.example.com", "https://nb.example.com"]);
        const args = serverArgs({ backendStoreUri: "u", artifactsDestination: "s3://b/p", workers: 1, allowedHosts: ["h"], corsAllowedOrigins: ["https://a", "https://b"], maxConcurrentRequests: 8 });
        expect(args[args.indexOf("--cors-allowed-origins") + 1]).to.equal("https://a,https://b");
    });

    it("builds a psycopg2 URI with no credentials in it", () => {
        expect(databaseUri({ host: "db.ns.svc.cluster.local", port: 5432, database: "mlflow" }))
            .to.equal("postgresql+psycopg2://db.ns.svc.cluster.local:5432/mlflow");
    });

    it("allows the Service's four DNS names, each with and without port 80", () => {
        const hosts = allowedHosts("team-a");
        expect(hosts.slice(0, 8)).to.deep.equal([
            "mlflow-service", "mlflow-service:80",
            "mlflow-service.team-a", "mlflow-service.team-a:80",
            "mlflow-service.team-a.svc", "mlflow-service.team-a.svc:80",
            "mlflow-service.team-a.svc.cluster.local", "mlflow-service.team-a.svc.cluster.local:80",
        ]);
        expect(hosts).to.include.members(["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*"]);
        expect(hosts.filter((h) => h.includes("*")).every((h) => h.endsWith(":*")), "wildcards only on ports").to.equal(true);
    });

    it("adds the ingress host when there is one", () => {
        expect(allowedHosts("mlflow", "mlflow.example.com")).to.include.members(["mlflow.example.com", "mlflow.example.com:*"]);
        expect(allowedHosts("mlflow").some((h) => h.includes("example"))).to.equal(false);
    });

    it("assembles the server command line", () => {
        const args = serverArgs({
            backendStoreUri: "postgresql+psycopg2://db:5432/mlflow",
            artifactsDestination: "s3://bucket/mlflow",
            workers: 3,
            allowedHosts: ["a", "b:80"],
            maxConcurrentRequests: 64,
        });
        expect(args).to.deep.equal([
            "server", "--host", "0.0.0.0", "--port", "5000", "--workers", "3",
            "--backend-store-uri", "postgresql+psycopg2://db:5432/mlflow",
            "--serve-artifacts", "--artifacts-destination", "s3://bucket/mlflow",
            "--app-name", "bounded-basic-auth", "--allowed-hosts", "a,b:80",
            "--uvicorn-opts", `--timeout-keep-alive ${KEEP_ALIVE_SECONDS} --limit-concurrency 256`,
        ]);
        expect(args, "gunicorn drops the Host-header check").to.not.include("--gunicorn-opts");
        expect(KEEP_ALIVE_SECONDS).to.be.greaterThan(60);
    });

    it("writes an auth ini with the database and default permission, and no admin password", () => {
        const ini = authConfigIni({ databaseUri: "postgresql+psycopg2://db:5432/auth", defaultPermission: "READ", cacheTtlSeconds: 30 });
        expect(ini.split("\n")).to.include.members([
            "[mlflow]",
            "default_permission = READ",
            "database_uri = postgresql+psycopg2://db:5432/auth",
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
            "auth_cache_ttl_seconds = 30",
            "auth_cache_max_size = 10000",
        ]);
        expect(ini).to.not.include("admin_password");
    });

    it("refuses ini values configparser would misread", () => {
        expect(() => authConfigIni({ databaseUri: "postgresql://u:p%40ss@db/auth", defaultPermission: "READ", cacheTtlSeconds: 0 })).to.throw(/must not contain '%'/);
        expect(() => authConfigIni({ databaseUri: "x", defaultPermission: "READ\nadmin_password = x", cacheTtlSeconds: 0 })).to.throw(/line break/);
    });
});
