"""32 concurrent logins against the real server: hashing stays capped, memory bounded.

Also: X-Forwarded-For from 127.0.0.1 is not believed (NEXTOFFER_FORWARDED_ALLOW_IPS is
empty), and the public development secret serves only with the development flag. The
server runs on a copy of the session's trained SQLite world (its registry is migrated
already). No timing is asserted: latency under login load is in bench/serve.py.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from nextoffer.domain.roles import Role
from nextoffer.serving.users import create_user
from nextoffer.store.engine import make_engine
from tests.e2e.server import ApiServer, copy_world, world_env

PASSWORD = "correct horse battery staple"
# The development secret of deploy/secrets/generate.sh --dev: refused without the flag
# (tests/integration/test_login_throttle.py), served with it here.
DEV_SECRET = "dev-jwt-secret-not-secret-at-least-32-chars"
CAP = 2
LOGINS = 32
RSS_LIMIT_MB = 600


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match[1]) / 1024


def _gauge(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match[1])


def test_32_concurrent_logins_queue_for_the_hashing_cap_in_bounded_memory(
    sqlite_world: Path, tmp_path: Path
) -> None:
    var_dir = copy_world(sqlite_world, tmp_path / "world")
    env = world_env(var_dir, f"sqlite:///{var_dir / 'nextoffer.db'}")
    env.update(
        NEXTOFFER_JWT_SECRET=DEV_SECRET,
        NEXTOFFER_ALLOW_INSECURE_SECRETS="true",
        NEXTOFFER_LOGIN_HASH_CONCURRENCY=str(CAP),
        NEXTOFFER_LOGIN_HASH_WAIT_S="300",
    )
    engine = make_engine(env["NEXTOFFER_DATABASE_URL"])
    try:
        create_user(engine, "alice", PASSWORD, Role.VIEWER)
    finally:
        engine.dispose()

    server = ApiServer(env, tmp_path / "api.log").start()
    try:
        assert server.process is not None
        with httpx.Client(base_url=server.url, timeout=300) as client:

            def one(_: int) -> int:
                body = {"username": "alice", "password": PASSWORD}
                return client.post("/v1/auth/token", json=body).status_code

            with ThreadPoolExecutor(max_workers=LOGINS) as pool:
                statuses = list(pool.map(one, range(LOGINS)))
            assert statuses == [200] * LOGINS
            metrics = client.get("/metrics").text
            # Never more than the cap at once, and the cap was reached: the others queued.
            assert _gauge(metrics, "nextoffer_password_checks_in_flight_max") == CAP
            assert _gauge(metrics, "nextoffer_password_checks_in_flight") == 0
            assert _gauge(metrics, "nextoffer_password_checks_waiting") == 0
            assert _peak_rss_mb(server.process.pid) < RSS_LIMIT_MB, server.log_tail()

            # X-Forwarded-For from 127.0.0.1 is not believed: every guess counts against
            # 127.0.0.1, whatever address the header claims.
            guess = {"username": "alice", "password": "guess"}
            for i in range(6):
                forged = {"X-Forwarded-For": f"203.0.113.{i}"}
                assert client.post("/v1/auth/token", json=guess, headers=forged).status_code == 401
            locked = client.post(
                "/v1/auth/token",
                json={"username": "alice", "password": PASSWORD},
                headers={"X-Forwarded-For": "198.51.100.99"},
            )
            assert locked.status_code == 429, locked.text
            assert int(locked.headers["retry-after"]) >= 1
    finally:
        server.stop()
