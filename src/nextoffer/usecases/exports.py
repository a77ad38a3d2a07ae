"""Write a result table where the user says: a local file or `s3://bucket/key`, CSV or Parquet."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError
from nextoffer.storage import open_prefix
from nextoffer.storage.base import scratch_file

if TYPE_CHECKING:
    import pandas as pd

FORMATS = (".csv", ".csv.gz", ".parquet")
"""The endings an output may have; the ending decides the format."""


def output_format(out: str) -> str:
    """The format `out` names by its ending; ConfigError for any other ending."""
    name = PurePosixPath(urlsplit(out).path if out.startswith("s3://") else out).name.lower()
    for ending in FORMATS:
        if name.endswith(ending):
            return ending
    raise ConfigError(f"--out {out!r} must end in {', '.join(FORMATS)}")


def write_table(frame: pd.DataFrame, out: str, settings: Settings) -> str:
    """Write `frame` to `out` (a path or s3://bucket/key) in the format of its ending.

    Returns where it went, as given. S3 goes through `nextoffer.storage`
    (NEXTOFFER_S3_ENDPOINT_URL, AWS_* credentials).
    """
    ending = output_format(out)
    if not out.startswith("s3://"):
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(frame, path, ending)
        return out
    parts = urlsplit(out)
    key = PurePosixPath(parts.path.lstrip("/"))
    if not key.name:
        raise ConfigError(f"--out {out!r} names no object (s3://bucket/key.csv)")
    store = open_prefix(
        f"s3://{parts.netloc}/{key.parent}".removesuffix("/."),
        endpoint_url=settings.s3_endpoint_url,
        setting=None,
    )
    with scratch_file() as path:
        _write(frame, path, ending)
        store.upload(path, key.name)
    return out


def _write(frame: pd.DataFrame, path: Path, ending: str) -> None:
    if ending == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, compression="gzip" if ending == ".csv.gz" else None)
