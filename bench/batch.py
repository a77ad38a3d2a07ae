"""`POST /v1/offers:batch` of 1,000 ids against 1,000 single calls, in process.

    python -m bench.batch VAR_DIR [--cache redis://127.0.0.1:6379/11] [--n 1000]

VAR_DIR is a trained world (e.g. `nextoffer quickstart --no-serve`'s, or the e2e tests'
SQLite world, copied: the run writes exposures and audit entries into it). Each case runs
on an emptied cache first (cold: the precomputed table) and again (warm: the cache).
Counts SQL statements and cache round trips per case; the rate limit is off.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, select

from nextoffer.asgi import create_app
from nextoffer.cache import Cache, make_cache
from nextoffer.config import Settings
from nextoffer.serving.api_keys import create_api_key
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Customer


class CountingCache:
    """A cache that counts its round trips (one per call, MGET included)."""

    def __init__(self, inner: Cache) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    def _count(self, result: Any) -> Any:
        self.calls += 1
        return result

    def get(self, key: str) -> str | None:
        return self._count(self.inner.get(key))  # type: ignore[no-any-return]

    def mget(self, keys: Sequence[str]) -> list[str | None]:
        return self._count(self.inner.mget(keys))  # type: ignore[no-any-return]

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        self.calls += 1
        self.inner.set(key, value, ttl_s)

    def set_many(self, items: Mapping[str, str], ttl_s: float | None = None) -> None:
        self.calls += 1
        self.inner.set_many(items, ttl_s)

    def delete(self, *keys: str) -> int:
        return self._count(self.inner.delete(*keys))  # type: ignore[no-any-return]

    def delete_prefix(self, prefix: str) -> int:
        return self._count(self.inner.delete_prefix(prefix))  # type: ignore[no-any-return]

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return self._count(self.inner.keys_with_prefix(prefix))  # type: ignore[no-any-return]

    def incr(self, key: str, ttl_s: float, amount: int = 1) -> int:
        return self._count(self.inner.incr(key, ttl_s, amount))  # type: ignore[no-any-return]

    def ping(self) -> bool:
        return self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("var_dir", type=Path)
    parser.add_argument("--cache", default="memory://")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    var_dir: Path = args.var_dir.resolve()
    os.environ.update(
        NEXTOFFER_VAR_DIR=str(var_dir),
        NEXTOFFER_DATABASE_URL=f"sqlite:///{var_dir / 'nextoffer.db'}",
        NEXTOFFER_REGISTRY_URI=f"sqlite:///{var_dir / 'mlflow.db'}",
        NEXTOFFER_ARTIFACTS_URL=f"file://{var_dir / 'artifacts'}",
        NEXTOFFER_RATE_LIMIT_PER_MINUTE="0",
        NEXTOFFER_LOG_LEVEL="WARNING",
    )
    settings = Settings()
    engine = make_engine(settings.database_url)
    statements = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        statements[0] += 1

    cache = CountingCache(make_cache(args.cache))
    with engine.connect() as conn:
        ids = list(conn.execute(select(Customer.customer_id).order_by(Customer.customer_id)))
    customers = [str(row[0]) for row in ids][: args.n]
    _, key = create_api_key(engine, "bench-batch", "viewer")
    app = create_app(settings, engine=engine, cache=cache)
    headers = {"X-API-Key": key}
    results: dict[str, dict[str, float]] = {}
    with TestClient(app) as client:

        def batch() -> None:
            answer = client.post(
                "/v1/offers:batch", json={"customer_ids": customers}, headers=headers
            )
            assert answer.status_code == 200, answer.text

        def singles() -> None:
            for customer in customers:
                answer = client.get(f"/v1/customers/{customer}/offers", headers=headers)
                assert answer.status_code == 200, answer.text

        def measure(name: str, run: Callable[[], None]) -> None:
            statements[0], cache.calls = 0, 0
            started, cpu = time.perf_counter(), time.process_time()
            run()
            results[name] = {
                "seconds": round(time.perf_counter() - started, 3),
                "cpu_seconds": round(time.process_time() - cpu, 3),
                "sql_statements": statements[0],
                "cache_round_trips": cache.calls,
            }

        def empty_cache() -> None:
            for prefix in ("offers:", "consent:"):
                cache.inner.delete_prefix(prefix)

        for name, run in (("singles", singles), ("batch", batch)):
            empty_cache()
            measure(f"{name}_cold", run)
            measure(f"{name}_warm", run)
    print(json.dumps({"customers": len(customers), "cache": cache.name, **results}, indent=2))


if __name__ == "__main__":
    main()
