"""Errors a user can act on; the CLI prints them as one line, the API as problem JSON."""

from __future__ import annotations


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


class RegistryError(NextOfferError):
    """The model registry cannot do what was asked: no champion, a pruned version, no history."""


class NotFoundError(NextOfferError):
    """A record asked for by its id (an experiment, a customer...) does not exist."""
