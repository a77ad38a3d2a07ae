"""MLflow, HTTP, database and storage failures as errors that name the setting to fix.

MLflow raises whatever its backends raise: its own MlflowException, requests' errors for a
tracking server, SQLAlchemy's for a database store, botocore's for S3 artifacts. Those
libraries are recognised by module and class name, so this module imports none of them.
"""

from __future__ import annotations

import re

from nextoffer.domain.errors import BackendUnavailableError, NextOfferError, RegistryError
from nextoffer.registry.urls import redact
from nextoffer.storage import is_s3_library_error

_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")
# The errors of MLflow and of its database store, by (library, class name) in the class's
# ancestry; requests' errors are OSErrors already.
_BACKEND_ERRORS = {("mlflow", "MlflowException"), ("sqlalchemy", "SQLAlchemyError")}
# Connection failures by class name: the backend is down or unreachable, not misconfigured.
_UNREACHABLE = {
    # requests / urllib3
    ("requests", "ConnectionError"),
    ("requests", "Timeout"),
    ("requests", "RetryError"),
    # SQLAlchemy: the database refused or dropped the connection
    ("sqlalchemy", "OperationalError"),
    # botocore (as nextoffer.storage.errors.is_unreachable)
    ("botocore", "EndpointConnectionError"),
    ("botocore", "ConnectTimeoutError"),
    ("botocore", "ReadTimeoutError"),
    ("botocore", "ConnectionClosedError"),
}


def is_backend_failure(exc: BaseException) -> bool:
    """True for an error of MLflow, its database store, HTTP, or OS-level I/O."""
    if isinstance(exc, OSError):
        return True
    return any((_library(cls), cls.__name__) in _BACKEND_ERRORS for cls in type(exc).__mro__)


def is_storage_failure(exc: BaseException) -> bool:
    """True for an error of the S3 libraries: the artifact store failed, whatever the call."""
    return is_s3_library_error(exc)


def translate(what: str, exc: BaseException, *, setting: str, target: str) -> NextOfferError:
    """`exc` as BackendUnavailableError when a backend is unreachable, else RegistryError.

    `setting` and `target` (its URL, password masked here) name the backend for a person.
    """
    chain = exception_chain(exc)
    if any(is_unreachable(e) for e in chain):
        return BackendUnavailableError(setting, redact(target), short_detail(chain))
    return RegistryError(f"{what}: {redact(first_line(exc))}")


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and its causes, outermost first (at most 20, cycles cut)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_unreachable(exc: BaseException) -> bool:
    """True for a refused, timed out or dropped connection, in any of the backends."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return any((_library(cls), cls.__name__) in _UNREACHABLE for cls in type(exc).__mro__)


def short_detail(chain: list[BaseException]) -> str:
    """The most telling few words of a failure: the OS error text, or 'timed out'."""
    for exc in chain:
        found = _ERRNO_TEXT.search(str(exc))
        if found:
            return found.group(1).strip().rstrip(".,;:")
    for exc in chain:
        if isinstance(exc, TimeoutError) or any(
            (_library(cls), cls.__name__) == ("requests", "Timeout") for cls in type(exc).__mro__
        ):
            return "timed out"
    return redact(first_line(chain[-1]))


def first_line(exc: BaseException) -> str:
    """The first line of an error's text, at most 300 characters."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _library(cls: type) -> str:
    return cls.__module__.split(".")[0]
