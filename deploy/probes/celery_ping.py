"""Container health probe: exit 0 when this container's Celery worker (or beat) answers a ping.

Used as the healthcheck of the `worker` and `beat` services (deploy/compose.yaml). It sends
Celery's remote-control `ping` through the broker to this container's own node
(`celery@<hostname>` for a worker, `celerybeat@<hostname>` for beat) and exits 0 only when
that node replies: proof that the process runs, is connected to the broker and consumes
messages. Only Celery is imported, not nextoffer's tasks, so a probe costs ~50 MB and a
second instead of the ~300 MB and several seconds of `celery -A nextoffer.worker.app inspect
ping` inside the container's memory limit. Beat answers only with remote control enabled
(Celery >= 5.7, `beat_enable_remote_control`), and stops answering once its scheduler stalls.

Usage: python celery_ping.py worker|beat   (broker URL from NEXTOFFER_BROKER_URL_FILE or
NEXTOFFER_BROKER_URL; PROBE_TIMEOUT_S, default 5; PROBE_HOSTNAME overrides the host name).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

NODE_PREFIX = {"worker": "celery", "beat": "celerybeat"}


def broker_url() -> str:
    """The broker URL, from the Docker secret file when one is named (as the app reads it)."""
    path = os.environ.get("NEXTOFFER_BROKER_URL_FILE", "")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return os.environ.get("NEXTOFFER_BROKER_URL", "")


def main(argv: list[str]) -> int:
    """Exit status 0 when the node of this container replies to a ping, 1 otherwise."""
    role = argv[1] if len(argv) > 1 else "worker"
    if role not in NODE_PREFIX:
        print(f"usage: {argv[0]} worker|beat", file=sys.stderr)
        return 2
    url = broker_url()
    if not url:
        print("probe: no broker URL (NEXTOFFER_BROKER_URL_FILE or NEXTOFFER_BROKER_URL)")
        return 1
    from celery import Celery

    node = f"{NODE_PREFIX[role]}@{os.environ.get('PROBE_HOSTNAME') or socket.gethostname()}"
    app = Celery("probe", broker=url, set_as_current=False)
    # A dead broker must fail the probe within its timeout, not be retried for minutes.
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_timeout = 3
    timeout_s = float(os.environ.get("PROBE_TIMEOUT_S", "5"))
    try:
        replies = app.control.ping(destination=[node], timeout=timeout_s)
    except Exception as exc:  # any broker failure is simply "not healthy"
        print(f"probe: {node}: broker unreachable: {type(exc).__name__}: {exc}")
        return 1
    finally:
        app.close()
    if any(node in reply for reply in replies):
        print(f"probe: {node}: pong")
        return 0
    print(f"probe: {node}: no reply within {timeout_s:g} s")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
