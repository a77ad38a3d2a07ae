""".env.example: generated from the Settings model, so it documents every variable there is."""

from __future__ import annotations

import re
import subprocess
import sys

from nextoffer.config import describe_settings
from tests.deploy.tools import DEPLOY, ROOT

GENERATOR = DEPLOY / "env_example.py"
EXAMPLE = ROOT / ".env.example"


def test_env_example_is_what_the_settings_say() -> None:
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def documented() -> set[str]:
    return set(re.findall(r"^# ([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))


def test_every_setting_and_no_stale_one_is_documented() -> None:
    names = {name for name, _, _ in describe_settings()}
    found = {name for name in documented() if name.startswith("NEXTOFFER_")}
    assert found == names
    text = EXAMPLE.read_text()
    for name, _, description in describe_settings():
        # Each entry carries the setting's own description, not a stale copy.
        first_words = " ".join(description.split()[:3])
        entry = text[text.index(f"# {name}: ") :][:600]
        assert first_words in " ".join(entry.replace("#", " ").split()), name


def test_every_compose_variable_is_documented() -> None:
    sys.path.insert(0, str(DEPLOY))
    try:
        from env_example import compose_variables  # type: ignore[import-not-found, unused-ignore]
    finally:
        sys.path.remove(str(DEPLOY))
    used = compose_variables()
    assert {"DEPLOY_DOMAIN", "DEPLOY_ACME_EMAIL", "DEPLOY_IMAGE"} <= used
    assert used - documented() == set()


def test_examples_hold_no_secret() -> None:
    for line in EXAMPLE.read_text().splitlines():
        # A yes/no flag such as NEXTOFFER_ALLOW_INSECURE_SECRETS=false is no secret.
        assert not re.search(r"(PASSWORD|SECRET)[A-Z_]*=(?!(true|false)$)\S", line), line
        # A URL may name a user, never a password (user:password@host).
        assert not re.search(r"://[^/@\s:]*:[^/@\s]+@", line), line
