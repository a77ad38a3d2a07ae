"""A run's params, metrics and tags in MLflow's names and per-request limits, checked up front."""

from __future__ import annotations

import json
import numbers
import posixpath
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nextoffer.registry.protocol import TAG_METRIC_NAMES, TAG_PARAM_NAMES

# MLflow's limits (mlflow.utils.validation), checked before a run is created so that a bad
# input fails cleanly instead of leaving a half-logged run behind.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_RUN_TAG_VALUE_LENGTH = 8000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000

# MLflow accepts only these characters in metric and parameter names; `ndcg@10` is refused.
_MLFLOW_NAME = re.compile(r"[\w.\- ]+")
_NOT_MLFLOW_NAME_CHAR = re.compile(r"[^\w.\- ]")


@dataclass(frozen=True)
class BatchChunk:
    """One `log_batch` request: (key, value) params, (key, value) metrics, (key, value) tags."""

    params: list[tuple[str, str]]
    metrics: list[tuple[str, float]]
    tags: list[tuple[str, str]]


@dataclass
class RunBatch:
    """Params, metrics and tags of one run, already in MLflow's names and limits."""

    params: list[tuple[str, str]]
    metrics: list[tuple[str, float]]
    tags: list[tuple[str, str]]
    timestamp_ms: int

    @classmethod
    def build(
        cls, params: Mapping[str, Any], metrics: Mapping[str, float], tags: Mapping[str, str]
    ) -> RunBatch:
        """Check and rename everything; ValueError for what MLflow would refuse."""
        metric_keys = _mlflow_names(metrics, "metric")
        param_keys = _mlflow_names(params, "param")
        run_tags = dict(tags)
        # MLflow cannot store `ndcg@10`; keep the original names so reads give them back.
        renamed_metrics = {k: n for n, k in metric_keys.items() if k != n}
        renamed_params = {k: n for n, k in param_keys.items() if k != n}
        if renamed_metrics:
            run_tags[TAG_METRIC_NAMES] = json.dumps(renamed_metrics, sort_keys=True)
        if renamed_params:
            run_tags[TAG_PARAM_NAMES] = json.dumps(renamed_params, sort_keys=True)
        param_list: list[tuple[str, str]] = []
        for name, value in params.items():
            text = _param_text(value)
            if len(text) > MAX_PARAM_VALUE_LENGTH:
                raise ValueError(
                    f"param {name!r} is {len(text)} characters; MLflow stores at most "
                    f"{MAX_PARAM_VALUE_LENGTH} (log it as a file in the model directory)"
                )
            param_list.append((param_keys[name], text))
        metric_list: list[tuple[str, float]] = []
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"metric {name!r} is not a number: {value!r}")
            metric_list.append((metric_keys[name], float(value)))
        tag_list: list[tuple[str, str]] = []
        for key, value in run_tags.items():
            if not isinstance(value, str):
                raise ValueError(f"tag {key!r} must be a string, got {type(value).__name__}")
            if len(key) > MAX_KEY_LENGTH or len(value) > MAX_RUN_TAG_VALUE_LENGTH:
                raise ValueError(f"tag {key!r} is too long for MLflow")
            tag_list.append((key, value))
        return cls(param_list, metric_list, tag_list, int(time.time() * 1000))

    def chunks(self) -> Iterator[BatchChunk]:
        """Requests within MLflow's per-request limits (usually just one)."""
        metrics, params, tags = self.metrics, self.params, self.tags
        while metrics or params or tags:
            room = MAX_PARAMS_TAGS_PER_BATCH
            batch_params, params = params[:room], params[room:]
            room -= len(batch_params)
            batch_tags, tags = tags[:room], tags[room:]
            batch_metrics = metrics[:MAX_METRICS_PER_BATCH]
            metrics = metrics[MAX_METRICS_PER_BATCH:]
            yield BatchChunk(batch_params, batch_metrics, batch_tags)


def original_names(text: str | None) -> dict[str, str]:
    """The MLflow-name → original-name map stored in a run tag; {} when absent or garbled."""
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def mlflow_name(name: str) -> str:
    """`name` as MLflow accepts it: `ndcg@10` → `ndcg_at_10`, other odd characters → `_`."""
    if _MLFLOW_NAME.fullmatch(name) and posixpath.normpath(name) == name and name != ".":
        return name
    cleaned = _NOT_MLFLOW_NAME_CHAR.sub("_", name.replace("@", "_at_"))
    if posixpath.normpath(cleaned) != cleaned or cleaned in {"", ".", ".."}:
        cleaned = "_" + cleaned.replace("..", "__")
    return cleaned


def _param_text(value: Any) -> str:
    """A param value as text: strings as they are, numbers and containers as JSON."""
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float | list | tuple | dict):
        return json.dumps(value, sort_keys=True, default=_jsonable)
    return str(value)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return value.tolist()
    return str(value)


def _mlflow_names(names: Mapping[str, Any], what: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what} names must be non-empty strings, got {name!r}")
        key = mlflow_name(name)
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"{what} name {name!r} is longer than {MAX_KEY_LENGTH} characters")
        if key in seen:
            raise ValueError(f"{what}s {seen[key]!r} and {name!r} would both be stored as {key!r}")
        seen[key] = name
        keys[name] = key
    return keys
