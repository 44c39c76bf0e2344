"""Prometheus exporter beside the tracking server.

The server's workers (started with --expose-prometheus) write their request counters into the
shared multiprocess directory named by PROMETHEUS_MULTIPROC_DIR. This process sums them on every
scrape and answers on a port of its own: the server's port refuses a pod-IP Host header and asks
for a login, neither of which a scraper has. It serves metrics only, reads the directory only,
and holds no credential.

Usage: metrics.py --host <address> --port <port>
"""

import argparse
import os
import signal
import sys

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not os.path.isdir(directory):
        print(f"metrics: PROMETHEUS_MULTIPROC_DIR {directory!r} is not a directory", file=sys.stderr)
        return 1
    # Blocked before the server thread starts (it inherits the mask), then waited for below.
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    server, _thread = start_http_server(options.port, addr=options.host, registry=registry)
    print(f"metrics: serving {directory} on {options.host}:{options.port}", flush=True)
    signal.sigwait(stop)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
