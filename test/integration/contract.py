"""Python side of the contract tests, driven by test/integration/contract.spec.ts.

Subcommands read one JSON document on stdin and print one JSON document on stdout:

  provision  creates the ArtifactStore's AWS resources in moto from the inputs the program rendered
  s3-probe   what the tracking server's access key can and cannot do, and what the bucket holds
  scientist  a data scientist's session with the real MLflow client against the tracking server
  scientist-presigned  the same client's direct-to-S3 paths (presigned uploads and downloads)
  seed       every kind of record a team keeps: experiments, runs, params, metrics, tags, artifacts,
             registered models with versions and aliases, users and their permissions
  inventory  all of those records read back through the API, in a canonical form to compare
  backup-probe  what the backup identity's access key can and cannot do
  serving-train    scikit-learn models registered as the admin, for the served-model tests
  serving-rollout  another version of a served model, in an experiment of its own, the alias moved to it
  serving-probe    what a model server's MLflow user can and cannot do
  gc-seed          runs with artifacts logged through the server, some of them deleted, for garbage collection
  gc-runs          how the server sees runs now: lifecycle stage (or the error), and their artifacts
  artifact-objects the objects (current, versions, delete markers) under a key prefix, as the deployer
  verify-writes    every write writers.py saw acknowledged, read back through the server

boto3 and MLflow come from the venv that mirrors the MLflow image (scripts/integration/setup.sh).
"""

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def outcome(call):
    """'ok', or the error code an AWS call failed with."""
    import botocore.exceptions

    try:
        call()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response.get("Error", {}).get("Code", "ClientError")


@contextlib.contextmanager
def env(**values):
    """Environment variables set for the duration of a block (MLflow reads them per call)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def clients(endpoint, region, key_id, secret):
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region
    )
    return session.client("s3", endpoint_url=endpoint), session.client("iam", endpoint_url=endpoint)


# --- provision ---------------------------------------------------------------------------------

# The order the resources must be created in: the bucket before everything that names it, the
# public access block before the bucket policy (as the program's dependsOn says), the user and the
# policy before their attachment, the user before its key.
ORDER = [
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:iam/user:User",
    "aws:iam/policy:Policy",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/accessKey:AccessKey",
]

# Inputs each type may carry. Anything else fails the run: an input the translation below ignores
# would be configuration the contract tests silently do not apply.
KNOWN_INPUTS = {
    "aws:s3/bucket:Bucket": {"bucketPrefix", "forceDestroy", "tags"},
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": {
        "bucket", "blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets",
    },
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": {"bucket", "rule"},
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": {"bucket", "rules"},
    "aws:s3/bucketVersioning:BucketVersioning": {"bucket", "versioningConfiguration"},
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": {"bucket", "rules"},
    "aws:s3/bucketPolicy:BucketPolicy": {"bucket", "policy"},
    "aws:iam/user:User": {"path", "forceDestroy", "tags"},
    "aws:iam/policy:Policy": {"path", "description", "policy", "tags"},
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": {"user", "policyArn"},
    "aws:iam/accessKey:AccessKey": {"user"},
}


def tag_list(tags):
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def lifecycle_rule(rule):
    known = {"id", "status", "filter", "abortIncompleteMultipartUpload", "noncurrentVersionExpiration", "expiration"}
    unknown = set(rule) - known
    if unknown:
        raise SystemExit(f"lifecycle rule {rule.get('id')}: unsupported inputs {sorted(unknown)}")
    out = {"ID": rule["id"], "Status": rule["status"]}
    f = rule.get("filter") or {}
    if set(f) - {"prefix"}:
        raise SystemExit(f"lifecycle rule {rule['id']}: unsupported filter {f}")
    out["Filter"] = {"Prefix": f.get("prefix", "")}
    if "abortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"]
        }
    if "noncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": rule["noncurrentVersionExpiration"]["noncurrentDays"]
        }
    if "expiration" in rule:
        e = rule["expiration"]
        if set(e) == {"expiredObjectDeleteMarker"}:
            out["Expiration"] = {"ExpiredObjectDeleteMarker": e["expiredObjectDeleteMarker"]}
        elif set(e) == {"days"}:
            out["Expiration"] = {"Days": e["days"]}
        else:
            raise SystemExit(f"lifecycle rule {rule['id']}: unsupported expiration {e}")
    return out


def bootstrap(doc):
    """The deploying identity (what runs `pulumi up` in a real account): moto lets the first
    INITIAL_NO_AUTH_ACTION_COUNT requests through unauthenticated, exactly the three that create it."""
    endpoint, region = doc["endpoint"], doc["region"]
    anon_s3, anon_iam = clients(endpoint, region, "bootstrap", "bootstrap")
    anon_iam.create_user(UserName="deployer")
    anon_iam.put_user_policy(
        UserName="deployer",
        PolicyName="administrator",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }),
    )
    key = anon_iam.create_access_key(UserName="deployer")["AccessKey"]
    return {
        "deployer": {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]},
        "enforcement": {
            "unknownKeyListBuckets": outcome(lambda: anon_s3.list_buckets()),
            "unknownKeyListUsers": outcome(lambda: anon_iam.list_users()),
        },
    }


def kms_key(doc):
    """A customer-managed KMS key, as a team would bring one for `bucketKmsKeyArn`."""
    import boto3

    kms = boto3.session.Session(aws_access_key_id=doc["deployer"]["id"], aws_secret_access_key=doc["deployer"]["secret"],
                                region_name=doc["region"]).client("kms", endpoint_url=doc["endpoint"])
    return {"arn": kms.create_key(Description="mlflow-k8s contract test")["KeyMetadata"]["Arn"]}


def provision(doc):
    endpoint, region = doc["endpoint"], doc["region"]
    default_tags = doc.get("defaultTags", {})
    boot = {"deployer": doc["deployer"], "enforcement": {}} if "deployer" in doc else bootstrap(doc)
    deployer, enforcement = boot["deployer"], boot["enforcement"]
    s3, iam = clients(endpoint, region, deployer["id"], deployer["secret"])

    resources = doc["resources"]
    unknown_types = sorted({r["type"] for r in resources} - set(ORDER))
    if unknown_types:
        raise SystemExit(f"provision: no translation for {unknown_types}")
    for r in resources:
        extra = set(r["inputs"]) - KNOWN_INPUTS[r["type"]]
        if extra:
            raise SystemExit(f"provision: {r['type']} {r['name']} has inputs the tests do not apply: {sorted(extra)}")

    def of_type(t):
        return [r for r in resources if r["type"] == t]

    report = {"created": [], "readBack": {}, "enforcement": enforcement, "deployer": deployer}
    bucket = None
    user_names = {}
    for t in ORDER:
        for r in of_type(t):
            i, state = r["inputs"], r["state"]
            if t == "aws:s3/bucket:Bucket":
                bucket = state["bucket"]
                kwargs = {"Bucket": bucket}
                if region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
                s3.create_bucket(**kwargs)
                tags = {**default_tags, **(i.get("tags") or {})}
                if tags:
                    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tag_list(tags)})
                report["readBack"]["bucketTags"] = {
                    "requested": tags,
                    "actual": {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]},
                }
            elif t == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
                cfg = {k[0].upper() + k[1:]: v for k, v in i.items() if k != "bucket"}
                s3.put_public_access_block(Bucket=i["bucket"], PublicAccessBlockConfiguration=cfg)
                report["readBack"]["publicAccessBlock"] = {
                    "requested": cfg,
                    "actual": s3.get_public_access_block(Bucket=i["bucket"])["PublicAccessBlockConfiguration"],
                }
            elif t == "aws:s3/bucketOwnershipControls:BucketOwnershipControls":
                cfg = {"Rules": [{"ObjectOwnership": i["rule"]["objectOwnership"]}]}
                s3.put_bucket_ownership_controls(Bucket=i["bucket"], OwnershipControls=cfg)
                report["readBack"]["ownershipControls"] = {
                    "requested": cfg,
                    "actual": s3.get_bucket_ownership_controls(Bucket=i["bucket"])["OwnershipControls"],
                }
            elif t == "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
                rules = []
                for rule in i["rules"]:
                    d = rule["applyServerSideEncryptionByDefault"]
                    by_default = {"SSEAlgorithm": d["sseAlgorithm"]}
                    if d.get("kmsMasterKeyId"):
                        by_default["KMSMasterKeyID"] = d["kmsMasterKeyId"]
                    rules.append({"ApplyServerSideEncryptionByDefault": by_default, "BucketKeyEnabled": rule["bucketKeyEnabled"]})
                s3.put_bucket_encryption(Bucket=i["bucket"], ServerSideEncryptionConfiguration={"Rules": rules})
                report["readBack"]["encryption"] = {
                    "requested": rules,
                    "actual": s3.get_bucket_encryption(Bucket=i["bucket"])["ServerSideEncryptionConfiguration"]["Rules"],
                }
            elif t == "aws:s3/bucketVersioning:BucketVersioning":
                cfg = {"Status": i["versioningConfiguration"]["status"]}
                s3.put_bucket_versioning(Bucket=i["bucket"], VersioningConfiguration=cfg)
                actual = s3.get_bucket_versioning(Bucket=i["bucket"])
                report["readBack"]["versioning"] = {"requested": cfg, "actual": {"Status": actual.get("Status")}}
            elif t == "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration":
                rules = [lifecycle_rule(rule) for rule in i["rules"]]
                s3.put_bucket_lifecycle_configuration(Bucket=i["bucket"], LifecycleConfiguration={"Rules": rules})
                report["readBack"]["lifecycle"] = {
                    "requested": rules,
                    "actual": s3.get_bucket_lifecycle_configuration(Bucket=i["bucket"])["Rules"],
                }
            elif t == "aws:s3/bucketPolicy:BucketPolicy":
                s3.put_bucket_policy(Bucket=i["bucket"], Policy=i["policy"])
                actual = json.loads(s3.get_bucket_policy(Bucket=i["bucket"])["Policy"])
                report["readBack"]["bucketPolicy"] = {"requested": json.loads(i["policy"]), "actual": actual}
                # The policy denies requests made without TLS. Ask whether moto evaluates that
                # condition: this request is made over TLS, so AWS would let it through.
                probe_key = f"{doc['artifactPrefix']}/.tls-policy-probe"
                report["tlsPolicyProbe"] = outcome(
                    lambda: s3.put_object(Bucket=i["bucket"], Key=probe_key, Body=b"probe")
                )
                if report["tlsPolicyProbe"] != "ok":
                    # moto ignores condition operators it does not implement (Bool among them), so
                    # the conditional Deny turns into an unconditional one. Remove it; the HTTPS-only
                    # endpoint enforces what it says (see docs/integration.md).
                    s3.delete_bucket_policy(Bucket=i["bucket"])
                else:
                    s3.delete_object(Bucket=i["bucket"], Key=probe_key)
            elif t == "aws:iam/user:User":
                name = state["name"]
                tags = {**default_tags, **(i.get("tags") or {})}
                iam.create_user(UserName=name, Path=i.get("path", "/"), Tags=tag_list(tags))
                user_names[name] = iam.get_user(UserName=name)["User"]["Arn"]
            elif t == "aws:iam/policy:Policy":
                tags = {**default_tags, **(i.get("tags") or {})}
                created = iam.create_policy(
                    PolicyName=state["name"],
                    Path=i.get("path", "/"),
                    Description=i.get("description", ""),
                    PolicyDocument=i["policy"],
                    Tags=tag_list(tags),
                )["Policy"]
                version = iam.get_policy_version(PolicyArn=created["Arn"], VersionId=created["DefaultVersionId"])
                document = version["PolicyVersion"]["Document"]
                if isinstance(document, str):
                    from urllib.parse import unquote

                    document = json.loads(unquote(document))
                report["readBack"][f"iamPolicy {r['name']}"] = {"requested": json.loads(i["policy"]), "actual": document}
                report.setdefault("policyArns", []).append({"rendered": state["arn"], "created": created["Arn"]})
            elif t == "aws:iam/userPolicyAttachment:UserPolicyAttachment":
                if i["user"] not in user_names:
                    raise SystemExit(f"attachment names unknown user {i['user']}")
                iam.attach_user_policy(UserName=i["user"], PolicyArn=i["policyArn"])
                attached = iam.list_attached_user_policies(UserName=i["user"])["AttachedPolicies"]
                report["readBack"][f"attachment {r['name']}"] = {"requested": [i["policyArn"]], "actual": [p["PolicyArn"] for p in attached]}
            elif t == "aws:iam/accessKey:AccessKey":
                k = iam.create_access_key(UserName=i["user"])["AccessKey"]
                report.setdefault("accessKeys", []).append({
                    "name": r["name"],
                    "mockId": state["id"] if "id" in state else None,
                    "id": k["AccessKeyId"],
                    "secret": k["SecretAccessKey"],
                })
            report["created"].append(f"{t} {r['name']}")
    report["bucket"] = bucket
    return report


# --- s3-probe ----------------------------------------------------------------------------------


def s3_probe(doc):
    endpoint, region, bucket, prefix = doc["endpoint"], doc["region"], doc["bucket"], doc["prefix"]
    s3, iam = clients(endpoint, region, doc["key"]["id"], doc["key"]["secret"])
    admin_s3, _ = clients(endpoint, region, doc["deployer"]["id"], doc["deployer"]["secret"])
    other_bucket = f"{bucket[:40]}-other"
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    admin_s3.create_bucket(Bucket=other_bucket, **location)
    inside = f"{prefix}/contract-probe/inside.txt"
    result = {
        "listAllBuckets": outcome(lambda: s3.list_buckets()),
        "deleteBucket": outcome(lambda: s3.delete_bucket(Bucket=bucket)),
        "putBucketPolicy": outcome(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}],
        }))),
        "putBucketVersioning": outcome(lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})),
        "putAtBucketRoot": outcome(lambda: s3.put_object(Bucket=bucket, Key="outside.txt", Body=b"x")),
        "putInSiblingPrefix": outcome(lambda: s3.put_object(Bucket=bucket, Key=f"{prefix}-sibling/x.txt", Body=b"x")),
        "putInOtherBucket": outcome(lambda: s3.put_object(Bucket=other_bucket, Key=f"{prefix}/x.txt", Body=b"x")),
        "getFromOtherBucket": outcome(lambda: s3.list_objects_v2(Bucket=other_bucket)),
        "iamListUsers": outcome(lambda: iam.list_users()),
        "iamCreateAccessKey": outcome(lambda: iam.create_access_key()),
        # The positive controls: what MLflow needs must work, or the denials above prove nothing.
        "putInsidePrefix": outcome(lambda: s3.put_object(Bucket=bucket, Key=inside, Body=b"inside")),
        "getInsidePrefix": outcome(lambda: s3.get_object(Bucket=bucket, Key=inside)["Body"].read()),
        "listInsidePrefix": outcome(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")),
        "deleteInsidePrefix": outcome(lambda: s3.delete_object(Bucket=bucket, Key=inside)),
        # Not asserted: moto ignores the s3:prefix condition of the ListBucket grant.
        "listOutsidePrefix": outcome(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="elsewhere/")),
    }
    admin_s3.delete_bucket(Bucket=other_bucket)

    objects = []
    paginator = admin_s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            objects.append({"key": o["Key"], "size": o["Size"], "etag": o["ETag"].strip('"')})
    result["objects"] = objects

    digests = {}
    for key in doc.get("digest", []):
        head = s3.head_object(Bucket=bucket, Key=key)
        h = hashlib.sha256()
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(1 << 20), b""):
            h.update(chunk)
        digests[key] = {
            "sha256": h.hexdigest(),
            "sse": head.get("ServerSideEncryption"),
            "versionId": head.get("VersionId"),
            "etag": head["ETag"].strip('"'),
        }
    result["digests"] = digests
    return result


# --- scientist ---------------------------------------------------------------------------------

LOCAL_FILES = {
    "reports/summary.txt": "reports/summary.txt",
    "reports/nested/config.json": "reports/nested/config.json",
    "reports/nested/curve.csv": "reports/nested/curve.csv",
    "data/weights.bin": "weights.bin",
}


class Timer:
    def __init__(self):
        self.timings = {}

    def __call__(self, name, fn):
        t = time.monotonic()
        value = fn()
        self.timings[name] = round(time.monotonic() - t, 2)
        return value


def compare_download(run_id, work, dst_name, expected, timed):
    import mlflow

    dst = work / dst_name
    dst.mkdir()
    downloaded = Path(timed(dst_name, lambda: mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="", dst_path=str(dst)
    )))
    return {rel: sha256_file(work / src) == sha256_file(downloaded / rel) for rel, src in expected.items()}


def scientist(doc):
    """Everything through the tracking server (proxied artifacts), as the platform is designed."""
    import mlflow
    import mlflow.pyfunc
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    work = Path(doc["workDir"])
    work.mkdir(parents=True, exist_ok=True)
    client = MlflowClient()
    timed = Timer()

    experiment_id = timed("create_experiment", lambda: mlflow.create_experiment(doc["experiment"]))
    mlflow.set_experiment(experiment_id=experiment_id)

    # An artifact directory with nesting, and one large file.
    reports = work / "reports"
    (reports / "nested").mkdir(parents=True, exist_ok=True)
    (reports / "summary.txt").write_text("contract test summary\n")
    (reports / "nested" / "config.json").write_text(json.dumps({"layers": [64, 32], "dropout": 0.1}))
    (reports / "nested" / "curve.csv").write_text("step,loss\n" + "".join(f"{i},{1 / (i + 1)}\n" for i in range(200)))
    big = work / "weights.bin"
    with open(big, "wb") as f:
        for _ in range(doc["bigMiB"]):
            f.write(os.urandom(1 << 20))

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [2 * x for x in model_input]

    runs = []
    for index, lr in enumerate(doc["learningRates"]):
        with mlflow.start_run(run_name=f"lr-{lr}") as run:
            run_id = run.info.run_id
            mlflow.log_params({"learning_rate": lr, "epochs": 1000, "optimizer": "adam"})
            mlflow.set_tags({"team": "platform", "purpose": "contract-test"})
            for step in range(5):
                mlflow.log_metric("accuracy", 0.5 + 0.08 * step + 0.01 * index, step=step)
            now = int(time.time() * 1000)
            timed(f"log_batch_{index}", lambda: client.log_batch(
                run_id,
                metrics=[Metric("loss", 1.0 / (s + 1) + index, now + s, s) for s in range(1000)],
            ))
            timed(f"log_artifacts_{index}", lambda: mlflow.log_artifacts(str(reports), artifact_path="reports"))
            entry = {"runId": run_id, "learningRate": lr, "artifactUri": run.info.artifact_uri}
            if index == 0:
                # Below MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE (500 MB) the client PUTs the file
                # to the server, which writes it to S3 (in parts, through boto3).
                timed("log_artifact_big", lambda: mlflow.log_artifact(str(big), artifact_path="data"))
                info = timed("log_model", lambda: mlflow.pyfunc.log_model(
                    name="model",
                    python_model=Doubler(),
                    registered_model_name=doc["modelName"],
                    pip_requirements=[f"mlflow=={mlflow.__version__}"],
                ))
                entry["modelUri"] = info.model_uri
                entry["modelVersion"] = info.registered_model_version
            runs.append(entry)

    found = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"params.learning_rate = '{doc['learningRates'][0]}'",
        output_format="list",
    )
    ranked = mlflow.search_runs(experiment_ids=[experiment_id], order_by=["metrics.accuracy DESC"], output_format="list")
    loss_history = client.get_metric_history(runs[0]["runId"], "loss")
    compared = compare_download(runs[0]["runId"], work, "download-proxied", LOCAL_FILES, timed)
    versions = client.search_model_versions(f"name = '{doc['modelName']}'")
    model = mlflow.pyfunc.load_model(f"models:/{doc['modelName']}/{runs[0]['modelVersion']}")

    return {
        "experimentId": experiment_id,
        "runs": runs,
        "searchByParam": [r.info.run_id for r in found],
        "searchRanked": [r.info.run_id for r in ranked],
        "lossPoints": len(loss_history),
        "downloadedEqual": compared,
        "bigSha256": sha256_file(big),
        "bigBytes": big.stat().st_size,
        "modelVersions": [{"version": v.version, "source": v.source, "status": v.status, "runId": v.run_id} for v in versions],
        "prediction": list(model.predict([1, 2, 3])),
        "timings": timed.timings,
    }


def scientist_presigned(doc):
    """The client's direct-to-S3 paths: presigned part uploads (files over the multipart minimum,
    lowered here) and presigned downloads, which the client uses by default once the server says
    (/api/3.0/mlflow/server-info) that its artifact store can hand out presigned URLs."""
    from mlflow import MlflowClient

    work = Path(doc["workDir"])
    timed = Timer()
    run_id = doc["runId"]
    with env(MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE=str(16 << 20)):
        timed("log_artifact_presigned_parts", lambda: MlflowClient().log_artifact(
            run_id, str(work / "weights.bin"), artifact_path="direct"
        ))
    expected = {**LOCAL_FILES, "direct/weights.bin": "weights.bin"}
    compared = compare_download(run_id, work, "download-presigned", expected, timed)
    return {"downloadedEqual": compared, "timings": timed.timings}


# --- seed / inventory: records to back up, restore or upgrade, and compare --------------------

SEED_USERS = {"alice": "EDIT", "bob": "READ"}


def auth_client():
    import mlflow.server

    return mlflow.server.get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def seed(doc):
    """Records of every kind, through the API as the admin. Returns what the inventory must hold."""
    import mlflow
    import mlflow.pyfunc
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    work = Path(doc["workDir"])
    work.mkdir(parents=True, exist_ok=True)
    client = MlflowClient()
    tag = doc["tag"]

    class Scaler(mlflow.pyfunc.PythonModel):
        def __init__(self, factor):
            self.factor = factor

        def predict(self, context, model_input, params=None):
            return [self.factor * x for x in model_input]

    experiments = []
    for e in range(2):
        exp_id = client.create_experiment(f"{tag}-experiment-{e}", tags={"team": "platform", "index": str(e)})
        experiments.append(exp_id)
        for r in range(2):
            run = client.create_run(exp_id, run_name=f"{tag}-run-{e}-{r}", tags={"stage": "seed"})
            run_id = run.info.run_id
            client.log_batch(
                run_id,
                metrics=[Metric("loss", 1.0 / (s + 1) + r, 1_700_000_000_000 + s, s) for s in range(50)],
                params=[Param("lr", str(0.1 / (r + 1))), Param("layers", str(e + 2))],
                tags=[RunTag("owner", "alice" if r == 0 else "bob")],
            )
            notes = work / f"notes-{e}-{r}.txt"
            notes.write_text(f"run {e}-{r} notes\n" * 10)
            client.log_artifact(run_id, str(notes), artifact_path="notes")
            client.set_terminated(run_id, status="FINISHED" if r == 0 else "FAILED")
    model = f"{tag}-model"
    mlflow.set_experiment(experiment_id=experiments[0])
    for factor in (2, 3):
        with mlflow.start_run(run_name=f"{tag}-model-{factor}"):
            mlflow.pyfunc.log_model(
                name="model", python_model=Scaler(factor), registered_model_name=model,
                pip_requirements=[f"mlflow=={mlflow.__version__}"],
            )
    client.update_registered_model(model, description="seeded for the backup and upgrade tests")
    client.set_registered_model_tag(model, "domain", "contract")
    client.set_model_version_tag(model, "1", "validated", "true")
    client.set_registered_model_alias(model, "champion", "2")
    client.set_registered_model_alias(model, "challenger", "1")

    auth = auth_client()
    for user, permission in SEED_USERS.items():
        auth.create_user(user, doc["passwords"][user])
        auth.grant_user_permission(user, "experiment", experiments[0], permission)
        auth.grant_user_permission(user, "registered_model", model, permission)
    return {"experiments": experiments, "model": model}


def inventory(doc):
    """Every record the seed (and anything else) wrote, read back through the API."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient()
    work = Path(doc["workDir"])
    work.mkdir(parents=True, exist_ok=True)
    out = {"experiments": [], "models": [], "users": {}}
    for exp in sorted(client.search_experiments(view_type=ViewType.ALL), key=lambda x: x.experiment_id):
        runs = []
        for run in sorted(client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL), key=lambda x: x.info.run_id):
            info = run.info
            metrics = {k: [(m.step, m.timestamp, m.value) for m in sorted(client.get_metric_history(info.run_id, k), key=lambda m: (m.step, m.timestamp))]
                       for k in sorted(run.data.metrics)}
            artifacts = {}
            for a in client.list_artifacts(info.run_id, "notes"):
                local = mlflow.artifacts.download_artifacts(run_id=info.run_id, artifact_path=a.path, dst_path=str(work / info.run_id))
                artifacts[a.path] = sha256_file(local)
            runs.append({
                "id": info.run_id, "name": info.run_name, "status": info.status, "start": info.start_time, "end": info.end_time,
                "lifecycle": info.lifecycle_stage, "artifactUri": info.artifact_uri,
                "params": dict(sorted(run.data.params.items())),
                "tags": {k: v for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")},
                "metrics": metrics, "artifacts": artifacts,
            })
        out["experiments"].append({
            "id": exp.experiment_id, "name": exp.name, "lifecycle": exp.lifecycle_stage, "artifactLocation": exp.artifact_location,
            "tags": {k: v for k, v in sorted(exp.tags.items()) if not k.startswith("mlflow.")}, "runs": runs,
        })
    for rm in sorted(client.search_registered_models(), key=lambda m: m.name):
        versions = sorted(client.search_model_versions(f"name = '{rm.name}'"), key=lambda v: int(v.version))
        out["models"].append({
            "name": rm.name, "description": rm.description, "tags": dict(sorted(rm.tags.items())),
            "aliases": dict(sorted(rm.aliases.items())) if isinstance(rm.aliases, dict) else sorted(rm.aliases),
            "versions": [{"version": v.version, "source": v.source, "runId": v.run_id, "status": v.status,
                          "tags": dict(sorted(v.tags.items()))} for v in versions],
        })
    auth = auth_client()
    for user, password in doc.get("passwords", {}).items():
        u = auth.get_user(user)
        grants = {}
        for resource_type, resource_id in doc.get("grants", []):
            result = auth.get_user_permission(user, resource_type, resource_id)
            grants[f"{resource_type}/{resource_id}"] = result.permission
        # The user's own password still logs in: read an experiment as that user.
        with env(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password):
            can_log_in = outcome_of(lambda: MlflowClient().search_experiments(max_results=1))
        out["users"][user] = {"isAdmin": u.is_admin, "grants": grants, "logsIn": can_log_in}
    model = doc.get("predictWith")
    if model:
        out["prediction"] = list(mlflow.pyfunc.load_model(model).predict([1, 2, 3]))
    return out


def outcome_of(call):
    """'ok', or the class of the exception a call raised."""
    try:
        call()
        return "ok"
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        return type(e).__name__


def backup_probe(doc):
    """The backup identity: backups in and out, no delete, no artifact."""
    endpoint, region, bucket = doc["endpoint"], doc["region"], doc["bucket"]
    artifacts, backups = doc["artifactPrefix"], doc["backupPrefix"]
    s3, iam = clients(endpoint, region, doc["key"]["id"], doc["key"]["secret"])
    admin_s3, _ = clients(endpoint, region, doc["deployer"]["id"], doc["deployer"]["secret"])
    artifact_key = doc["artifactKey"]
    backup_key = doc["backupKey"]
    probe_key = f"{backups}/probe/probe.txt"
    versions = admin_s3.list_object_versions(Bucket=bucket, Prefix=backup_key)["Versions"]
    return {
        "putBackup": outcome(lambda: s3.put_object(Bucket=bucket, Key=probe_key, Body=b"probe")),
        "getBackup": outcome(lambda: s3.get_object(Bucket=bucket, Key=backup_key)["Body"].read()),
        "listBackups": outcome(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=f"{backups}/")),
        "deleteBackup": outcome(lambda: s3.delete_object(Bucket=bucket, Key=backup_key)),
        "deleteBackupVersion": outcome(lambda: s3.delete_object(Bucket=bucket, Key=backup_key, VersionId=versions[0]["VersionId"])),
        "deleteOwnProbe": outcome(lambda: s3.delete_object(Bucket=bucket, Key=probe_key)),
        "getArtifact": outcome(lambda: s3.get_object(Bucket=bucket, Key=artifact_key)["Body"].read()),
        "putArtifact": outcome(lambda: s3.put_object(Bucket=bucket, Key=f"{artifacts}/planted.txt", Body=b"x")),
        "deleteArtifact": outcome(lambda: s3.delete_object(Bucket=bucket, Key=artifact_key)),
        "putBucketLifecycle": outcome(lambda: s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]})),
        "iamListUsers": outcome(lambda: iam.list_users()),
        # Not asserted: moto ignores the s3:prefix condition of the ListBucket grant.
        "listArtifacts": outcome(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=f"{artifacts}/")),
        "backupStillThere": outcome(lambda: admin_s3.head_object(Bucket=bucket, Key=backup_key)),
    }


def backup_objects(doc):
    """The objects under the backup prefix, with their encryption, checksum and, for manifests, content."""
    s3, _ = clients(doc["endpoint"], doc["region"], doc["deployer"]["id"], doc["deployer"]["secret"])
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=doc["bucket"], Prefix=f"{doc['prefix']}/"):
        for o in page.get("Contents", []):
            head = s3.head_object(Bucket=doc["bucket"], Key=o["Key"], ChecksumMode="ENABLED")
            entry = {"key": o["Key"], "size": o["Size"], "sse": head.get("ServerSideEncryption"),
                     "checksumSha256": head.get("ChecksumSHA256")}
            body = s3.get_object(Bucket=doc["bucket"], Key=o["Key"])["Body"].read()
            entry["sha256"] = hashlib.sha256(body).hexdigest()
            if o["Key"].endswith("/manifest.json"):
                entry["manifest"] = json.loads(body)
            out.append(entry)
    return out


def kek_check(doc):
    """Which passphrase decrypts a stored gateway secret: the stack's, and not MLflow's public default."""
    import psycopg2
    from mlflow.utils.crypto import DEFAULT_KEK_PASSPHRASE, KEKManager, _decrypt_secret

    conn = psycopg2.connect(**doc["connection"])
    with conn, conn.cursor() as cur:
        cur.execute("SELECT secret_id, secret_name, encrypted_value, wrapped_dek, kek_version FROM secrets WHERE secret_name = %s",
                    (doc["secretName"],))
        secret_id, name, value, dek, version = cur.fetchone()
    conn.close()

    def decrypts(passphrase):
        try:
            plain = _decrypt_secret(bytes(value), bytes(dek), KEKManager(passphrase=passphrase, kek_version=version), secret_id, name)
            return "ok" if plain == doc["expected"] else "wrong value"
        except Exception as e:  # noqa: BLE001 - any failure is the answer
            return type(e).__name__

    return {"stack": decrypts(doc["passphrase"]), "default": decrypts(DEFAULT_KEK_PASSPHRASE)}


def delete_access_key(doc):
    """What Pulumi does last in a rotation: delete the previous generation's key."""
    _, iam = clients(doc["endpoint"], doc["region"], doc["deployer"]["id"], doc["deployer"]["secret"])
    iam.delete_access_key(UserName=doc["user"], AccessKeyId=doc["keyId"])
    return {"deleted": doc["keyId"]}


def key_probe(doc):
    """Whether an access key still works: one read under the prefix it may read."""
    s3, _ = clients(doc["endpoint"], doc["region"], doc["key"]["id"], doc["key"]["secret"])
    return {"list": outcome(lambda: s3.list_objects_v2(Bucket=doc["bucket"], Prefix=f"{doc['prefix']}/", MaxKeys=1))}


def object_encryption(doc):
    """How S3 stored some objects: the algorithm and the KMS key."""
    s3, _ = clients(doc["endpoint"], doc["region"], doc["deployer"]["id"], doc["deployer"]["secret"])
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=doc["bucket"], Prefix=doc["prefix"]):
        for o in page.get("Contents", []):
            head = s3.head_object(Bucket=doc["bucket"], Key=o["Key"])
            out[o["Key"]] = {"sse": head.get("ServerSideEncryption"), "kmsKeyId": head.get("SSEKMSKeyId")}
    return out


# --- served models: what a model server's MLflow user may read, download and change -------------

# Flowers of every class: the rows each served model is asked about.
IRIS_ROWS = [0, 20, 40, 55, 70, 85, 105, 120, 135, 149]


def iris():
    """The iris data set (shipped with scikit-learn), and the rows to predict."""
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    return data.data, data.target, data.data.iloc[IRIS_ROWS]


def log_sklearn(model, experiment_id, run_name, registered_model, rows):
    """Logs a fitted model with its signature (from two rows) and registers it; returns the version."""
    import mlflow
    import mlflow.sklearn

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=registered_model, input_example=rows.head(2))
    client = mlflow.MlflowClient()
    version = info.registered_model_version
    location = client.get_model_version_download_uri(registered_model, version)
    return {
        "runId": run.info.run_id, "runArtifacts": run.info.artifact_uri.removeprefix("mlflow-artifacts:/"),
        "version": str(version), "modelId": info.model_id,
        # The version's files behind the server's artifact proxy: mlflow-artifacts:/<experiment id>/...
        "files": location.removeprefix("mlflow-artifacts:/"),
        "predictions": model.predict(rows).tolist(),
    }


def serving_train(doc):
    """As the admin: a logistic regression on iris in experiment A, registered and given the alias
    the served model names; another model in experiment B, registered under another name."""
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    X, y, rows = iris()
    client = MlflowClient()
    a = client.create_experiment(doc["experiments"]["a"])
    b = client.create_experiment(doc["experiments"]["b"])
    served = log_sklearn(LogisticRegression(max_iter=1000).fit(X, y), a, "iris-logistic", doc["model"], rows)
    client.set_registered_model_alias(doc["model"], doc["alias"], served["version"])
    secret = log_sklearn(GaussianNB().fit(X, y), b, "secret-bayes", doc["secretModel"], rows)
    return {
        "experiments": {"a": a, "b": b}, "served": served, "secret": secret,
        "payload": {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}},
        "aliasVersion": client.get_model_version_by_alias(doc["model"], doc["alias"]).version,
    }


def serving_rollout(doc):
    """As the admin: a different model logged in a new experiment (one that answers with the
    species' names instead of their numbers), registered as the next version of the served model,
    and the alias moved to it."""
    from mlflow import MlflowClient
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y, rows = iris()
    names = load_iris().target_names[y]
    client = MlflowClient()
    c = client.create_experiment(doc["experiment"])
    version = log_sklearn(LogisticRegression(max_iter=1000).fit(X, names), c, "iris-logistic-names", doc["model"], rows)
    client.set_registered_model_alias(doc["model"], doc["alias"], version["version"])
    return {"experiment": c, **version}


def refusal(call):
    """'ok', or how the server refused: '<HTTP status>: <message>'."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    try:
        call()
        return "ok"
    except RestException as e:
        return f"{e.get_http_status_code()}: {e.error_code} {str(e)[:160]}"
    except requests.HTTPError as e:
        status = e.response.status_code if e.response is not None else None
        return f"{status}: {str(e)[:160]}"
    except MlflowException as e:
        # A refusal the client could not parse as MLflow's JSON error ("Permission denied").
        m = re.search(r"error code (\d{3})|(\d{3}) Client Error", str(e))
        return f"{(m.group(1) or m.group(2)) if m else e.get_http_status_code()}: {str(e)[:160]}"
    except Exception as e:  # noqa: BLE001 - any other failure is the answer
        return f"error: {type(e).__name__} {str(e)[:160]}"


def serving_probe(doc):
    """Everything a model server's user tries, with its own credentials (MLFLOW_TRACKING_USERNAME/
    PASSWORD): reads of its model and of others, downloads, the artifact proxy directly, writes."""
    import mlflow
    import requests
    from mlflow import MlflowClient

    client = MlflowClient()
    work = Path(tempfile.mkdtemp(dir=doc["workDir"]))
    model, alias, secret = doc["model"], doc["alias"], doc["secretModel"]
    a, b = doc["experiments"]["a"], doc["experiments"]["b"]
    run_a, run_b = doc["runs"]["a"], doc["runs"]["b"]
    uri = os.environ["MLFLOW_TRACKING_URI"]
    login = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])

    def download(artifact_uri):
        return lambda: mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tempfile.mkdtemp(dir=work))

    def proxy(method, path, data=None):
        def call():
            r = requests.request(method, f"{uri}/api/2.0/mlflow-artifacts/artifacts/{path}", auth=login, data=data, timeout=60)
            r.raise_for_status()
        return call

    found_in_b = []
    checks = {
        # Its own model: what the init container needs.
        "readModel": lambda: client.get_registered_model(model),
        "readAlias": lambda: client.get_model_version_by_alias(model, alias),
        "readExperimentA": lambda: client.get_experiment(a),
        # Another team's model and experiment.
        "readSecretModel": lambda: client.get_registered_model(secret),
        "readSecretVersion": lambda: client.get_model_version(secret, "1"),
        "readSecretLoggedModel": lambda: client.get_logged_model(doc["secretModelId"]),
        "readExperimentB": lambda: client.get_experiment(b),
        "searchRunsB": lambda: found_in_b.extend(client.search_runs([b])),
        "readRunB": lambda: client.get_run(run_b),
        "listArtifactsB": lambda: client.list_artifacts(run_b),
        "downloadRunB": lambda: mlflow.artifacts.download_artifacts(run_id=run_b, artifact_path="", dst_path=tempfile.mkdtemp(dir=work)),
        # Writes on its own model and experiment.
        "updateModel": lambda: client.update_registered_model(model, description="changed by a model server"),
        "tagModel": lambda: client.set_registered_model_tag(model, "owner", "model-server"),
        "setAlias": lambda: client.set_registered_model_alias(model, "hijacked", "1"),
        "tagVersion": lambda: client.set_model_version_tag(model, "1", "validated", "false"),
        "createVersion": lambda: client.create_model_version(model, f"mlflow-artifacts:/{doc['files']['served']}"),
        "createRunInA": lambda: client.create_run(a),
        "logMetricInA": lambda: client.log_metric(run_a, "planted", 1.0),
        "tagExperimentA": lambda: client.set_experiment_tag(a, "owner", "model-server"),
        "uploadToA": proxy("PUT", f"{doc['runArtifacts']['a']}/planted.txt", b"planted"),
        "deleteFileInA": proxy("DELETE", f"{doc['files']['served']}/MLmodel"),
        "createUser": lambda: auth_client().create_user(f"planted-{doc['tag']}", "Planted-password-1"),
        "deleteAlias": lambda: client.delete_registered_model_alias(model, alias),
        "deleteVersion": lambda: client.delete_model_version(model, "1"),
        "deleteRunInA": lambda: client.delete_run(run_a),
        "deleteExperimentA": lambda: client.delete_experiment(a),
        "deleteModel": lambda: client.delete_registered_model(model),
    }
    for name, artifact_uri in doc["downloads"].items():
        checks[f"download:{name}"] = download(artifact_uri)
    for name, path in doc["files"].items():
        checks[f"proxyGet:{name}"] = proxy("GET", f"{path}/MLmodel")
    out = {"user": login[0]}
    if "only" in doc:
        # A few checks again, after a change of grants.
        return {**out, **{name: refusal(checks[name]) for name in doc["only"]}}
    # What it may see at all.
    out["visibleModels"] = sorted(m.name for m in client.search_registered_models())
    out["visibleExperiments"] = sorted(e.experiment_id for e in client.search_experiments())
    # Deletions last: one that went through would spoil the checks after it.
    for name in sorted(checks, key=lambda n: n.startswith("delete")):
        out[name] = refusal(checks[name])
    out["runsFoundInB"] = len(found_in_b)
    # What MLflow lets every authenticated user do, whatever the grants: reported, not refused.
    out["mlflowAllows"] = {
        "createExperiment": refusal(lambda: client.create_experiment(f"created-by-{login[0]}-{doc['tag']}")),
        "createRegisteredModel": refusal(lambda: client.create_registered_model(f"created-by-{login[0]}-{doc['tag']}")),
    }
    return out


# --- garbage collection --------------------------------------------------------------------------


def gc_seed(doc):
    """As the admin, through the server: one experiment, a run per name with params, metrics, tags and
    artifacts (files and a directory, through the artifact proxy), then the named runs deleted."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    work = Path(doc["workDir"])
    experiment_id = client.create_experiment(f"gc-{doc['tag']}")
    runs = {}
    for name in doc["runs"]:
        files = work / name
        (files / "nested").mkdir(parents=True, exist_ok=True)
        (files / "model.txt").write_text(f"{name}\n" * 200)
        (files / "nested" / "data.csv").write_text("x,y\n" + "".join(f"{i},{i * i}\n" for i in range(100)))
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            mlflow.log_params({"alpha": "0.5", "run": name})
            for step in range(5):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.set_tags({"purpose": "gc", "run": name})
            mlflow.log_artifacts(str(files), artifact_path="outputs")
            mlflow.log_text(f"notes of {name}", "notes/readme.txt")
        runs[name] = {"id": run.info.run_id, "artifactUri": run.info.artifact_uri}
    for name in doc["delete"]:
        client.delete_run(runs[name]["id"])
    return {"experimentId": experiment_id, "runs": runs}


def gc_runs(doc):
    """Each run's lifecycle stage through the server, or the error code it answers with; and, for the
    runs that exist, the files the server lists under it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()

    def files(run_id, path=None):
        out = []
        for f in client.list_artifacts(run_id, path):
            out.extend(files(run_id, f.path) if f.is_dir else [f.path])
        return sorted(out)

    out = {}
    for run_id in doc["runIds"]:
        try:
            out[run_id] = {"lifecycle": client.get_run(run_id).info.lifecycle_stage, "files": files(run_id)}
        except MlflowException as e:
            out[run_id] = {"error": e.error_code}
    return out


def artifact_objects(doc):
    """Objects under a key prefix, as the deployer: the current ones (key, size, ETag), and how many
    versions and delete markers the versioned bucket keeps there."""
    s3, _ = clients(doc["endpoint"], doc["region"], doc["deployer"]["id"], doc["deployer"]["secret"])
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=doc["bucket"], Prefix=doc["prefix"]):
        objects.extend({"key": o["Key"], "size": o["Size"], "etag": o["ETag"].strip('"')} for o in page.get("Contents", []))
    versions = markers = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=doc["bucket"], Prefix=doc["prefix"]):
        versions += len(page.get("Versions", []))
        markers += len(page.get("DeleteMarkers", []))
    return {"objects": sorted(objects, key=lambda o: o["key"]), "versions": versions, "deleteMarkers": markers}


def user_policy(doc):
    """Puts (with a document) or deletes an inline policy of an IAM user, as the deployer."""
    _, iam = clients(doc["endpoint"], doc["region"], doc["deployer"]["id"], doc["deployer"]["secret"])
    if doc.get("document") is None:
        iam.delete_user_policy(UserName=doc["user"], PolicyName=doc["name"])
    else:
        iam.put_user_policy(UserName=doc["user"], PolicyName=doc["name"], PolicyDocument=json.dumps(doc["document"]))
    return {"policies": iam.list_user_policies(UserName=doc["user"])["PolicyNames"]}


def multipart_uploads(doc):
    """Multipart uploads started and neither completed nor aborted under a key prefix, as the deployer."""
    s3, _ = clients(doc["endpoint"], doc["region"], doc["deployer"]["id"], doc["deployer"]["secret"])
    listed = s3.list_multipart_uploads(Bucket=doc["bucket"], Prefix=doc["prefix"])
    return {"uploads": [{"key": u["Key"], "uploadId": u["UploadId"]} for u in listed.get("Uploads", [])]}


def verify_writes(doc):
    """Reads back every acknowledged write of writers.py (acked.jsonl): each run, its params, the
    metrics' values, its tags, each artifact's bytes (SHA-256) and its end. Returns the counts and
    whatever is missing or different."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = {}
    ops = 0
    with open(os.path.join(doc["out"], "acked.jsonl")) as f:
        for line in f:
            w = json.loads(line)
            runs.setdefault(w["run"], []).append(w)
            ops += 1
    problems = []
    work = tempfile.mkdtemp(dir=doc.get("workDir"))
    for run_id, writes in sorted(runs.items()):
        try:
            run = client.get_run(run_id)
        except Exception as e:
            problems.append(f"{run_id}: {type(e).__name__}: {e}"[:300])
            continue
        for w in writes:
            if w["op"] == "log_batch":
                for k, v in w["params"].items():
                    if run.data.params.get(k) != v:
                        problems.append(f"{run_id}: param {k} = {run.data.params.get(k)!r}, acknowledged {v!r}")
                for k, v in w["metrics"].items():
                    if run.data.metrics.get(k) != v:
                        problems.append(f"{run_id}: metric {k} = {run.data.metrics.get(k)!r}, acknowledged {v!r}")
            if w["op"] in ("log_batch", "set_tag"):
                for k, v in w["tags"].items():
                    if run.data.tags.get(k) != v:
                        problems.append(f"{run_id}: tag {k} = {run.data.tags.get(k)!r}, acknowledged {v!r}")
            if w["op"] == "log_artifact":
                local = client.download_artifacts(run_id, w["path"], os.path.join(work, run_id))
                if sha256_file(local) != w["sha256"]:
                    problems.append(f"{run_id}: artifact {w['path']} differs from what was acknowledged")
            if w["op"] == "set_terminated" and run.info.status != "FINISHED":
                problems.append(f"{run_id}: status {run.info.status}, acknowledged FINISHED")
    return {"runs": len(runs), "writes": ops, "problems": problems[:50], "problemCount": len(problems)}


def schema_check(doc):
    """Whether this venv's MLflow would serve the tracking database at `uri` (its startup check)."""
    from sqlalchemy import create_engine

    from mlflow.store.db.utils import _verify_schema

    engine = create_engine(doc["uri"])
    try:
        _verify_schema(engine)
        return {"ok": True}
    except Exception as e:
        return {"error": str(e)}
    finally:
        engine.dispose()


def main():
    command = sys.argv[1]
    doc = json.loads(sys.stdin.read())
    handlers = {
        "provision": provision,
        "s3-probe": s3_probe,
        "scientist": scientist,
        "scientist-presigned": scientist_presigned,
        "seed": seed,
        "inventory": inventory,
        "backup-probe": backup_probe,
        "backup-objects": backup_objects,
        "kek-check": kek_check,
        "bootstrap": bootstrap,
        "kms-key": kms_key,
        "delete-access-key": delete_access_key,
        "key-probe": key_probe,
        "object-encryption": object_encryption,
        "multipart-uploads": multipart_uploads,
        "user-policy": user_policy,
        "serving-train": serving_train,
        "serving-rollout": serving_rollout,
        "serving-probe": serving_probe,
        "gc-seed": gc_seed,
        "gc-runs": gc_runs,
        "artifact-objects": artifact_objects,
        "verify-writes": verify_writes,
        "schema-check": schema_check,
    }
    result = handlers[command](doc)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
