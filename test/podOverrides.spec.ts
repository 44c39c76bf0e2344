/**
 * Escape hatches (README, "Escape hatches"): each key validated before anything is created, absent
 * by default, and applied to every pod the program makes when set. The variant run sets them all,
 * so the Pod Security, schema, policy, preview and replacement specs cover them as well.
 */
import { expect } from "chai";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, PROJECT, parseConfig } from "../components/config";
import { PodOverrides, WORKLOADS, isCredentialName, isReservedEnvName, mirroredImage, withPodOverrides } from "../components/podOverrides";
import { MLFLOW_IMAGE, POSTGRES_IMAGE } from "../components/versions";
import { podTemplates } from "../policy/checks/podSecurity";
import { VARIANT, runProgram, stackConfig } from "./harness";
import { expectRejected as expectRejectedBy } from "./support/configErrors";
import { RUN_LABELS, renderedRun } from "./support/runs";
import { kubernetesManifests } from "../scripts/render";

/** Parses a minikube stack's config with some keys replaced; `secret` lists keys set with --secret. */
function parse(overrides: Record<string, string | undefined>, secret: readonly string[] = []) {
    const config = stackConfig("minikube", overrides);
    return parseConfig((key) => config[`${PROJECT}:${key}`], (key) => secret.includes(key));
}

function expectRejected(overrides: Record<string, string>, key: string, allowed: RegExp, secret: readonly string[] = []): string {
    return expectRejectedBy(() => parse(overrides, secret), JSON.stringify(overrides), key, allowed);
}

const json = (v: unknown): string => JSON.stringify(v);

/** Every pod template of a rendered run, with its owner's name and all its containers. */
function templatesOf(objects: readonly any[]) {
    return objects.flatMap((o) => podTemplates(o).map((t) => ({
        owner: `${o.kind} ${o.metadata.name}`, kind: o.kind, metadata: (t as any).metadata ?? templateMetadata(o), spec: t.spec,
        containers: [...(t.spec.initContainers ?? []), ...t.spec.containers] as any[],
    })));
}

function templateMetadata(o: any): any {
    return (o.kind === "CronJob" ? o.spec.jobTemplate.spec.template : o.spec.template).metadata;
}

const NONE: PodOverrides = {
    env: [], imagePullSecrets: [], imageMirrors: {}, nodeSelector: {}, tolerations: [], topologySpreadConstraints: [], annotations: {}, labels: {},
};

describe("escape hatches", () => {
    describe("validation, before anything is created", () => {
        it("accepts every key empty: the stacks as shipped add nothing to a pod", () => {
            expect(parse({}).pods).to.deep.equal(NONE);
        });

        it("reads the variant's values, YAML scalars as strings", () => {
            const pods = parse({ ...stringValues(VARIANT), nodeSelector: json({ "node.example.com/gpu": true, zone: 3 }) }).pods;
            expect(pods.env.map((e) => e.name)).to.deep.equal(["HTTPS_PROXY", "NO_PROXY", "SENTRY_DSN"]);
            expect(pods.env[2]).to.deep.equal({
                name: "SENTRY_DSN", secretName: "observability", secretKey: "sentry-dsn", optional: true, workloads: ["tracking-server", "db-migration"],
            });
            expect(pods.imagePullSecrets).to.deep.equal(["registry-credentials"]);
            expect(pods.imageMirrors).to.deep.equal({ "ghcr.io": "registry.example.com/ghcr", "docker.io": "registry.example.com/dockerhub" });
            expect(pods.nodeSelector).to.deep.equal({ "node.example.com/gpu": "true", zone: "3" });
            expect(pods.tolerations).to.deep.equal([{ key: "dedicated", operator: "Equal", value: "ml", effect: "NoSchedule" }]);
            expect(pods.topologySpreadConstraints).to.deep.equal([{ maxSkew: 1, topologyKey: "topology.kubernetes.io/zone", whenUnsatisfiable: "ScheduleAnyway" }]);
        });

        describe("extraEnv", () => {
            it("refuses what is not a list of objects", () => {
                expectRejected({ extraEnv: "HTTPS_PROXY=http://proxy:3128" }, "extraEnv", /a list set in the stack file/);
                expectRejected({ extraEnv: json({ name: "A", value: "b" }) }, "extraEnv", /a list/);
                expectRejected({ extraEnv: json(["A=b"]) }, "extraEnv[0]", /an object \{ name, value \}/);
                expectRejected({ extraEnv: json([{ name: "A", value: "b", from: "x" }]) }, "extraEnv[0].from", /the fields are name, value, secretName, secretKey, optional/);
            });

            it("refuses names that are not environment variable names, or repeated", () => {
                expectRejected({ extraEnv: json([{ name: "1PROXY", value: "x" }]) }, "extraEnv[0].name", /letters, digits and '_'/);
                expectRejected({ extraEnv: json([{ name: "A", value: "x" }, { name: "A", value: "y" }]) }, "extraEnv[1] (A).name", /no other entry/);
            });

            it("refuses the names the program sets and the prefixes that carry identities or change what the servers run", () => {
                for (const name of [
                    "MLFLOW_TRACKING_URI", "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "HOME", "PATH", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL_S3", "PGPASSWORD", "PGHOST",
                    "POSTGRES_PASSWORD", "BACKUP_BUCKET",
                    // Read by MLflow or the servers though the program never sets them.
                    "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", "MLFLOW_REGISTRY_URI", "UVICORN_WORKERS", "GUNICORN_CMD_ARGS", "PYTHONPATH", "LD_PRELOAD",
                ]) {
                    expectRejected({ extraEnv: json([{ name, value: "x" }]) }, `extraEnv[0] (${name}).name`, /not a variable the program sets or reserves/);
                }
            });

            it("refuses $(NAME) in a value, which would copy the program's variables, its credentials among them", () => {
                for (const value of ["http://u:$(AWS_SECRET_ACCESS_KEY)@proxy:3128", "$(MLFLOW_DB_PASSWORD)", "x$(PGPASSWORD)"]) {
                    const message = expectRejected({ extraEnv: json([{ name: "HTTPS_PROXY", value }]) }, "extraEnv[0] (HTTPS_PROXY).value", /free of \$\(NAME\) references/);
                    expect(message).to.not.include(value);
                }
                expect(parse({ extraEnv: json([{ name: "TEMPLATE", value: "literal $$(NAME) and $HOME" }]) }).pods.env[0]).to.include({ value: "literal $$(NAME) and $HOME" });
            });

            it("refuses plain values when extraEnv was set with --secret: they would sit in pod specs in clear", () => {
                const message = expectRejected({ extraEnv: json([{ name: "HTTPS_PROXY", value: "http://proxy.internal:3128" }]) }, "extraEnv[0] (HTTPS_PROXY).value",
                    /set with --secret/, ["extraEnv"]);
                expect(message).to.not.include("proxy.internal");
                expect(parse({ extraEnv: json([{ name: "SENTRY_DSN", secretName: "s", secretKey: "k" }]) }, ["extraEnv"]).pods.env).to.have.length(1);
            });

            it("shows no value in any of its errors, only names", () => {
                const leak = "hunter2-do-not-print";
                for (const entry of [{ name: "A", value: leak, secretName: "s", secretKey: "k" }, { name: "A", value: leak, typo: leak }, { name: "A", value: { nested: leak } }]) {
                    let error: unknown;
                    try {
                        parse({ extraEnv: json([entry]) });
                    } catch (e) {
                        error = e;
                    }
                    expect(error, JSON.stringify(entry)).to.be.instanceOf(ConfigError);
                    expect((error as Error).message).to.not.include(leak);
                }
                const unparsable = expectRejected({ extraEnv: `[{"name": "A", "value": "${leak}"` }, "extraEnv", /a list/);
                expect(unparsable).to.not.include(leak);
            });

            it("sets a variable in the named workloads only", () => {
                expect(parse({ extraEnv: json([{ name: "SENTRY_DSN", secretName: "s", secretKey: "k", workloads: ["tracking-server", "db-migration"] }]) }).pods.env[0])
                    .to.deep.include({ workloads: ["tracking-server", "db-migration"] });
                expectRejected({ extraEnv: json([{ name: "A", value: "x", workloads: ["server"] }]) }, "extraEnv[0] (A).workloads", /among tracking-server, db-migration/);
                expectRejected({ extraEnv: json([{ name: "A", value: "x", workloads: [] }]) }, "extraEnv[0] (A).workloads", /a non-empty list/);
            });

            it("refuses a plain value for a name that reads like a credential, without printing the value", () => {
                for (const name of ["DATABRICKS_TOKEN", "OPENAI_API_KEY", "SMTP_PASSWORD", "CLIENT_SECRET", "HF_APIKEY", "GOOGLE_CREDENTIALS", "DB_PASS", "SENTRY_DSN", "KEY"]) {
                    const message = expectRejected({ extraEnv: json([{ name, value: "s3cr3t-value-42" }]) }, `extraEnv[0] (${name}).value`, /read from a Secret \(secretName and secretKey\)/);
                    expect(message, "the value stays out of the error").to.not.include("s3cr3t-value-42");
                }
                expect(parse({ extraEnv: json([{ name: "OPENAI_API_KEY", secretName: "openai", secretKey: "key" }]) }).pods.env).to.have.length(1);
                // Whole words only: these are not credentials.
                for (const name of ["TOKENIZERS_PARALLELISM", "KEYCLOAK_REALM", "PASSTHROUGH", "MONKEY_PATCH", "HTTPS_PROXY"]) {
                    expect(isCredentialName(name), name).to.equal(false);
                }
            });

            it("takes one source per variable, and a Secret's name and key in full", () => {
                expectRejected({ extraEnv: json([{ name: "A", value: "x", secretName: "s", secretKey: "k" }]) }, "extraEnv[0] (A).value", /one source per variable/);
                expectRejected({ extraEnv: json([{ name: "A", secretName: "s" }]) }, "extraEnv[0] (A).secretKey", /a key of that Secret/);
                expectRejected({ extraEnv: json([{ name: "A", secretName: "Bad_Secret", secretKey: "k" }]) }, "extraEnv[0] (A).secretName", /DNS-1123 subdomain/);
                expectRejected({ extraEnv: json([{ name: "A", secretName: "s", secretKey: "k", optional: "yes" }]) }, "extraEnv[0] (A).optional", /true .* or false/);
                expectRejected({ extraEnv: json([{ name: "A", value: "x", optional: true }]) }, "extraEnv[0] (A).optional", /only with secretName and secretKey/);
                expectRejected({ extraEnv: json([{ name: "A" }]) }, "extraEnv[0] (A).value", /a string, or secretName and secretKey/);
            });
        });

        it("imagePullSecrets: Secret names", () => {
            expectRejected({ imagePullSecrets: "registry-credentials,Bad_Name" }, "imagePullSecrets", /comma-separated list of Secret names/);
            expect(parse({ imagePullSecrets: " a, b.c " }).pods.imagePullSecrets).to.deep.equal(["a", "b.c"]);
        });

        it("imageMirrors: for each registry the program pulls from, a registry host with a port or a path, never a Docker Hub namespace or a URL", () => {
            for (const bad of ["mlflow", "https://registry.example.com", "Registry.Example.com", "registry.example.com/Mirror", "registry.example.com:port", "host:5000:5000", "registry.example.com/a--"]) {
                expectRejected({ imageMirrors: json({ "ghcr.io": bad }) }, "imageMirrors.ghcr.io", /a registry host with an optional port and path/);
            }
            for (const good of ["registry.example.com", "localhost:5000", "mirror:5000", "registry.example.com:5000/mirror/public", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ghcr",
                "harbor.example.com/proxy-cache/", "registry.example.com/docker__hub", "registry.example.com/docker--hub"]) {
                expect(() => parse({ imageMirrors: json({ "docker.io": good }) }), good).to.not.throw();
            }
            expect(parse({ imageMirrors: json({ "ghcr.io": "harbor.example.com/ghcr-proxy/" }) }).pods.imageMirrors, "a trailing slash is dropped")
                .to.deep.equal({ "ghcr.io": "harbor.example.com/ghcr-proxy" });
            expectRejected({ imageMirrors: json({ "quay.io": "registry.example.com" }) }, "imageMirrors.quay.io", /a registry the program pulls from \(ghcr.io, docker.io\)/);
            expectRejected({ imageMirrors: "registry.example.com" }, "imageMirrors", /a map/);
        });

        it("nodeSelector: a map of label keys to label values", () => {
            expectRejected({ nodeSelector: json(["pool=ml"]) }, "nodeSelector", /a map of strings/);
            expectRejected({ nodeSelector: json({ "bad key!": "x" }) }, "nodeSelector.bad key!", /a label key/);
            expectRejected({ nodeSelector: json({ pool: "has spaces" }) }, "nodeSelector.pool", /a label value/);
            expectRejected({ nodeSelector: json({ pool: { nested: 1 } }) }, "nodeSelector.pool", /a string/);
        });

        it("tolerations: Kubernetes's own rules", () => {
            expectRejected({ tolerations: json([{ key: "k", operator: "In", value: "v" }]) }, "tolerations[0].operator", /one of Exists, Equal/);
            expectRejected({ tolerations: json([{ key: "k", operator: "Exists", value: "v" }]) }, "tolerations[0].value", /absent with operator Exists/);
            expectRejected({ tolerations: json([{ operator: "Equal", value: "v" }]) }, "tolerations[0].key", /a taint key/);
            expectRejected({ tolerations: json([{ operator: "Exists" }]) }, "tolerations[0].key", /would let every pod onto any tainted node/);
            expectRejected({ tolerations: json([{ key: "k", value: "v", effect: "NoRun" }]) }, "tolerations[0].effect", /NoSchedule, PreferNoSchedule, NoExecute/);
            expectRejected({ tolerations: json([{ key: "k", value: "v", effect: "NoSchedule", tolerationSeconds: 30 }]) }, "tolerations[0].tolerationSeconds", /NoExecute only/);
            expect(parse({ tolerations: json([{ key: "k", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 }]) }).pods.tolerations)
                .to.deep.equal([{ key: "k", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 }]);
        });

        it("topologySpreadConstraints: skew, key and mode, one constraint per key", () => {
            expectRejected({ topologySpreadConstraints: json([{ maxSkew: 0, topologyKey: "kubernetes.io/hostname" }]) }, "topologySpreadConstraints[0].maxSkew", /at least 1/);
            expectRejected({ topologySpreadConstraints: json([{ maxSkew: 1 }]) }, "topologySpreadConstraints[0].topologyKey", /a node label key/);
            expectRejected({ topologySpreadConstraints: json([{ topologyKey: "zone", whenUnsatisfiable: "Never" }]) }, "topologySpreadConstraints[0].whenUnsatisfiable", /DoNotSchedule, ScheduleAnyway/);
            expectRejected({ topologySpreadConstraints: json([{ topologyKey: "zone", minDomains: 3 }]) }, "topologySpreadConstraints[0].minDomains", /DoNotSchedule only/);
            expectRejected({ topologySpreadConstraints: json([{ topologyKey: "zone" }, { topologyKey: "zone", whenUnsatisfiable: "DoNotSchedule" }]) },
                "topologySpreadConstraints[1].topologyKey", /a key no other constraint has/);
            expectRejected({ topologySpreadConstraints: json([{ topologyKey: "zone", labelSelector: {} }]) }, "topologySpreadConstraints[0].labelSelector", /the fields are/);
        });

        it("podAnnotations: never the program's own, never a change of confinement", () => {
            for (const key of ["checksum/config", "prometheus.io/port", "container.apparmor.security.beta.kubernetes.io/mlflow", "seccomp.security.alpha.kubernetes.io/pod"]) {
                expectRejected({ podAnnotations: json({ [key]: "unconfined" }) }, `podAnnotations.${key}`, /not one the program sets .* nor one that changes a container's confinement/);
            }
            expect(parse({ podAnnotations: json({ "cluster-autoscaler.kubernetes.io/safe-to-evict": "false" }) }).pods.annotations)
                .to.deep.equal({ "cluster-autoscaler.kubernetes.io/safe-to-evict": "false" });
        });

        it("podLabels: never the program's selectors nor Kubernetes's prefixes", () => {
            for (const key of ["app.kubernetes.io/name", "app.kubernetes.io/team", "kubernetes.io/arch", "node-role.kubernetes.io/x", "batch.kubernetes.io/job-name", "k8s.io/x"]) {
                expectRejected({ podLabels: json({ [key]: "x" }) }, `podLabels.${key}`, /not under app.kubernetes.io\//);
            }
            expectRejected({ podLabels: json({ team: "x".repeat(64) }) }, "podLabels.team", /at most 63/);
        });

        it("lists every problem at once, so one run shows them all", () => {
            let error: unknown;
            try {
                parse({ imageMirrors: json({ "ghcr.io": "mlflow" }), podLabels: json({ "app.kubernetes.io/name": "x" }), tolerations: json([{ key: "k", operator: "In" }]) });
            } catch (e) {
                error = e;
            }
            expect(error).to.be.instanceOf(ConfigError);
            expect((error as ConfigError).problems.map((p) => p.split(" = ")[0])).to.include.members([
                `${PROJECT}:imageMirrors.ghcr.io`, `${PROJECT}:podLabels.app.kubernetes.io/name`, `${PROJECT}:tolerations[0].operator`,
            ]);
        });

        it("knows, in a program run, that extraEnv was set with --secret, and refuses its plain values there", async () => {
            const extraEnv = json([{ name: "HTTPS_PROXY", value: "http://user:pw@proxy.internal:3128" }]);
            let error: unknown;
            try {
                await runProgram("minikube", { extraEnv }, { secretConfig: ["extraEnv"] });
            } catch (e) {
                error = e;
            }
            expect(String(error)).to.include(`${PROJECT}:extraEnv[0] (HTTPS_PROXY).value`).and.not.include("proxy.internal");
            const plain = await runProgram("minikube", { extraEnv });
            expect(plain.resources.length, "the same value set without --secret").to.be.above(10);
        });

        it("refuses a bad value in a program run before any resource is registered", async () => {
            let error: unknown;
            try {
                await runProgram("minikube", { extraEnv: json([{ name: "PGHOST", value: "elsewhere" }]) });
            } catch (e) {
                error = e;
            }
            expect(String(error)).to.include(`${PROJECT}:extraEnv[0] (PGHOST).name`);
        });
    });

    describe("absent", () => {
        for (const label of RUN_LABELS.filter((l) => l !== "variant")) {
            it(`adds nothing to any pod of the ${label} stack`, async () => {
                const { objects } = await renderedRun(label);
                for (const t of templatesOf(objects)) {
                    expect(t.spec, t.owner).to.not.have.any.keys("nodeSelector", "tolerations", "topologySpreadConstraints", "imagePullSecrets");
                    for (const c of t.containers) {
                        expect([MLFLOW_IMAGE, POSTGRES_IMAGE], `${t.owner} ${c.name}`).to.include(c.image);
                    }
                }
            });
        }
    });

    describe("present (the variant sets them all)", () => {
        it("reaches every pod template: server, PostgreSQL, migration, schema rollout, backups, restores, gc, model servers and their grants", async () => {
            const { objects } = await renderedRun("variant");
            const templates = templatesOf(objects);
            expect(templates.map((t) => t.owner)).to.include.members([
                "Deployment mlflow-tracking-server", "StatefulSet mlflow-postgres", "CronJob mlflow-db-backup", "CronJob mlflow-db-backup-restore",
                "CronJob mlflow-gc", "CronJob mlflow-serving-grants", "Deployment mlflow-model-iris", "Deployment mlflow-model-churn",
            ]);
            // The migration Job and the schema rollout's quiesce and resume Jobs (auto-named).
            expect(templates.filter((t) => t.kind === "Job").map((t) => t.owner.replace(/-[0-9a-f]{8}$/, "")).sort(), "the Jobs")
                .to.deep.equal(["Job mlflow-migrate", "Job mlflow-rollout-quiesce", "Job mlflow-rollout-resume"]);
            for (const t of templates) {
                expect(t.spec.nodeSelector, t.owner).to.deep.equal({ "kubernetes.io/arch": "amd64", "node.example.com/pool": "ml" });
                expect(t.spec.tolerations, t.owner).to.deep.equal([{ key: "dedicated", operator: "Equal", value: "ml", effect: "NoSchedule" }]);
                expect(t.spec.imagePullSecrets, t.owner).to.deep.equal([{ name: "registry-credentials" }]);
                expect(t.metadata.labels.team, t.owner).to.equal("ml-platform");
                expect(t.metadata.annotations["example.com/team"], t.owner).to.equal("ml-platform");
                const workload = t.metadata.labels["app.kubernetes.io/name"];
                for (const c of t.containers) {
                    const extra = (c.env as any[]).filter((e) => ["HTTPS_PROXY", "NO_PROXY", "SENTRY_DSN"].includes(e.name));
                    expect(extra, `${t.owner} ${c.name}`).to.deep.equal([
                        { name: "HTTPS_PROXY", value: "http://proxy.example.com:3128" },
                        { name: "NO_PROXY", value: ".svc,.cluster.local,10.0.0.0/8" },
                        // Scoped by `workloads` to the server and the migration Job.
                        ...(["tracking-server", "db-migration"].includes(workload)
                            ? [{ name: "SENTRY_DSN", valueFrom: { secretKeyRef: { name: "observability", key: "sentry-dsn", optional: true } } }] : []),
                    ]);
                    expect(c.image, `${t.owner} ${c.name}`).to.be.oneOf([
                        `registry.example.com/ghcr/${MLFLOW_IMAGE.slice("ghcr.io/".length)}`,
                        `registry.example.com/dockerhub/${POSTGRES_IMAGE.slice("docker.io/".length)}`,
                        "registry.example.com/models/iris:1.4.2",
                    ]);
                }
            }
        });

        it("spreads each workload's own pods: the constraint selects its selector labels, and a Deployment's rollout counts per revision", async () => {
            const { objects } = await renderedRun("variant");
            for (const o of objects.filter((x) => ["Deployment", "StatefulSet"].includes(x.kind))) {
                const [constraint] = o.spec.template.spec.topologySpreadConstraints;
                expect(constraint.labelSelector.matchLabels, o.metadata.name).to.deep.equal(o.spec.selector.matchLabels);
                expect(constraint.matchLabelKeys, o.metadata.name).to.deep.equal(o.kind === "Deployment" ? ["pod-template-hash"] : undefined);
                expect(constraint).to.include({ maxSkew: 1, topologyKey: "topology.kubernetes.io/zone", whenUnsatisfiable: "ScheduleAnyway" });
            }
        });

        it("names every kind of pod the program makes in WORKLOADS, which extraEnv's workloads choose from", async () => {
            const { objects } = await renderedRun("variant");
            const kinds = new Set(templatesOf(objects).map((t) => t.metadata.labels["app.kubernetes.io/name"]));
            expect([...kinds].sort()).to.deep.equal([...WORKLOADS].sort());
        });

        it("keeps what the program sets: selectors, the checksum annotation, its environment first", async () => {
            const { objects } = await renderedRun("variant");
            const server = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "mlflow-tracking-server");
            const annotations = server.spec.template.metadata.annotations;
            expect(annotations).to.include.keys("checksum/config", "example.com/team");
            expect(server.spec.selector.matchLabels).to.deep.equal({ "app.kubernetes.io/name": "tracking-server", "app.kubernetes.io/instance": "mlflow" });
            const env = server.spec.template.spec.containers[0].env.map((e: any) => e.name);
            expect(env.slice(-3), "extra variables come last").to.deep.equal(["HTTPS_PROXY", "NO_PROXY", "SENTRY_DSN"]);
        });

        it("reserves every variable name any container of any stack sets, so an extra one can never collide", async () => {
            const external = await runProgram("minikube", {
                databaseMode: "external", databaseHost: "10.0.40.7", databaseUsername: "mlflow_app", databasePassword: "pod-overrides-spec-only",
                databaseSslMode: "verify-full", databaseCaCertificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", databaseMaxConnections: 400,
                awsCredentials: "irsa", eksOidcProviderArn: "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
            });
            const extra = new Set(["HTTPS_PROXY", "NO_PROXY", "SENTRY_DSN"]);
            const names = new Set<string>();
            const rendered = [...await Promise.all(RUN_LABELS.map((l) => renderedRun(l).then((r) => r.objects))), kubernetesManifests(external).map((m) => m.object)];
            for (const objects of rendered) {
                for (const t of templatesOf(objects)) {
                    for (const c of t.containers) {
                        for (const e of c.env ?? []) {
                            names.add(e.name);
                        }
                    }
                }
            }
            const unreserved = [...names].filter((n) => !extra.has(n) && !isReservedEnvName(n));
            expect(unreserved, "set by the program but not reserved in components/podOverrides.ts").to.deep.equal([]);
            expect(names.size).to.be.above(30);
        });
    });

    describe("withPodOverrides", () => {
        const overrides: PodOverrides = { ...NONE, env: [{ name: "TZ", value: "UTC" }], imageMirrors: { "docker.io": "mirror.example.com" } };

        it("leaves resources without a pod template alone, and every resource when nothing is set", () => {
            const service = { spec: { ports: [{ port: 80 }] } };
            expect(withPodOverrides("kubernetes:core/v1:Service", service, overrides)).to.equal(service);
            const job = { spec: { template: { spec: { containers: [{ name: "a", image: MLFLOW_IMAGE }] } } } };
            expect(withPodOverrides("kubernetes:batch/v1:Job", job, NONE)).to.equal(job);
        });

        it("reaches into a CronJob's job template and through inputs that are still Outputs", async () => {
            const cronJob = {
                spec: { jobTemplate: { spec: { template: { spec: { containers: pulumi.output([{ name: "a", image: POSTGRES_IMAGE, env: pulumi.output([{ name: "X", value: "1" }]) }]) } } } } },
            };
            const out: any = withPodOverrides("kubernetes:batch/v1:CronJob", cronJob, overrides);
            const containers = await new Promise<any[]>((resolve) => (out.spec.jobTemplate.spec.template.spec.containers as pulumi.Output<any[]>).apply(resolve));
            const env = await new Promise<any[]>((resolve) => pulumi.output(containers[0].env).apply(resolve));
            expect(containers[0].image).to.equal(`mirror.example.com/${POSTGRES_IMAGE.slice("docker.io/".length)}`);
            expect(env).to.deep.equal([{ name: "X", value: "1" }, { name: "TZ", value: "UTC" }]);
        });

        it("mirrors only the program's images, keeping their paths and pinned tags", () => {
            const mirrors = { "ghcr.io": "registry.example.com/ghcr", "docker.io": "localhost:5000" };
            expect(mirroredImage(MLFLOW_IMAGE, mirrors)).to.equal(`registry.example.com/ghcr/${MLFLOW_IMAGE.slice("ghcr.io/".length)}`);
            expect(mirroredImage(POSTGRES_IMAGE, mirrors)).to.equal(`localhost:5000/library/postgres:${POSTGRES_IMAGE.split(":")[1]}`);
            expect(mirroredImage(POSTGRES_IMAGE, { "ghcr.io": "registry.example.com/ghcr" }), "an upstream without a mirror").to.equal(POSTGRES_IMAGE);
            expect(mirroredImage("registry.example.com/models/iris:1.4.2", { "registry.example.com": "mirror.example.com" })).to.equal("registry.example.com/models/iris:1.4.2");
            expect(mirroredImage(MLFLOW_IMAGE, {})).to.equal(MLFLOW_IMAGE);
        });
    });
});

/** The harness's override values as the SDK hands them to the program: strings. */
function stringValues(values: Readonly<Record<string, unknown>>): Record<string, string> {
    return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, String(v)]));
}
