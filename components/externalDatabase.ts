/**
 * A PostgreSQL the team already runs (RDS, Cloud SQL, a database team's cluster) in place of the
 * in-cluster StatefulSet: the login in a Secret (from the stack's encrypted config, or a Secret
 * another tool keeps), the CA that signed the server's certificate in a ConfigMap, and the
 * connection every client (server, migration Job, backups, restores) uses, always over TLS.
 *
 * The databases must exist and be owned by the login role; the migration Job creates MLflow's
 * schemas in them. Nothing here can delete them: `pulumi destroy` removes only the Secret and
 * the ConfigMap.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { EXTERNAL_SECRET_KEYS, ExternalDatabase as ExternalDatabaseConfig } from "./config";
import { labels } from "./kube";
import { DATABASE_CA_FILE, DatabaseConnection } from "./postgres";
import { MLFLOW_VERSION } from "./versions";

/** Arguments of {@link ExternalDatabase}. */
export interface ExternalDatabaseArgs {
    /** Namespace of the Secret and the ConfigMap (and of an existing Secret). */
    readonly namespace: pulumi.Input<string>;
    /** The validated `database*` keys. */
    readonly database: ExternalDatabaseConfig;
    /** The login role's password (`databasePassword`, a secret); required when the login comes from config. */
    readonly password?: pulumi.Input<string>;
}

/** The login and CA of an external PostgreSQL, and how clients reach it. */
export class ExternalDatabase extends pulumi.ComponentResource {
    /** Host name or address, as configured. */
    public readonly host: string;
    public readonly port: number;
    /** Name of the Secret with the login (keys in {@link EXTERNAL_SECRET_KEYS}). */
    public readonly secretName: pulumi.Output<string>;
    /** The password when the program holds it (a secret), for the pods' checksum; undefined with an existing Secret. */
    public readonly password?: pulumi.Output<string>;
    /** How clients reach the databases and log in. */
    public readonly connection: DatabaseConnection;

    constructor(name: string, args: ExternalDatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-k8s:kubernetes:ExternalDatabase", name, {}, opts);
        const child = { parent: this };
        const db = args.database;
        const meta = { namespace: args.namespace, labels: labels(name, "database", MLFLOW_VERSION) };
        this.host = db.host;
        this.port = db.port;

        if (db.credentials.source === "config") {
            if (args.password === undefined) {
                throw new Error("ExternalDatabase: the login comes from config but no password was given (databasePassword)");
            }
            this.password = pulumi.secret(pulumi.output(args.password));
            const secret = new k8s.core.v1.Secret(`${name}-credentials`, {
                metadata: meta,
                type: "Opaque",
                stringData: { [EXTERNAL_SECRET_KEYS.username]: db.credentials.username, [EXTERNAL_SECRET_KEYS.password]: this.password },
            }, child);
            this.secretName = secret.metadata.name;
        } else {
            // Read, never managed: a missing Secret fails the update here, not later in a pod.
            const existing = k8s.core.v1.Secret.get(`${name}-existing-credentials`,
                pulumi.interpolate`${args.namespace}/${db.credentials.secretName}`, child);
            this.secretName = existing.metadata.name;
        }

        const ca = db.caCertificate === undefined ? undefined : new k8s.core.v1.ConfigMap(`${name}-ca`, {
            metadata: meta,
            // A CA certificate is public: a ConfigMap, not a Secret.
            data: { [DATABASE_CA_FILE]: db.caCertificate.trim() + "\n" },
        }, child);

        this.connection = {
            host: db.host,
            port: db.port,
            trackingDatabase: db.trackingDatabase,
            authDatabase: db.authDatabase,
            secretName: this.secretName,
            usernameKey: EXTERNAL_SECRET_KEYS.username,
            passwordKey: EXTERNAL_SECRET_KEYS.password,
            tls: { sslMode: db.sslMode, caConfigMapName: ca?.metadata.name },
        };
        this.registerOutputs({ host: this.host, port: this.port, secretName: this.secretName });
    }
}
