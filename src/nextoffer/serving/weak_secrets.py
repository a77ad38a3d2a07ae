"""Known, example and guessable secrets, refused unless NEXTOFFER_ALLOW_INSECURE_SECRETS."""

from __future__ import annotations

import itertools
from pathlib import Path

from nextoffer.config import Settings
from nextoffer.domain.errors import ConfigError

INSECURE_SETTING = "NEXTOFFER_ALLOW_INSECURE_SECRETS"

# Values published in this repository (deploy/secrets/generate.sh --dev, docs, tests): anyone
# can sign tokens with them. The marker words below catch the rest of the dev family.
KNOWN_SECRETS = frozenset(
    {
        "dev-jwt-secret-not-secret-at-least-32-chars",
        "s" * 16 + "0123456789abcdef" * 3,
        "s" * 64,
    }
)
_MARKERS = ("not-secret", "notsecret", "changeme", "change-me", "example", "placeholder")
_MIN_DISTINCT = 8
# In a random key almost every run of three characters is new; in a repeated pattern few are.
_MIN_NEW_TRIGRAMS = 0.7


def weakness(value: str) -> str | None:
    """Why `value` must not be used as a secret, or None when nothing is wrong with it."""
    if value in KNOWN_SECRETS:
        return "is a value published with nextoffer (development, docs or tests)"
    lowered = value.lower()
    for marker in _MARKERS:
        if marker in lowered:
            return f"looks like an example value (it contains {marker!r})"
    if len(set(value)) < _MIN_DISTINCT:
        return f"uses only {len(set(value))} different characters"
    trigrams = [value[i : i + 3] for i in range(len(value) - 2)]
    if len(set(trigrams)) < _MIN_NEW_TRIGRAMS * len(trigrams):
        return "is a repeated pattern, easy to guess"
    steps = sum(1 for a, b in itertools.pairwise(value) if ord(b) - ord(a) == 1)
    if steps * 2 > len(value):
        return "is mostly a run of successive characters, easy to guess"
    return None


def secret_problems(settings: Settings) -> list[str]:
    """One line per known, example or weak secret configured (or stored under VAR_DIR)."""
    found = []
    for name, configured in (
        ("NEXTOFFER_JWT_SECRET", settings.jwt_secret),
        ("NEXTOFFER_PRIVACY_KEY", settings.privacy_key),
    ):
        file = settings.var_dir / "secrets" / name.removeprefix("NEXTOFFER_").lower()
        value, where = (configured, name) if configured else (_read(file), str(file))
        reason = weakness(value) if value else None
        if reason:
            found.append(f"{where} {reason}; use e.g. `openssl rand -hex 32`")
    return found


def check_secret(value: str, where: str, settings: Settings) -> None:
    """ConfigError when `value` is weak, unless the development flag allows it."""
    reason = weakness(value)
    if reason and not settings.allow_insecure_secrets:
        raise ConfigError(
            f"{where} {reason}: refusing to use it. Set a random one (e.g. `openssl rand "
            f"-hex 32`), or {INSECURE_SETTING}=true for development only"
        )


def refuse_insecure_secrets(settings: Settings) -> None:
    """ConfigError naming every weak secret, unless the development flag allows them."""
    problems = secret_problems(settings)
    if problems and not settings.allow_insecure_secrets:
        raise ConfigError(
            "; ".join(problems)
            + f". Refusing to start; {INSECURE_SETTING}=true allows it (development only)"
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
