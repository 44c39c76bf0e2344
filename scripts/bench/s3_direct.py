"""Direct-to-S3 side of the artifact benchmark, driven by scripts/bench/bench.ts.

Reads one JSON document on stdin, prints one JSON document on stdout:

  upload    boto3 upload_file (its default TransferConfig: 8 MB parts, 10 threads), timed in-process
  download  boto3 download_file to a scratch file, timed in-process, then hashed (not timed)
  purge     deletes every object version under a prefix (versioning is on, and moto keeps every
            version in memory: a benchmark that only deleted keys would grow moto by 256 MB a test)

Runs in the venv that mirrors the MLflow image, so boto3 is the library the server itself uses for
the proxied path; the S3 client and the file digest are the contract tests' own.
"""

import json
import os
import sys
import time
from pathlib import Path

# Imported, contract.py would leave a __pycache__ in test/integration, inside the checkout.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "test" / "integration"))
from contract import clients, sha256_file  # noqa: E402


def main():
    command = sys.argv[1]
    doc = json.load(sys.stdin)
    s3, _ = clients(doc["endpoint"], doc["region"], doc["key"]["id"], doc["key"]["secret"])
    if command == "upload":
        t0 = time.perf_counter()
        s3.upload_file(doc["file"], doc["bucket"], doc["objectKey"])
        out = {"seconds": time.perf_counter() - t0}
    elif command == "download":
        t0 = time.perf_counter()
        s3.download_file(doc["bucket"], doc["objectKey"], doc["file"])
        seconds = time.perf_counter() - t0
        out = {"seconds": seconds, "bytes": os.path.getsize(doc["file"]), "sha256": sha256_file(doc["file"])}
        os.remove(doc["file"])
    elif command == "purge":
        deleted = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=doc["bucket"], Prefix=doc["prefix"]):
            items = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            # list_object_versions pages hold at most 1000 entries, delete_objects' own limit.
            if items:
                s3.delete_objects(Bucket=doc["bucket"], Delete={"Objects": items, "Quiet": True})
                deleted += len(items)
        out = {"deleted": deleted}
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
