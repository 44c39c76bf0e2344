"""Data scientists logging while the platform changes under them: N writer threads, each with the
real MLflow client, in a loop of runs (create, log_batch of metrics, params, tags, one artifact,
end), until a stop file appears or a time limit passes.

    python writers.py <config.json>

config: {"clients": 8, "experiment": name, "out": dir, "stopFile": path, "maxSeconds": s}; the
tracking URI and login come from MLFLOW_TRACKING_* in the environment, the client's retries from
MLFLOW_HTTP_REQUEST_* (unset: MLflow's defaults).

Every call that returned is an acknowledged write, appended to <out>/acked.jsonl as it returns:
what the server confirmed is what must be there afterwards (verify in contract.py). A call that
raised (the client's retries exhausted) goes to <out>/failed.jsonl. Each retry urllib3 makes is
counted from its own log record. <out>/summary.json is written at the end.
"""

import hashlib
import json
import logging
import os
import sys
import threading
import time


class RetryCounter(logging.Handler):
    """Counts urllib3's 'Retrying (...) after connection broken by ...' warnings."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0
        self.first = None
        self.last = None
        self.samples = []
        self.guard = threading.Lock()

    def emit(self, record):
        message = record.getMessage()
        if "Retrying" in message:
            with self.guard:
                self.count += 1
                self.first = self.first or time.time()
                self.last = time.time()
                if len(self.samples) < 5:
                    self.samples.append(message[:300])


def main():
    config = json.load(open(sys.argv[1]))
    out = config["out"]
    os.makedirs(out, exist_ok=True)
    retries = RetryCounter()
    logging.getLogger("urllib3.connectionpool").addHandler(retries)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.WARNING)

    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(config["experiment"])
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(config["experiment"])
    lock = threading.Lock()
    acked = open(os.path.join(out, "acked.jsonl"), "a")
    failed = open(os.path.join(out, "failed.jsonl"), "a")
    counts = {"calls": 0, "failed": 0, "runs": 0}
    deadline = time.time() + config.get("maxSeconds", 600)
    stop_file = config["stopFile"]

    def record(f, doc):
        with lock:
            f.write(json.dumps(doc) + "\n")
            f.flush()

    def writer(n):
        work = os.path.join(out, f"writer-{n}")
        os.makedirs(work, exist_ok=True)
        i = 0
        while not os.path.exists(stop_file) and time.time() < deadline:
            i += 1
            run_id = None
            step = "create_run"
            try:
                run = client.create_run(experiment_id, run_name=f"writer-{n}-{i}")
                run_id = run.info.run_id
                record(acked, {"op": "create_run", "run": run_id, "t": time.time()})
                now = int(time.time() * 1000)
                step = "log_batch"
                metrics = [Metric(f"loss_{k}", float(i * 10 + k), now, k) for k in range(20)]
                params = [Param(f"param_{k}", f"{n}-{i}-{k}") for k in range(5)]
                tags = [RunTag("writer", str(n)), RunTag("iteration", str(i))]
                client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
                record(acked, {"op": "log_batch", "run": run_id, "t": time.time(),
                               "metrics": {m.key: m.value for m in metrics}, "params": {p.key: p.value for p in params},
                               "tags": {t.key: t.value for t in tags}})
                step = "set_tag"
                client.set_tag(run_id, "stage", "logged")
                record(acked, {"op": "set_tag", "run": run_id, "t": time.time(), "tags": {"stage": "logged"}})
                step = "log_artifact"
                body = f"writer {n} iteration {i} {time.time()}\n".encode() * 64
                local = os.path.join(work, f"notes-{i}.txt")
                with open(local, "wb") as f:
                    f.write(body)
                client.log_artifact(run_id, local)
                record(acked, {"op": "log_artifact", "run": run_id, "t": time.time(), "path": f"notes-{i}.txt",
                               "sha256": hashlib.sha256(body).hexdigest()})
                step = "set_terminated"
                client.set_terminated(run_id)
                record(acked, {"op": "set_terminated", "run": run_id, "t": time.time()})
                with lock:
                    counts["calls"] += 6
                    counts["runs"] += 1
            except Exception as e:  # the client's retries are exhausted: a write the user sees fail
                record(failed, {"op": step, "run": run_id, "t": time.time(), "error": f"{type(e).__name__}: {e}"[:500]})
                with lock:
                    counts["failed"] += 1
                time.sleep(0.5)

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(config["clients"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = {**counts, "retries": retries.count, "retrySamples": retries.samples,
               "retriesFirst": retries.first, "retriesLast": retries.last, "mlflow": mlflow.__version__}
    json.dump(summary, open(os.path.join(out, "summary.json"), "w"))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
