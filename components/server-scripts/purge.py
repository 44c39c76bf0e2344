"""Garbage collection: MLflow's `mlflow gc`, with the artifacts deleted straight from the artifact store.

    python purge.py <tracking database URI> <artifacts destination> <older than>

Permanently deletes the runs, experiments and logged models that users deleted more than
<older than> ago (MLflow's format: 30d, 12h, 1d12h): first their artifacts, then their rows. Records
that are not deleted, or deleted more recently, are not touched.

Runs logged through the server's artifact proxy have `mlflow-artifacts:/<experiment>/<run>/artifacts`
locations. Left to itself, `mlflow gc` deletes those through a tracking server's HTTP API, as a
signed-in user. Here they are resolved the way the server resolves them, to the same key under
<artifacts destination> (the server's `--artifacts-destination`), and deleted there with the
server's own S3 identity: no MLflow credential, no call to the server. A location that resolves to
nothing below the destination stops the run before anything of that record is deleted.

S3's DeleteObjects answers 200 even when it deleted none of the keys, listing the failures in the
body; MLflow's own deletion does not read them, and would then delete the rows of a run whose
objects are all still there, out of anyone's sight. Here each failed key is deleted again on its
own (which raises when it fails), and the location is listed once more: the rows go only once no
object is left.
"""

import posixpath
import sys
import urllib.parse

# What `mlflow server --serve-artifacts` gives new experiments when no other root is set: MLflow's
# gc creates its store with this root too, so anything it creates matches what the server would.
SERVER_DEFAULT_ARTIFACT_ROOT = "mlflow-artifacts:/"


def log(message):
    print(f"gc: {message}", flush=True)


def proxied_location(artifact_uri, destination):
    """Where the server's proxy stores an `mlflow-artifacts:` location: its path under the destination."""
    path = urllib.parse.urlparse(artifact_uri).path.lstrip("/")
    segments = path.split("/")
    if path == "" or any(s in ("", ".", "..") for s in segments):
        raise ValueError(f"refusing to delete {artifact_uri!r}: it does not name a location below {destination}")
    return posixpath.join(destination.rstrip("/"), path)


class CheckedDeletion:
    """The artifact repository of one location, whose deletion checks what S3 did."""

    def __init__(self, repository):
        self.repository = repository

    def __repr__(self):
        return repr(self.repository)

    def delete_artifacts(self, artifact_path=None):
        from botocore.exceptions import ClientError
        from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

        if artifact_path is not None or not isinstance(self.repository, S3ArtifactRepository):
            return self.repository.delete_artifacts(artifact_path)
        bucket, path = self.repository.parse_s3_compliant_uri(self.repository.artifact_uri)
        prefix = path.rstrip("/") + "/"
        # The client MLflow itself would use: the endpoint, region and credentials of the environment.
        s3 = self.repository._get_s3_client()
        deleted = retried = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [o["Key"] for o in page.get("Contents", [])]
            if not keys:
                continue
            result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
            for error in result.get("Errors", []):
                try:
                    s3.delete_object(Bucket=bucket, Key=error["Key"])
                except ClientError as e:
                    code = e.response.get("Error", {}).get("Code", "an error")
                    raise RuntimeError(
                        f"S3 refused to delete s3://{bucket}/{error['Key']} ({code}); the run's rows are kept, "
                        "and the next garbage collection tries again"
                    ) from e
                retried += 1
            deleted += len(keys)
        left = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0)
        if left:
            raise RuntimeError(f"objects are left under s3://{bucket}/{prefix} after deleting them; the run's rows are kept")
        log(f"deleted {deleted} objects under s3://{bucket}/{prefix}" + (f" ({retried} one by one, after DeleteObjects refused them)" if retried else ""))


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: purge.py <tracking database URI> <artifacts destination> <older than>")
    tracking_uri, destination, older_than = sys.argv[1:]

    from mlflow.cli import cli
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry, get_artifact_repository

    def proxied_repository(artifact_uri, tracking_uri=None, registry_uri=None):
        location = proxied_location(artifact_uri, destination)
        log(f"deleting the artifacts of {artifact_uri} at {location}")
        return CheckedDeletion(get_artifact_repository(location))

    _artifact_repository_registry.register("mlflow-artifacts", proxied_repository)
    log(f"deleting what was deleted more than {older_than} ago; artifacts of mlflow-artifacts: locations under {destination}")
    # The tracking URI is the database: nothing here talks to a tracking server.
    cli.main(args=[
        "gc", "--backend-store-uri", tracking_uri, "--tracking-uri", tracking_uri,
        "--artifacts-destination", SERVER_DEFAULT_ARTIFACT_ROOT, "--older-than", older_than,
    ], prog_name="mlflow")


if __name__ == "__main__":
    main()
