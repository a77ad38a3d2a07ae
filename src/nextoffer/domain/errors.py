"""Errors a user can act on; the CLI prints them as one line, the API as problem JSON."""

from __future__ import annotations

from typing import Any


class NextOfferError(Exception):
    """Base for every error that carries a message meant for the person running nextoffer."""


class ConfigError(NextOfferError):
    """A setting is missing or invalid."""


class BackendUnavailableError(NextOfferError):
    """A configured backend (database, cache, broker, store) cannot be reached."""

    def __init__(self, setting: str, target: str, detail: str) -> None:
        self.setting = setting
        self.target = target
        self.detail = detail
        super().__init__(f"{setting}: cannot reach {target}: {detail}")


class InputError(NextOfferError):
    """An input file cannot be used at all (not one bad row: those go to quarantine)."""


class NothingToLearnError(InputError):
    """The data holds nothing a model can learn from (no labels of any kind, no products)."""


class RegistryError(NextOfferError):
    """The model registry cannot do what was asked: no champion, a pruned version, no history."""


class NotFoundError(NextOfferError):
    """A record asked for by its id (an experiment, a customer...) does not exist."""


class ConflictError(NextOfferError):
    """The request clashes with the current state (an experiment already running...)."""


class InvalidRequestError(NextOfferError):
    """A request is well-formed but asks for something that cannot be done as given.

    `kind` names the problem type an API answers with; `extra` adds fields to it (e.g. the
    rejected rows of a batch).
    """

    def __init__(
        self, message: str, *, kind: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.extra = extra or {}


class RateLimitedError(NextOfferError):
    """A caller went over its requests per minute; it may retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class JobConflictError(ConflictError):
    """A job of the same name is already running; this start was refused and not recorded."""


class UnknownJobError(InvalidRequestError):
    """A job was asked for by a name the catalogue does not have."""


class BusyError(NextOfferError):
    """The server has no capacity for this request now; it may retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
