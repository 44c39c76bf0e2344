/**
 * Turns the Kubernetes objects the program rendered (recorded by the mocks harness) into local
 * processes: a container's command, args and environment with every `secretKeyRef` resolved from
 * the rendered Secrets, its volumes materialised from the rendered ConfigMaps and Secrets, and two
 * substitutions, both recorded so the tests can show they happened:
 *
 * - credentials: the mocks' placeholder values (access key, generated passwords) are replaced with
 *   the real ones the tests created or generated, wherever a Secret holds them;
 * - addresses: a Service's cluster DNS name with its port (`mlflow-postgres.mlflow.svc.cluster.local:5432`)
 *   is replaced with the loopback address of the process standing in for it (`127.0.0.1:<port>`),
 *   in args, environment values and mounted files alike; so is libpq's `PGHOST`/`PGPORT` pair,
 *   which names the same address in two variables.
 */
import * as fs from "fs";
import * as path from "path";
import type { ProgramRun, RecordedResource } from "../../harness";
import type { Mount, SandboxSpec } from "./sandbox";

export const TYPES = Object.freeze({
    secret: "kubernetes:core/v1:Secret",
    configMap: "kubernetes:core/v1:ConfigMap",
    service: "kubernetes:core/v1:Service",
    job: "kubernetes:batch/v1:Job",
    deployment: "kubernetes:apps/v1:Deployment",
    statefulSet: "kubernetes:apps/v1:StatefulSet",
    cronJob: "kubernetes:batch/v1:CronJob",
});

/** What an image contributes to a container run here: its environment (PATH first) and files. */
export interface ImageRuntime {
    readonly env: Record<string, string>;
    readonly mounts?: readonly Mount[];
}

/** A container made ready to run as a local process. */
export interface LocalContainer {
    readonly name: string;
    /** The rendered container, unchanged. */
    readonly spec: any;
    /** command followed by args, `$(VAR)` references expanded, addresses mapped. */
    readonly argv: string[];
    /** The container's environment on top of the image's, resolved and mapped. */
    readonly env: Record<string, string>;
    readonly sandbox: SandboxSpec;
}

/** The rendered objects of one program run, with the substitutions the tests need. */
export class Rendered {
    /** Mock value → real value, for credentials. */
    private readonly credentials = new Map<string, string>();
    /** Cluster address → loopback address. */
    private readonly addresses = new Map<string, string>();
    /** How often each address mapping was applied. */
    readonly addressUses = new Map<string, number>();

    constructor(readonly run: ProgramRun) {}

    /** Every recorded resource of a Kubernetes type. */
    all(type: string): RecordedResource[] {
        return this.run.ofType(type);
    }

    /** The one object of `type` named `name` (its final name, auto-naming included). */
    named(type: string, name: string): RecordedResource {
        const found = this.all(type).filter((r) => r.state?.metadata?.name === name);
        if (found.length !== 1) {
            throw new Error(`expected one ${type} named ${name}, found ${found.length}`);
        }
        return found[0]!;
    }

    /** The one object of `type` whose logical (Pulumi) name matches. */
    one(type: string, logicalName: RegExp): RecordedResource {
        return this.run.one(type, logicalName);
    }

    /**
     * Takes over the substitutions of an earlier render of the same stack (a new version of the
     * program against the same cloud resources and database): the mocks' placeholders are the
     * same in every run, so the same real credentials and addresses apply.
     */
    adopt(earlier: Rendered): void {
        for (const [mock, real] of earlier.credentials) {
            this.credentials.set(mock, real);
        }
        for (const [from, to] of earlier.addresses) {
            this.mapAddress(from, to);
        }
    }

    /** Replace a credential the mocks generated with a real one. */
    substituteCredential(mockValue: string, realValue: string): void {
        if (!this.run.credentials.includes(mockValue)) {
            throw new Error("substituteCredential: not a credential the mocks generated");
        }
        this.credentials.set(mockValue, realValue);
    }

    /** Map a Service's cluster address (`name.ns.svc.cluster.local:port`) to a loopback address. */
    mapAddress(clusterAddress: string, local: string): void {
        this.addresses.set(clusterAddress, local);
        this.addressUses.set(clusterAddress, 0);
    }

    /** The cluster address of a rendered Service and one of its ports (by name, or the only one). */
    serviceAddress(serviceName: string, portName?: string): string {
        const svc = this.named(TYPES.service, serviceName);
        const ports: any[] = svc.inputs.spec.ports;
        const port = portName === undefined ? (ports.length === 1 ? ports[0] : undefined) : ports.find((p) => p.name === portName);
        if (port === undefined) {
            throw new Error(`service ${serviceName} has no single port${portName ? ` named ${portName}` : ""}`);
        }
        return `${serviceName}.${svc.state.metadata.namespace}.svc.cluster.local:${port.port}`;
    }

    /**
     * Applies the address mappings to a value, and `extra` (mappings for one container only) after
     * them.
     */
    mapValue(value: string, extra?: ReadonlyMap<string, string>): string {
        let out = value;
        for (const [from, to] of [...this.addresses, ...(extra ?? [])]) {
            if (out.includes(from)) {
                out = out.split(from).join(to);
                this.addressUses.set(from, (this.addressUses.get(from) ?? 0) + 1);
            }
        }
        return out;
    }

    /** A Secret's data (stringData and decoded data), credentials substituted. */
    secretData(name: string): Record<string, string> {
        const s = this.named(TYPES.secret, name);
        const out: Record<string, string> = {};
        for (const [k, v] of Object.entries<string>(s.inputs.data ?? {})) {
            out[k] = Buffer.from(v, "base64").toString("utf8");
        }
        Object.assign(out, s.inputs.stringData ?? {});
        for (const [k, v] of Object.entries(out)) {
            out[k] = this.credentials.get(v) ?? v;
        }
        return out;
    }

    /** One key of a Secret; throws when missing. */
    secretValue(name: string, key: string): string {
        const value = this.secretData(name)[key];
        if (value === undefined) {
            throw new Error(`secret ${name} has no key ${key}`);
        }
        return value;
    }

    /** A ConfigMap's data, addresses mapped. */
    configMapData(name: string): Record<string, string> {
        const cm = this.named(TYPES.configMap, name);
        const out: Record<string, string> = {};
        for (const [k, v] of Object.entries<string>(cm.inputs.data ?? {})) {
            out[k] = this.mapValue(v);
        }
        return out;
    }

    /**
     * Resolves container `containerName` of a pod template for local execution.
     * @param template the workload's `spec.template`
     * @param volumeRoot where this pod's volumes live on the host (one directory per volume)
     * @param claimRoot where the workload's persistent volume claims live (kept across pods)
     * @param images what each image contributes (PATH and the like, which the pod's env overrides), by image
     * @param addresses cluster address → loopback address, for this container only: a Service that
     *   other workloads call but whose own pods name it as something else (the tracking server's
     *   `--allowed-hosts` holds its Service's address, which must stay as rendered)
     */
    container(workload: RecordedResource, containerName: string, volumeRoot: string, options: {
        claimRoot?: string; images: Readonly<Record<string, ImageRuntime>>; addresses?: ReadonlyMap<string, string>;
    }): LocalContainer {
        const map = (v: string): string => this.mapValue(v, options.addresses);
        const template = workload.inputs.spec.template;
        const pod = template.spec;
        const all = [...(pod.initContainers ?? []), ...pod.containers];
        const c = all.find((x: any) => x.name === containerName);
        if (c === undefined) {
            throw new Error(`${workload.name} has no container ${containerName}`);
        }
        if (!Array.isArray(c.command) || c.command.length === 0) {
            throw new Error(`${workload.name}/${containerName}: no command; the image's entrypoint cannot be reproduced`);
        }

        const image = options.images[c.image];
        if (image === undefined) {
            throw new Error(`${workload.name}/${containerName}: image ${c.image} is not one the tests know how to stand in for`);
        }
        const env: Record<string, string> = { ...image.env };
        const expand = (v: string): string => v.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name?: string) =>
            name === undefined ? "$" : (env[name] ?? m));
        for (const e of c.env ?? []) {
            if (e.value !== undefined) {
                env[e.name] = map(expand(String(e.value)));
            } else if (e.valueFrom?.secretKeyRef) {
                env[e.name] = map(this.secretValue(e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key));
            } else if (e.valueFrom?.configMapKeyRef) {
                const data = this.configMapData(e.valueFrom.configMapKeyRef.name);
                const value = data[e.valueFrom.configMapKeyRef.key];
                if (value === undefined) {
                    throw new Error(`${containerName}: configMap key ${e.valueFrom.configMapKeyRef.key} missing`);
                }
                env[e.name] = value;
            } else {
                throw new Error(`${containerName}: env ${e.name} uses a source the tests do not support`);
            }
        }
        if (c.envFrom !== undefined) {
            throw new Error(`${containerName}: envFrom is not supported by the contract tests`);
        }
        if (env.PGHOST !== undefined) {
            const local = map(`${env.PGHOST}:${env.PGPORT ?? "5432"}`);
            const m = /^(127\.0\.0\.1):(\d+)$/.exec(local);
            if (m !== null) {
                env.PGHOST = m[1]!;
                env.PGPORT = m[2]!;
            }
        }

        const mounts: Mount[] = [];
        const written: string[] = [];
        for (const vm of c.volumeMounts ?? []) {
            const volume = (pod.volumes ?? []).find((v: any) => v.name === vm.name);
            const claim = (workload.inputs.spec.volumeClaimTemplates ?? []).find((t: any) => t.metadata?.name === vm.name);
            let source: string;
            if (volume?.emptyDir !== undefined) {
                source = path.join(volumeRoot, vm.name);
                fs.mkdirSync(source, { recursive: true, mode: 0o777 });
            } else if (volume?.configMap !== undefined || volume?.secret !== undefined) {
                source = path.join(volumeRoot, vm.name);
                fs.mkdirSync(source, { recursive: true });
                const files = volume.configMap !== undefined
                    ? this.configMapData(volume.configMap.name)
                    : this.secretData(volume.secret.secretName);
                const mode = (volume.configMap ?? volume.secret).defaultMode ?? 0o644;
                // With `items`, only the listed keys, each at its path (subdirectories allowed), as the kubelet projects them.
                const items: Array<{ key: string; path: string }> | undefined = (volume.configMap ?? volume.secret).items;
                const placed = items === undefined ? Object.keys(files).map((key) => ({ key, path: key })) : items;
                for (const item of placed) {
                    const content = files[item.key];
                    if (content === undefined) {
                        throw new Error(`${containerName}: volume ${vm.name} projects key ${item.key}, which its source does not hold`);
                    }
                    const target = path.join(source, item.path);
                    fs.mkdirSync(path.dirname(target), { recursive: true });
                    written.push(content);
                    fs.writeFileSync(target, content, { mode });
                    fs.chmodSync(target, mode);
                }
            } else if (claim !== undefined && options.claimRoot !== undefined) {
                source = path.join(options.claimRoot, vm.name);
                fs.mkdirSync(source, { recursive: true, mode: 0o700 });
            } else if (volume?.persistentVolumeClaim !== undefined && options.claimRoot !== undefined) {
                // One directory per claim name, kept across pods as the volume is.
                source = path.join(options.claimRoot, volume.persistentVolumeClaim.claimName);
                fs.mkdirSync(source, { recursive: true, mode: 0o700 });
            } else {
                throw new Error(`${containerName}: volume ${vm.name} is of a kind the tests do not support`);
            }
            if (vm.subPath !== undefined) {
                throw new Error(`${containerName}: subPath mounts are not supported by the contract tests`);
            }
            mounts.push({ target: vm.mountPath, source, readOnly: vm.readOnly === true });
        }

        // The sandbox mounts volumes over the host's paths: the image's programs must not live there.
        for (const dir of (image.env.PATH ?? "").split(":")) {
            const hidden = mounts.find((m) => dir === m.target || dir.startsWith(`${m.target}/`));
            if (hidden !== undefined) {
                throw new Error(`${containerName}: ${dir} would be hidden by the volume mounted at ${hidden.target}; ` +
                    "run the tests from a checkout outside the container's mount paths");
            }
        }
        const securityContext = { ...(pod.securityContext ?? {}), ...(c.securityContext ?? {}) };
        if (securityContext.runAsUser === undefined) {
            throw new Error(`${containerName}: no runAsUser; the image's default user cannot be reproduced`);
        }
        const argv = [...c.command, ...(c.args ?? [])].map((a: string) => map(expand(String(a))));
        // A placeholder that reached a process would make a test pass or fail for the wrong reason.
        const values = [...Object.values(env), ...argv, ...written];
        for (const mock of this.run.credentials) {
            if (values.some((v) => v.includes(mock))) {
                throw new Error(`${containerName}: a credential placeholder of the mocks reached the container`);
            }
        }
        return {
            name: containerName,
            spec: c,
            argv,
            env,
            sandbox: {
                mounts: [...mounts, ...(image.mounts ?? [])],
                uid: securityContext.runAsUser,
                gid: securityContext.runAsGroup ?? securityContext.runAsUser,
                workingDir: c.workingDir ?? "/",
                hostname: `${workload.state.metadata.name}-0`,
            },
        };
    }
}
