/**
 * Every pinned version in one place. The deployment, the tests and the contract
 * harness all read this module, so a version bump is one edit.
 */

/** MLflow release served by the tracking server and installed by the contract tests. */
export const MLFLOW_VERSION = "3.17.2";

/**
 * The `-full` variant carries the PostgreSQL driver (psycopg2) and boto3; the plain
 * image has neither and fails at the first database or S3 call.
 */
export const MLFLOW_IMAGE = `ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}-full`;

/**
 * The MLflow release before {@link MLFLOW_VERSION}, which the contract tests upgrade from: data
 * created by it must survive this stack's migration Job and server.
 */
export const MLFLOW_PREVIOUS_RELEASE = "3.16.1";

/** PostgreSQL major.minor of the metadata store. */
export const POSTGRES_VERSION = "17.6";

/**
 * The major version, which a data directory is tied to: a new major needs a dump and restore
 * (the data guard refuses it otherwise).
 */
export const POSTGRES_MAJOR = POSTGRES_VERSION.split(".")[0]!;

/** Official Docker Library image (Debian based, runs as uid 999). */
export const POSTGRES_IMAGE = `docker.io/library/postgres:${POSTGRES_VERSION}-bookworm`;

/** uid/gid of the `postgres` user inside the official Debian-based image. */
export const POSTGRES_UID = 999;

/**
 * uid/gid the MLflow container runs as. Above 10000 so it never maps to a user of the
 * node (kube-linter and checkov both flag low uids).
 */
export const MLFLOW_UID = 10001;
