"""The Dockerfile (hadolint, no finding at any level) and the hashed locks it installs from."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]  # no stubs installed
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.tools import ROOT, hadolint_binary, run

DOCKERFILE = ROOT / "Dockerfile"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
BUILD_LOCK = ROOT / "requirements" / "build.txt"
RUNTIME_EXTRAS = ("postgres", "redis", "worker")


def test_hadolint_finds_nothing() -> None:
    hadolint = hadolint_binary()
    config = ROOT / ".hadolint.yaml"
    done = run([hadolint, "--config", str(config), "--no-color", str(DOCKERFILE)])
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr
    settings = yaml.safe_load(config.read_text())
    # Findings at every level count, and each ignored rule says why next to it.
    assert settings["failure-threshold"] == "info"
    text = config.read_text()
    for rule in settings.get("ignored", []):
        before = text[: text.index(f"- {rule}")]
        assert rule in before.split("ignored:", 1)[1], f"{rule} is ignored without a reason"


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root"))
    done = run([hadolint_binary(), "--config", str(ROOT / ".hadolint.yaml"), str(bad)])
    assert done.returncode != 0 and "DL3002" in done.stdout


def test_the_image_is_multi_stage_unprivileged_and_health_checked() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.MULTILINE)
    assert [name for _, name in stages] == ["build", "airflow", "runtime"]
    runtime = text[text.index("AS runtime") :]
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*--interval=30s", runtime, re.MULTILINE)
    assert "/health" in runtime
    assert 'ENTRYPOINT ["nextoffer"]' in runtime
    # Only the virtualenv comes over from the build: no compiler, no pip, no sources.
    assert re.findall(r"^COPY .*", runtime, re.MULTILINE) == [
        "COPY --from=build /opt/nextoffer /opt/nextoffer"
    ]


def test_dependencies_are_installed_from_hashed_locks_only() -> None:
    text = DOCKERFILE.read_text()
    installs = re.findall(r"pip\S* (?:--python \S+ )?install ([^&]+)", text.replace("\\\n", " "))
    assert installs, "no pip install in the Dockerfile"
    for args in installs:
        args = " ".join(args.split())
        if "-r requirements/" in args:
            assert "--require-hashes" in args, args
            assert "--only-binary=:all:" in args, args
        else:
            # Only our own wheel, built in the stage, without dependencies.
            assert "--no-deps /tmp/wheels/nextoffer-*.whl" in args, args
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") :][:1] == ["*"], ".dockerignore is not an allow-list"
    assert {"!requirements/runtime.txt", "!requirements/build.txt", "!src/"} <= set(ignored)


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name → (version, number of hashes) for every requirement in a `--generate-hashes` lock."""
    found: dict[str, tuple[str, int]] = {}
    text = lock.read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = re.match(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)", block)
        if head:
            found[canonicalize_name(head.group(1).split("[")[0])] = (
                head.group(2),
                block.count("--hash=sha256:"),
            )
    return found


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, BUILD_LOCK], ids=lambda p: p.name)
def test_every_pin_carries_hashes(lock: Path) -> None:
    found = pins(lock)
    assert found, f"{lock} pins nothing"
    for name, (version, hashes) in found.items():
        assert hashes >= 1, f"{lock.name}: {name}=={version} has no hash"


def test_runtime_lock_is_in_sync_with_pyproject() -> None:
    """Every direct runtime dependency is pinned, inside its range, and matches the dev lock.

    Re-resolving needs the index (`make runtime-lock`); this checks what can be checked offline.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [Requirement(r) for r in project["dependencies"]]
    for extra in RUNTIME_EXTRAS:
        direct += [Requirement(r) for r in project["optional-dependencies"][extra]]
    runtime = pins(RUNTIME_LOCK)
    full = pins(ROOT / "requirements" / "lock.txt")
    for requirement in direct:
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"{requirement} is missing from requirements/runtime.txt"
        version = runtime[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (requirement, version)
        assert full.get(name, (version,))[0] == version, f"{name}: runtime and dev locks differ"
        for extra in requirement.extras:
            # psycopg[binary], celery[redis], uvicorn[standard]: the extra's packages too.
            assert extra in ("binary", "redis", "standard"), extra
    assert "psycopg-binary" in runtime and "redis" in runtime and "celery" in runtime
    # Dev tools stay out of the image.
    for tool in ("pytest", "ruff", "mypy", "hypothesis", "moto"):
        assert tool not in runtime, tool
    header = RUNTIME_LOCK.read_text().splitlines()[1]
    for extra in RUNTIME_EXTRAS:
        assert f"--extra {extra}" in header
    assert "--generate-hashes" in header
