"""Open alerts from Alertmanager's v2 API, for the overview; never slows a page for long."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

TIMEOUT_S = 2.0
_MAX_BYTES = 2_000_000
_SHOWN = 20

AlertsState = Literal["not configured", "unreachable", "ok"]


@dataclass(frozen=True)
class Alert:
    """One firing alert."""

    name: str
    severity: str
    summary: str
    starts_at: str


@dataclass(frozen=True)
class AlertsView:
    """What the overview shows: the state of the source and the open alerts."""

    state: AlertsState
    alerts: list[Alert] = field(default_factory=list)
    total: int = 0
    detail: str = ""


def open_alerts(base_url: str, timeout_s: float = TIMEOUT_S) -> AlertsView:
    """GET `{base_url}/api/v2/alerts?active=true`; suppressed (silenced) alerts are left out.

    "not configured" without a URL; "unreachable" with a one-line reason when the request
    fails or the answer is not Alertmanager's list. The URL itself is never shown: it may
    carry credentials.
    """
    if not base_url:
        return AlertsView("not configured")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return AlertsView("unreachable", detail="NEXTOFFER_ALERTMANAGER_URL is not an http(s) URL")
    url = base_url.rstrip("/") + "/api/v2/alerts?active=true"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310 - scheme checked above
            data = json.loads(answer.read(_MAX_BYTES))
    except urllib.error.HTTPError as exc:
        return AlertsView("unreachable", detail=f"Alertmanager answered {exc.code}")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return AlertsView("unreachable", detail=f"{type(exc).__name__}: {reason}"[:200])
    if not isinstance(data, list):
        return AlertsView("unreachable", detail="the answer is not a list of alerts")
    firing = [a for a in data if isinstance(a, dict) and _state(a) != "suppressed"]
    firing.sort(key=lambda a: (_severity_rank(_label(a, "severity")), str(a.get("startsAt", ""))))
    return AlertsView(
        "ok",
        [
            Alert(
                name=_label(a, "alertname") or "(unnamed)",
                severity=_label(a, "severity") or "none",
                summary=_annotation(a, "summary") or _annotation(a, "description"),
                starts_at=str(a.get("startsAt", ""))[:19].replace("T", " "),
            )
            for a in firing[:_SHOWN]
        ],
        total=len(firing),
    )


def _state(alert: dict[str, Any]) -> str:
    status = alert.get("status")
    return str(status.get("state", "")) if isinstance(status, dict) else ""


def _label(alert: dict[str, Any], name: str) -> str:
    labels = alert.get("labels")
    return str(labels.get(name, "")) if isinstance(labels, dict) else ""


def _annotation(alert: dict[str, Any], name: str) -> str:
    notes = alert.get("annotations")
    return str(notes.get(name, ""))[:300] if isinstance(notes, dict) else ""


def _severity_rank(severity: str) -> int:
    order = {"critical": 0, "page": 0, "error": 1, "warning": 2, "info": 3}
    return order.get(severity.lower(), 4)
