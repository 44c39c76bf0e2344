"""The S3 side of database backups and restores, run in the MLflow image (which carries boto3).

    python s3.py upload   upload the dumps in $BACKUP_DIR to s3://$BACKUP_BUCKET/$BACKUP_PREFIX/<id>/,
                          then a manifest.json listing them with their SHA-256: a backup without
                          a manifest is incomplete and never restored
    python s3.py fetch    download backup $BACKUP_ID ("latest": the newest complete one) into
                          $BACKUP_DIR and check every file against the manifest

Credentials come from the environment only (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the
pod's web identity), the endpoint from AWS_ENDPOINT_URL_S3 when an emulator is used.
"""

import datetime
import hashlib
import json
import os
import pathlib
import sys

import boto3
from boto3.s3.transfer import TransferConfig

MANIFEST = "manifest.json"
# Backup ids are UTC timestamps: they sort in time order.
ID_FORMAT = "%Y%m%dT%H%M%SZ"


def log(message):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{now} {message}", file=sys.stderr, flush=True)


def fail(message, code=1):
    log(f"ERROR: {message}")
    sys.exit(code)


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None or value == "":
        fail(f"{name} is not set")
    return value


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def client():
    return boto3.client("s3", region_name=env("AWS_DEFAULT_REGION"))


def upload():
    bucket, prefix, directory = env("BACKUP_BUCKET"), env("BACKUP_PREFIX"), pathlib.Path(env("BACKUP_DIR"))
    databases = env("BACKUP_DATABASES").split()
    encryption = {"ServerSideEncryption": env("BACKUP_SSE", "AES256")}
    if os.environ.get("BACKUP_KMS_KEY_ID"):
        encryption["SSEKMSKeyId"] = os.environ["BACKUP_KMS_KEY_ID"]
    started = datetime.datetime.now(datetime.timezone.utc)
    backup_id = started.strftime(ID_FORMAT)
    s3 = client()
    files = []
    for db in databases:
        path = directory / f"{db}.dump"
        if not path.is_file():
            fail(f"{path} is missing: the dump step did not complete")
        digest, size = sha256(path), path.stat().st_size
        key = f"{prefix}/{backup_id}/{path.name}"
        # S3 checks the SHA-256 of every part on arrival; the manifest keeps the whole file's.
        s3.upload_file(str(path), bucket, key, ExtraArgs={**encryption, "ChecksumAlgorithm": "SHA256"},
                       Config=TransferConfig(multipart_chunksize=64 << 20))
        stored = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        if stored != size:
            fail(f"s3://{bucket}/{key} holds {stored} bytes, the dump {size}")
        files.append({"database": db, "key": path.name, "bytes": size, "sha256": digest})
        log(f"uploaded s3://{bucket}/{key} ({size} bytes, sha256 {digest})")
    manifest = {
        "id": backup_id,
        "reason": os.environ.get("BACKUP_REASON", "manual"),
        "startedAt": started.isoformat(),
        "finishedAt": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "format": "pg_dump custom",
        "postgres": {
            "serverVersion": (directory / "server_version").read_text().strip(),
            "pgDump": (directory / "pg_dump_version").read_text().strip(),
        },
        "files": files,
    }
    body = json.dumps(manifest, indent=2).encode()
    # Written last: its presence marks the backup complete.
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{backup_id}/{MANIFEST}", Body=body,
                  ContentType="application/json", ChecksumAlgorithm="SHA256", **encryption)
    log(f"backup {backup_id} complete: s3://{bucket}/{prefix}/{backup_id}/")
    print(json.dumps({"id": backup_id, "uri": f"s3://{bucket}/{prefix}/{backup_id}/",
                      "bytes": sum(f["bytes"] for f in files)}))


def complete_backups(s3, bucket, prefix):
    """Ids of the backups under the prefix that have a manifest, newest first."""
    ids = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(prefix) + 1:].split("/")
            if len(parts) == 2 and parts[1] == MANIFEST:
                ids.append(parts[0])
    return sorted(ids, reverse=True)


def fetch():
    bucket, prefix, directory = env("BACKUP_BUCKET"), env("BACKUP_PREFIX"), pathlib.Path(env("BACKUP_DIR"))
    wanted = env("BACKUP_ID", "latest")
    s3 = client()
    ids = complete_backups(s3, bucket, prefix)
    if not ids:
        fail(f"no complete backup under s3://{bucket}/{prefix}/", 4)
    if wanted == "latest":
        backup_id = ids[0]
    elif wanted in ids:
        backup_id = wanted
    else:
        fail(f"no complete backup {wanted} under s3://{bucket}/{prefix}/; the newest are: {', '.join(ids[:5])}", 4)
    directory.mkdir(parents=True, exist_ok=True)
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{backup_id}/{MANIFEST}")["Body"].read()
    manifest = json.loads(body)
    for f in manifest["files"]:
        path = directory / f["key"]
        s3.download_file(bucket, f"{prefix}/{backup_id}/{f['key']}", str(path))
        digest = sha256(path)
        if digest != f["sha256"] or path.stat().st_size != f["bytes"]:
            fail(f"{f['key']} of backup {backup_id} does not match its manifest (sha256 {digest}, expected {f['sha256']})")
        log(f"fetched {f['key']} of backup {backup_id}: {f['bytes']} bytes, sha256 verified")
    (directory / MANIFEST).write_bytes(body)
    print(json.dumps({"id": backup_id, "files": [f["key"] for f in manifest["files"]]}))


if __name__ == "__main__":
    commands = {"upload": upload, "fetch": fetch}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        fail("usage: s3.py upload|fetch", 2)
    commands[sys.argv[1]]()
