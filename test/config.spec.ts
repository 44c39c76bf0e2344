import { expect } from "chai";
import * as fs from "fs";
import * as path from "path";
import { ConfigError, NGINX_INGRESS_ANNOTATIONS, PROJECT, STRUCTURED_KEYS, STRUCTURED_MAP_KEYS, StackConfig, bucketPrefixProblems, cronProblems, isCidr, isOrigin, parseConfig, parseQuantity, prefixesOverlap } from "../components/config";
import { ROOT, STACKS, projectSchema, stackConfig } from "./harness";
import { expectRejected as expectRejectedBy } from "./support/configErrors";

/** A reader over a stack's real configuration with some keys replaced (undefined removes one). */
function readerFor(stack: string, overrides: Record<string, string | undefined> = {}) {
    const config = stackConfig(stack, overrides);
    return (key: string) => config[`${PROJECT}:${key}`];
}

function parse(overrides: Record<string, string | undefined>, stack = "minikube"): StackConfig {
    return parseConfig(readerFor(stack, overrides));
}

/** Asserts that parsing fails and the error names the key and what is allowed. */
function expectRejected(overrides: Record<string, string | undefined>, key: string, allowed: RegExp): void {
    expectRejectedBy(() => parse(overrides), JSON.stringify(overrides), key, allowed);
}

describe("config", () => {
    describe("Pulumi.yaml schema", () => {
        const schema = projectSchema();

        it("gives every key a type, a description and (except kubeContext) a default", () => {
            for (const [key, spec] of Object.entries(schema)) {
                expect(spec.type, key).to.be.oneOf(["string", "integer", "boolean"]);
                expect(spec.description, key).to.be.a("string").and.not.be.empty;
                if (key === "kubeContext") {
                    expect(spec.default, "kubeContext must be set per stack, never defaulted").to.equal(undefined);
                } else {
                    expect(spec.default, key).to.not.equal(undefined);
                }
            }
        });

        it("declares exactly the keys the program reads", () => {
            const read = new Set<string>();
            parseConfig((key) => {
                read.add(key);
                return stackConfig("minikube")[`${PROJECT}:${key}`];
            });
            const structured = [...read].filter((k) => STRUCTURED_KEYS.includes(k));
            expect(structured.sort(), "structured keys are read too").to.deep.equal([...STRUCTURED_KEYS].sort());
            expect([...read].filter((k) => !STRUCTURED_KEYS.includes(k)).sort()).to.deep.equal(Object.keys(schema).sort());
        });

        it("documents each structured key in a comment of Pulumi.yaml, which cannot declare a list of objects", () => {
            const text = fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8");
            for (const key of STRUCTURED_KEYS) {
                expect(text, key).to.match(new RegExp(`^# {2}${key}:`, "m"));
                expect(Object.keys(schema), `${key} must not be declared: the CLI would refuse its value`).to.not.include(key);
            }
        });

        it("is documented in the README with the same types and defaults", () => {
            const text = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
            const readme = text.slice(text.indexOf("## Configuration reference"), text.indexOf("## Outputs"));
            const rows = new Map<string, { type: string; def: string }>();
            for (const m of readme.matchAll(/^\| `(\w+)` \| (\w+) \| ([^|]+) \|/gm)) {
                rows.set(m[1]!, { type: m[2]!, def: m[3]!.trim() });
            }
            expect([...rows.keys()].sort()).to.deep.equal([...Object.keys(schema), ...STRUCTURED_KEYS].sort());
            for (const key of STRUCTURED_KEYS) {
                // ingressAnnotations alone defaults to something: ingress-nginx's annotations.
                const def = key === "ingressAnnotations" ? "*(ingress-nginx's)*" : STRUCTURED_MAP_KEYS.includes(key) ? "`{}`" : "`[]`";
                const expected = { type: STRUCTURED_MAP_KEYS.includes(key) ? "map" : "list", def };
                expect(rows.get(key), key).to.deep.equal(expected);
            }
            for (const [key, spec] of Object.entries(schema)) {
                expect(rows.get(key)!.type, key).to.equal(spec.type);
                const documented = spec.default === undefined ? "*(required)*" : `\`${spec.default === "" ? '""' : String(spec.default)}\``;
                expect(rows.get(key)!.def, key).to.equal(documented);
            }
        });

        it("has defaults that are valid on their own (with a kube context)", () => {
            const defaults: Record<string, string> = { kubeContext: "any" };
            for (const [key, spec] of Object.entries(schema)) {
                if (spec.default !== undefined) {
                    defaults[key] = String(spec.default);
                }
            }
            const c = parseConfig((key) => defaults[key]);
            expect(c.namespace).to.equal("mlflow");
            expect(c.artifacts.forceDestroy, "a bucket is kept unless a stack says otherwise").to.equal(false);
            expect(c.postgres.volumeRetention).to.equal("Retain");
        });
    });

    describe("stack files", () => {
        for (const stack of STACKS) {
            it(`parses the ${stack} stack`, () => {
                const c = parseConfig(readerFor(stack));
                expect(c.kubeContext).to.not.be.empty;
                expect(c.artifacts.forceDestroy, "stacks tear down cleanly").to.equal(true);
                expect(c.postgres.volumeRetention).to.equal("Delete");
                expect(Object.isFrozen(c) && Object.isFrozen(c.mlflow.resources)).to.equal(true);
            });
        }

        it("uses the minikube context for the minikube stack and one replica", () => {
            const c = parseConfig(readerFor("minikube"));
            expect(c.kubeContext).to.equal("minikube");
            expect(c.mlflow.replicas).to.equal(1);
            expect(c.mlflow.maxReplicas).to.equal(0);
        });

        it("shows the EKS credential modes in the dev stack, with placeholders that fail until filled in", () => {
            const text = fs.readFileSync(path.join(ROOT, "Pulumi.dev.yaml"), "utf8");
            const commented = [...text.matchAll(/^ {2}# (mlflow-k8s:(\w+)): (.+)$/gm)].map((m) => [m[2]!, m[3]!] as const);
            expect(commented.map(([k]) => k).slice(0, 4)).to.deep.equal(["awsCredentials", "eksClusterName", "awsCredentials", "eksOidcProviderArn"]);
            for (const pair of [commented.slice(0, 2), commented.slice(2, 4)]) {
                const overrides = Object.fromEntries(pair);
                expect(() => parse(overrides, "dev"), JSON.stringify(overrides)).to.throw(new RegExp(`mlflow-k8s:${pair[1]![0]} = .* is invalid`));
            }
        });

        it("shows an external database in the dev stack, with placeholders that fail until filled in", () => {
            const text = fs.readFileSync(path.join(ROOT, "Pulumi.dev.yaml"), "utf8");
            const commented = [...text.matchAll(/^ {2}# (mlflow-k8s:(\w+)): (.+)$/gm)].map((m) => [m[2]!, m[3]!] as const).slice(4);
            expect(commented.map(([k]) => k)).to.deep.equal(["databaseMode", "databaseHost", "databaseUsername", "databaseEgressCidrs", "databaseMaxConnections"]);
            const overrides = Object.fromEntries(commented);
            let message = "";
            try {
                parse(overrides, "dev");
            } catch (e) {
                message = (e as Error).message;
            }
            for (const key of ["databaseHost", "databaseEgressCidrs", "databaseMaxConnections", "databasePassword", "databaseCaCertificate"]) {
                expect(message, key).to.include(`mlflow-k8s:${key}`);
            }
        });

        it("runs dev with two or more replicas and autoscaling", () => {
            const c = parseConfig(readerFor("dev"));
            expect(c.mlflow.replicas).to.be.at.least(2);
            expect(c.mlflow.maxReplicas).to.be.greaterThan(c.mlflow.replicas);
        });
    });

    describe("rejects invalid values, naming the key and what is allowed", () => {
        const cases: [string, Record<string, string | undefined>, string, RegExp][] = [
            ["a missing kube context", { kubeContext: undefined }, "kubeContext", /required/],
            ["an empty kube context", { kubeContext: "  " }, "kubeContext", /required/],
            ["a namespace with capitals", { namespace: "MLflow" }, "namespace", /DNS-1123 label/],
            ["a namespace ending in a hyphen", { namespace: "mlflow-" }, "namespace", /DNS-1123 label/],
            ["a namespace over 63 characters", { namespace: "a".repeat(64) }, "namespace", /at most 63/],
            ["zero replicas", { mlflowReplicas: "0" }, "mlflowReplicas", /integer from 1 to 100/],
            ["a fractional replica count", { mlflowReplicas: "1.5" }, "mlflowReplicas", /integer/],
            ["a replica count that is not a number", { mlflowReplicas: "two" }, "mlflowReplicas", /integer/],
            ["a storage size that is not a quantity", { postgresStorageSize: "10GB" }, "postgresStorageSize", /memory quantity/],
            ["a CPU request that is not a quantity", { mlflowCpuRequest: "half" }, "mlflowCpuRequest", /CPU quantity/],
            ["a zero memory limit", { postgresMemoryLimit: "0" }, "postgresMemoryLimit", /positive/],
            ["a request above its limit", { mlflowMemoryRequest: "4Gi", mlflowMemoryLimit: "1Gi" }, "mlflowMemoryRequest", /must not exceed/],
            ["a bucket prefix with capitals", { bucketPrefix: "MLflow-" }, "bucketPrefix", /lowercase letters/],
            ["a bucket prefix with underscores", { bucketPrefix: "ml_flow" }, "bucketPrefix", /lowercase letters/],
            ["a bucket prefix too long for a generated name", { bucketPrefix: "a".repeat(38) }, "bucketPrefix", /3 to 37/],
            ["a bucket prefix S3 reserves", { bucketPrefix: "xn--mlflow" }, "bucketPrefix", /reserves/],
            ["an artifact prefix with a leading slash", { artifactPrefix: "/mlflow" }, "artifactPrefix", /no leading or trailing/],
            ["an artifact prefix with a wildcard", { artifactPrefix: "ml*" }, "artifactPrefix", /letters, digits/],
            ["an unknown default permission", { mlflowDefaultPermission: "WRITE" }, "mlflowDefaultPermission", /one of READ, EDIT, MANAGE, NO_PERMISSIONS/],
            ["an unknown volume retention", { postgresVolumeRetention: "Recycle" }, "postgresVolumeRetention", /one of Delete, Retain/],
            ["a boolean that is not one", { bucketForceDestroy: "yes" }, "bucketForceDestroy", /true or false/],
            ["an invalid AWS region", { awsRegion: "europe" }, "awsRegion", /AWS region code/],
            ["an endpoint that is not a URL", { awsEndpoint: "localhost:5000" }, "awsEndpoint", /http\(s\) URL/],
            ["a KMS key that is not an ARN", { bucketKmsKeyArn: "my-key" }, "bucketKmsKeyArn", /KMS key ARN/],
            ["a KMS alias instead of a key", { bucketKmsKeyArn: "arn:aws:kms:us-east-1:123456789012:alias/mlflow" }, "bucketKmsKeyArn", /alias ARN cannot scope/],
            ["a KMS key of another region", { bucketKmsKeyArn: "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab" }, "bucketKmsKeyArn", /in the bucket's region mlflow-k8s:awsRegion \(us-east-1\)/],
            ["a zero-day version expiry", { noncurrentVersionExpirationDays: "0" }, "noncurrentVersionExpirationDays", /integer from 1/],
            ["an autoscaling ceiling below the replicas", { mlflowReplicas: "3", mlflowMaxReplicas: "2" }, "mlflowMaxReplicas", /at least/],
            ["pools larger than max_connections", { mlflowDbPoolSize: "20", mlflowDbMaxOverflow: "36" }, "mlflowDbPoolSize", /x 160 connections per worker \(4 engines of pool 20 \+ overflow 36, at most 2 per request in flight\) = 320 exceeds .*postgresMaxConnections/],
            ["a PostgreSQL memory limit too small for max_connections", { postgresMaxConnections: "1000", postgresMemoryLimit: "2Gi" }, "postgresMemoryLimit", /at least 3419Mi for mlflow-k8s:postgresMaxConnections 1000/],
            ["more workers than CPU cores", { mlflowWorkers: "3", postgresMaxConnections: "310", postgresMemoryLimit: "2Gi" }, "mlflowWorkers", /at most 2, the cores of mlflow-k8s:mlflowCpuLimit/],
            ["a memory limit below the measured peak", { mlflowMemoryLimit: "1Gi" }, "mlflowMemoryLimit", /at least 1643Mi for 2 worker\(s\) each reading up to mlflow-k8s:mlflowRequestBodyBudget \(2Mi\) of large bodies at once: measured peak 1232Mi \(16x the budget per worker included\) plus 25% headroom/],
            ["a body budget the memory limit cannot hold", { mlflowRequestBodyBudget: "8Mi" }, "mlflowMemoryLimit", /at least 1899Mi .*mlflowRequestBodyBudget \(8Mi\)/],
            ["an API body limit that is not a quantity", { mlflowMaxRequestBodySize: "2MB" }, "mlflowMaxRequestBodySize", /Kubernetes quantity from 64Ki to 256Mi.*413 beyond/],
            ["an API body limit below 64Ki", { mlflowMaxRequestBodySize: "1Ki" }, "mlflowMaxRequestBodySize", /from 64Ki to 256Mi/],
            ["an API body limit above 256Mi", { mlflowMaxRequestBodySize: "1Gi", mlflowRequestBodyBudget: "1Gi" }, "mlflowMaxRequestBodySize", /from 64Ki to 256Mi/],
            ["an upload limit larger than the server's /tmp", { mlflowMaxUploadSize: "5Gi" }, "mlflowMaxUploadSize", /from 1Mi to 4096Mi.*\/tmp that spools it/],
            ["a body budget below the body limit", { mlflowMaxRequestBodySize: "4Mi", mlflowRequestBodyBudget: "2Mi" }, "mlflowRequestBodyBudget", /at least mlflow-k8s:mlflowMaxRequestBodySize \(4Mi\)/],
            ["zero concurrent requests", { mlflowMaxConcurrentRequests: "0" }, "mlflowMaxConcurrentRequests", /integer from 1 to 1000/],
            ["a body timeout of an hour and more", { mlflowRequestBodyTimeoutSeconds: "3601" }, "mlflowRequestBodyTimeoutSeconds", /integer from 1 to 3600/],
            ["an auth cache TTL over five minutes", { mlflowAuthCacheTtlSeconds: "3600" }, "mlflowAuthCacheTtlSeconds", /integer from 0 to 300/],
            ["an admin user name with spaces", { mlflowAdminUsername: "the admin" }, "mlflowAdminUsername", /user name/],
            ["an ingress host that is not a DNS name", { ingressHost: "mlflow_ui" }, "ingressHost", /DNS name/],
            ["an ingress TLS secret without a host", { ingressTlsSecretName: "mlflow-tls" }, "ingressHost", /required when/],
            ["a storage class that is not a name", { postgresStorageClass: "Fast SSD" }, "postgresStorageClass", /StorageClass name/],
            ["a backup schedule with four fields", { backupSchedule: "30 2 * *" }, "backupSchedule", /five fields/],
            ["a backup schedule at hour 24", { backupSchedule: "0 24 * * *" }, "backupSchedule", /cron schedule/],
            ["a backup schedule with a reversed range", { backupSchedule: "0 5-2 * * *" }, "backupSchedule", /cron schedule/],
            ["a backup schedule with a zero step", { backupSchedule: "*/0 * * * *" }, "backupSchedule", /cron schedule/],
            ["a backup schedule with an unknown month", { backupSchedule: "0 2 1 foo *" }, "backupSchedule", /cron schedule/],
            ["an unknown cron macro", { backupSchedule: "@sometimes" }, "backupSchedule", /@daily/],
            ["a backup retention of zero days", { backupRetentionDays: "0" }, "backupRetentionDays", /integer from 1 to 3650/],
            ["a backup prefix with a trailing slash", { backupPrefix: "backups/" }, "backupPrefix", /no leading or trailing/],
            ["a backup prefix equal to the artifact prefix", { backupPrefix: "mlflow" }, "backupPrefix", /must not be mlflow-k8s:artifactPrefix/],
            ["a backup prefix inside the artifact prefix", { backupPrefix: "mlflow/backups" }, "backupPrefix", /server's identity may never reach the backups/],
            ["an artifact prefix inside the backup prefix", { artifactPrefix: "backups/mlflow" }, "backupPrefix", /inside it or around it/],
            ["a CORS origin with a path", { corsAllowedOrigins: "https://notebooks.example.com/lab" }, "corsAllowedOrigins", /scheme:\/\/host\[:port\], no path/],
            ["a CORS wildcard", { corsAllowedOrigins: "*" }, "corsAllowedOrigins", /'\*' is not allowed/],
            ["a CORS origin without a scheme", { corsAllowedOrigins: "notebooks.example.com" }, "corsAllowedOrigins", /origins/],
            ["an ingress controller namespace with capitals", { ingressControllerNamespace: "Ingress" }, "ingressControllerNamespace", /DNS-1123 label/],
            ["a source range without a prefix length", { ingressSourceRanges: "10.0.0.0" }, "ingressSourceRanges", /CIDRs/],
            ["a source range with a bad prefix length", { ingressSourceRanges: "10.0.0.0/33" }, "ingressSourceRanges", /CIDRs/],
            ["a NodeLocal DNS address that is not an IP", { nodeLocalDnsAddress: "dns.local" }, "nodeLocalDnsAddress", /IP address/],
            // The schema rollout's only way out besides DNS and PostgreSQL: never empty, never a name.
            ["no API server CIDR at all", { kubeApiServerCidrs: "" }, "kubeApiServerCidrs", /at least one CIDR: the API server's addresses/],
            ["API server CIDRs that are only separators", { kubeApiServerCidrs: " , " }, "kubeApiServerCidrs", /at least one CIDR/],
            ["an API server address without a prefix length", { kubeApiServerCidrs: "192.168.49.2" }, "kubeApiServerCidrs", /"192\.168\.49\.2" is invalid: a comma-separated list of CIDRs/],
            ["an API server CIDR with a bad prefix length", { kubeApiServerCidrs: "10.0.0.0/8,10.1.0.0/33" }, "kubeApiServerCidrs", /"10\.1\.0\.0\/33" is invalid: a comma-separated list of CIDRs/],
            ["the API server by name", { kubeApiServerCidrs: "kubernetes.default.svc" }, "kubeApiServerCidrs", /CIDRs, such as 192\.168\.49\.2\/32/],
            ["API server port 0", { kubeApiServerPort: "0" }, "kubeApiServerPort", /integer from 1 to 65535/],
            ["an API server port above 65535", { kubeApiServerPort: "65536" }, "kubeApiServerPort", /integer from 1 to 65535/],
            ["an API server port that is not a number", { kubeApiServerPort: "https" }, "kubeApiServerPort", /integer from 1 to 65535/],
            ["an empty API server port", { kubeApiServerPort: "" }, "kubeApiServerPort", /is required: an integer from 1 to 65535/],
            ["a telemetry switch that is not a boolean", { mlflowTelemetry: "off" }, "mlflowTelemetry", /true or false/],
            ["an unknown credential mode", { awsCredentials: "instanceProfile" }, "awsCredentials", /one of accessKey, podIdentity, irsa/],
            ["Pod Identity without a cluster", { awsCredentials: "podIdentity" }, "eksClusterName", /required with mlflow-k8s:awsCredentials podIdentity/],
            ["IRSA without an OIDC provider", { awsCredentials: "irsa" }, "eksOidcProviderArn", /required with mlflow-k8s:awsCredentials irsa/],
            ["an OIDC provider that is not an ARN", { awsCredentials: "irsa", eksOidcProviderArn: "https://oidc.eks.eu-west-1.amazonaws.com/id/X" }, "eksOidcProviderArn", /ARN of the cluster's IAM OIDC provider/],
            ["a cluster name with access keys", { eksClusterName: "dev" }, "eksClusterName", /only with mlflow-k8s:awsCredentials podIdentity \(it is accessKey\)/],
            ["an OIDC provider with Pod Identity", { awsCredentials: "podIdentity", eksClusterName: "dev", eksOidcProviderArn: "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/X" }, "eksOidcProviderArn", /only with mlflow-k8s:awsCredentials irsa/],
            ["a key generation without keys", { awsCredentials: "podIdentity", eksClusterName: "dev", awsAccessKeyGeneration: "2" }, "awsAccessKeyGeneration", /no access keys to rotate/],
            ["a key generation of zero", { awsAccessKeyGeneration: "0" }, "awsAccessKeyGeneration", /integer from 1/],
        ];
        for (const [what, overrides, key, allowed] of cases) {
            it(`rejects ${what}`, () => expectRejected(overrides, key, allowed));
        }

        it("reports every problem at once, with the bad value", () => {
            try {
                parse({ namespace: "Bad_NS", mlflowReplicas: "-1" });
                expect.fail("should have thrown");
            } catch (e) {
                expect((e as ConfigError).problems).to.have.length(2);
                expect((e as Error).message).to.include('"Bad_NS"').and.include('"-1"');
            }
        });
    });

    describe("accepts what Kubernetes and S3 accept", () => {
        it("parses Kubernetes quantities", () => {
            expect(parseQuantity("250m")).to.equal(0.25);
            expect(parseQuantity("1")).to.equal(1);
            expect(parseQuantity("512Mi")).to.equal(512 * 2 ** 20);
            expect(parseQuantity("1.5Gi")).to.equal(1.5 * 2 ** 30);
            expect(parseQuantity("2G")).to.equal(2e9);
            expect(parseQuantity("1e3")).to.equal(1000);
            expect(parseQuantity("10GB")).to.be.NaN;
            expect(parseQuantity("")).to.be.NaN;
        });

        it("accepts a valid bucket prefix and optional settings", () => {
            expect(bucketPrefixProblems("mlflow-artifacts-")).to.deep.equal([]);
            const c = parse({
                bucketKmsKeyArn: "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                awsEndpoint: "http://127.0.0.1:5000",
                ingressHost: "mlflow.example.com",
                ingressClassName: "nginx",
                artifactPrefix: "teams/data-science",
            });
            expect(c.artifacts.kmsKeyArn).to.match(/^arn:aws:kms:/);
            expect(c.aws.endpoint).to.equal("http://127.0.0.1:5000");
            expect(c.mlflow.ingress).to.deep.equal({ host: "mlflow.example.com", className: "nginx", tlsSecretName: undefined, annotations: NGINX_INGRESS_ANNOTATIONS });
            expect(c.mlflow.httpRoute, "no Gateway named: an Ingress").to.equal(undefined);
            expect(c.artifacts.artifactPrefix).to.equal("teams/data-science");
        });

        it("accepts the cron schedules Kubernetes accepts", () => {
            for (const schedule of ["30 2 * * *", "@daily", "@hourly", "0 */6 * * *", "15 1,13 * * mon-fri", "0 3 1 jan,jul *", "0 0 * * 7", "5 4 * * SUN"]) {
                expect(cronProblems(schedule), schedule).to.deep.equal([]);
                expect(parse({ backupSchedule: schedule }).backup.schedule).to.equal(schedule);
            }
        });

        it("accepts a backup prefix beside the artifact prefix, even one that starts the same", () => {
            expect(parse({ backupPrefix: "mlflow-backups" }).backup.prefix).to.equal("mlflow-backups");
            expect(prefixesOverlap("mlflow", "mlflow-backups")).to.equal(false);
            expect(prefixesOverlap("a/b", "a")).to.equal(true);
        });

        it("accepts lists of origins and CIDRs, IPv4 and IPv6, trimming blanks", () => {
            const c = parse({ corsAllowedOrigins: "https://a.example.com, http://localhost:3000", ingressSourceRanges: "10.0.0.0/16, fd00::/8", nodeLocalDnsAddress: "fd00::10" });
            expect(c.mlflow.corsAllowedOrigins).to.deep.equal(["https://a.example.com", "http://localhost:3000"]);
            expect(c.network.sourceRanges).to.deep.equal(["10.0.0.0/16", "fd00::/8"]);
            expect(c.network.nodeLocalDnsAddress).to.equal("fd00::10");
            expect(isOrigin("https://a.example.com:8443")).to.equal(true);
            expect(isOrigin("https://a.example.com/")).to.equal(false);
            expect(isCidr("192.168.1.0/24")).to.equal(true);
            expect(isCidr("192.168.1.0/24/1")).to.equal(false);
            expect(parse({ nodeLocalDnsAddress: "" }).network.nodeLocalDnsAddress).to.equal(undefined);
        });

        it("derives the pools from the connection budget when the pool keys are unset, on every shipped stack", () => {
            const pools = (c: StackConfig) => [c.mlflow.dbPoolSize, c.mlflow.dbMaxOverflow, c.mlflow.requestLimits.maxConcurrentRequests];
            // minikube: 250 - 10 connections over replicas x 2 workers. One replica: MLflow's 5 + 36 for the
            // worker's 40 threads (min(4 x 41, 2 x 40 + 4 x 5) = 100 each, 200 in all); the request limit stays.
            expect(pools(parse({}))).to.deep.equal([5, 36, 64]);
            // Two: 60 a worker: pools of 1, and 28 requests at once, 2 x 28 + 4 = 60.
            expect(pools(parse({ mlflowReplicas: "2" }))).to.deep.equal([1, 28, 28]);
            expect(pools(parse({ mlflowReplicas: "4" }))).to.deep.equal([1, 13, 13]);
            // The autoscaler's maximum counts, not its minimum.
            expect(pools(parse({ mlflowReplicas: "1", mlflowMaxReplicas: "3" }))).to.deep.equal([1, 18, 18]);
            // dev: 810 - 10 over 4 (its autoscaler's maximum) x 2 workers = 100 a worker.
            expect(pools(parse({}, "dev"))).to.deep.equal([5, 36, 64]);
            expect(pools(parse({ mlflowMaxReplicas: "8" }, "dev"))).to.deep.equal([1, 23, 23]);
            for (const [stack, overrides] of [["minikube", { mlflowReplicas: "2" }], ["minikube", { mlflowReplicas: "4" }], ["dev", { mlflowMaxReplicas: "8" }]] as const) {
                const c = parse(overrides, stack);
                const workersAtPeak = Math.max(c.mlflow.replicas, c.mlflow.maxReplicas) * c.mlflow.workers;
                const perWorker = Math.min(4 * (c.mlflow.dbPoolSize + c.mlflow.dbMaxOverflow), 2 * c.mlflow.requestLimits.maxConcurrentRequests + 4 * c.mlflow.dbPoolSize);
                expect(workersAtPeak * perWorker, `${stack} ${JSON.stringify(overrides)}: within max connections`).to.be.at.most(c.postgres.maxConnections - 10);
                expect(c.mlflow.dbPoolSize + c.mlflow.dbMaxOverflow, "never dry").to.be.greaterThan(Math.min(40, c.mlflow.requestLimits.maxConcurrentRequests));
            }
            // A lower request limit than the budget allows is kept.
            expect(pools(parse({ mlflowMaxConcurrentRequests: "10" }))).to.deep.equal([5, 6, 10]);
        });

        it("refuses only what no sizing can serve, and a pool key set without the other", () => {
            expectRejected({ mlflowReplicas: "40", mlflowMaxReplicas: "40", postgresMaxConnections: "250" }, "postgresMaxConnections",
                /at least 490 for replicas \(40\) x workers \(2\): each worker needs a pool of 1 per engine \(4\) and 2 connections for one request/);
            expect(parse({ mlflowReplicas: "40", postgresMaxConnections: "490", postgresMemoryLimit: "2Gi" }).mlflow.dbPoolSize).to.equal(1);
            expectRejected({ mlflowDbPoolSize: "5" }, "mlflowDbMaxOverflow", /set as well, since mlflow-k8s:mlflowDbPoolSize is set \(or leave both unset/);
            expectRejected({ mlflowDbMaxOverflow: "10" }, "mlflowDbPoolSize", /set as well, since mlflow-k8s:mlflowDbMaxOverflow is set/);
            expectRejected({ mlflowDbMaxOverflow: "-2" }, "mlflowDbMaxOverflow", /integer from -1 to 100/);
        });

        it("counts every engine's pool of every worker of the largest replica count against max_connections", () => {
            // 2 replicas x 2 workers x min(4 x (5 + 36), 2 x 40 + 4 x 5) = 400, plus 10 reserved.
            const big = { mlflowMaxReplicas: "2", postgresMemoryLimit: "2Gi", mlflowDbPoolSize: "5", mlflowDbMaxOverflow: "36" };
            expect(() => parse({ ...big, postgresMaxConnections: "409" })).to.throw(/= 400 exceeds .*\(409\) minus 10/);
            expect(parse({ ...big, postgresMaxConnections: "410" }).postgres.maxConnections, "exactly at the budget").to.equal(410);
            // Small pools count in full: 2 x 2 x 4 x (5 + 10) = 240.
            expect(parse({ ...big, postgresMaxConnections: "250", mlflowDbMaxOverflow: "10" }).mlflow.maxReplicas).to.equal(2);
            expect(() => parse({ ...big, postgresMaxConnections: "249", mlflowDbMaxOverflow: "10" })).to.throw(/= 240 exceeds/);
        });

        it("reads where the schema rollout reaches the API server, IPv4 and IPv6, and MLflow's telemetry off by default", () => {
            expect(parse({}).network.apiServer, "minikube's API server listens on 8443").to.deep.equal({ cidrs: ["0.0.0.0/0", "::/0"], port: 8443 });
            expect(parse({}, "dev").network.apiServer).to.deep.equal({ cidrs: ["0.0.0.0/0", "::/0"], port: 443 });
            const narrowed = parse({ kubeApiServerCidrs: "192.168.49.2/32, fd00::1/128", kubeApiServerPort: "6443" }).network.apiServer;
            expect(narrowed).to.deep.equal({ cidrs: ["192.168.49.2/32", "fd00::1/128"], port: 6443 });
            expect(parse({ kubeApiServerPort: "1" }).network.apiServer.port).to.equal(1);
            expect(parse({ kubeApiServerPort: "65535" }).network.apiServer.port).to.equal(65535);
            expect(parse({}).mlflow.telemetry).to.equal(false);
            expect(parse({}, "dev").mlflow.telemetry).to.equal(false);
            expect(parse({ mlflowTelemetry: "true" }).mlflow.telemetry).to.equal(true);
        });

        it("treats an empty optional value as unset", () => {
            const c = parse({ kubeconfig: "", awsEndpoint: "", ingressHost: "" });
            expect(c.kubeconfig).to.equal(undefined);
            expect(c.aws.endpoint).to.equal(undefined);
            expect(c.mlflow.ingress).to.equal(undefined);
        });
    });
});
