"""The quickstart's stage clock: seconds per stage, from `make run` to the API's first answer."""

from __future__ import annotations

import resource
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def cpu_seconds() -> float:
    """User and system CPU of this process and its finished children (load-independent)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class StageClock:
    """Wall-clock laps, with the CPU seconds each stage used (a busy machine stretches wall time).

    Wall time, not a monotonic clock, because `make run` hands over its start as `date +%s.%N`.
    """

    def __init__(self, clock_start: float | None = None, install_done: float | None = None):
        now = time.time()
        self.started = clock_start if clock_start is not None else now
        self.laps: list[tuple[str, float, float | None]] = []
        self._last = self.started
        self._last_cpu = 0.0
        if install_done is not None:
            self.lap("install", install_done, own_cpu=False)  # make's pip and uv, not ours
            # Python's start and nextoffer's imports, before the first stage begins.
            self.lap("start-up", now)

    def lap(self, stage: str, at: float | None = None, *, own_cpu: bool = True) -> None:
        """Close `stage` now (or at `at`): its seconds are the time since the previous lap."""
        at = time.time() if at is None else at
        used = None
        if own_cpu:
            spent = cpu_seconds()
            used, self._last_cpu = spent - self._last_cpu, spent
        self.laps.append((stage, max(0.0, at - self._last), used))
        self._last = at

    def table(self) -> str:
        """The stages, their wall and CPU seconds, then the totals since the clock started."""
        width = max(len(stage) for stage, _, _ in [*self.laps, ("total", 0.0, None)])
        lines = [f"{'stage':<{width}}  seconds  cpu s"]
        for stage, seconds, cpu in self.laps:
            shown = "    –" if cpu is None else f"{cpu:5.1f}"
            lines.append(f"{stage:<{width}}  {seconds:7.1f}  {shown}")
        cpu_total = sum(cpu for _, _, cpu in self.laps if cpu is not None)
        lines.append(f"{'total':<{width}}  {self._last - self.started:7.1f}  {cpu_total:5.1f}")
        return "\n".join(lines)


def answer_url(host: str, port: int, customer_id: str) -> str:
    """The offers URL of one customer on the served API (a wildcard bind is asked on loopback)."""
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 — only compared, never bound here
        host = "127.0.0.1"
    return f"http://{host}:{port}/v1/customers/{customer_id}/offers"


def wait_for_first_answer(
    url: str, api_key: str, on_answer: Callable[[], None], timeout_s: float = 300.0
) -> threading.Thread:
    """Ask `url` until it answers 200 (the server is starting beside it), then `on_answer()`."""

    def poll() -> None:
        deadline = time.monotonic() + timeout_s
        # Our own server's http:// URL (answer_url): no user-supplied scheme.
        request = urllib.request.Request(url, headers={"X-API-Key": api_key})  # noqa: S310
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                    if response.status == 200:
                        on_answer()
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            time.sleep(0.05)

    thread = threading.Thread(target=poll, name="first-answer", daemon=True)
    thread.start()
    return thread
