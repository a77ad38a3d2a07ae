"""A small trained world whose catalogue has product rules, built once per test session.

The generated catalogue gets what an operator would declare (docs/offers.md, *Product
rules*): one broadband line at a time (an exclusion group) with fibre as the upgrade path
from DSL, one data pack at a time with 50 GB as the upgrade of 10 GB, the sports pack only
for holders of a TV product, and Fibre 1 Gbit only where `fiber_available` (a custom
attribute column of the customers file) is true. It is then loaded, trained and
precomputed through the same jobs as `nextoffer quickstart`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, or_, select

from nextoffer.config import Settings
from nextoffer.jobs.calls import run_training
from nextoffer.pipelines.etl import run_ingest
from nextoffer.pipelines.features import run_features
from nextoffer.pipelines.precompute import run_precompute
from nextoffer.pipelines.train import TrainOverrides
from nextoffer.registry.mlflow_registry import ModelRegistry
from nextoffer.scoring.champions import load_offer_champion
from nextoffer.store import migrate
from nextoffer.store.engine import make_engine
from nextoffer.store.schema import Subscription
from nextoffer.synth.generator import generate_world

CUSTOMERS = 800
SEED = 11
PINNED = TrainOverrides(churn={"num_leaves": 7, "num_boost_round": 100})

BROADBAND = ("BB-DSL-50", "BB-5G-HOME", "BB-FIB-300", "BB-FIB-1G")
DATA_PACKS = ("ADD-DATA-10", "ADD-DATA-50")
FIBRE_REGIONS = ("capital", "north-metro", "south-metro", "coast")
RULES: dict[str, dict[str, str]] = {
    "BB-DSL-50": {"exclusion_group": "broadband"},
    "BB-5G-HOME": {"exclusion_group": "broadband"},
    "BB-FIB-300": {"exclusion_group": "broadband", "upgrades_from": "BB-DSL-50"},
    "BB-FIB-1G": {
        "exclusion_group": "broadband",
        "upgrades_from": "BB-DSL-50|BB-FIB-300",
        "requires_attribute": "fiber_available=true",
    },
    "ADD-DATA-10": {"exclusion_group": "data_pack"},
    "ADD-DATA-50": {"exclusion_group": "data_pack", "upgrades_from": "ADD-DATA-10"},
    "ADD-TV-SPORT": {"requires_products": "ADD-TV|BUN-TV"},
}
"""The rules added to the generated catalogue, by product."""


@dataclass(frozen=True)
class RulesWorld:
    """Where the world lives and how to open it."""

    root: Path
    data: Path

    def settings(self, root: Path | None = None, **overrides: object) -> Settings:
        """Settings for the world at `root` (default: the original; copies for writers)."""
        where = root or self.root
        values: dict[str, object] = {
            "database_url": f"sqlite:///{where / 'nextoffer.db'}",
            "var_dir": where / "var",
            "registry_uri": f"sqlite:///{where / 'mlflow.db'}",
            "artifacts_url": f"file://{where / 'artifacts'}",
            "cache_url": "memory://",
            "train_threads": 2,
            "otlp_endpoint": "",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def env(self, root: Path | None = None) -> dict[str, str]:
        """The same settings as NEXTOFFER_* variables, for the CLI."""
        where = root or self.root
        return {
            "NEXTOFFER_DATABASE_URL": f"sqlite:///{where / 'nextoffer.db'}",
            "NEXTOFFER_VAR_DIR": str(where / "var"),
            "NEXTOFFER_REGISTRY_URI": f"sqlite:///{where / 'mlflow.db'}",
            "NEXTOFFER_ARTIFACTS_URL": f"file://{where / 'artifacts'}",
            "NEXTOFFER_CACHE_URL": "memory://",
            "NEXTOFFER_LOG_LEVEL": "WARNING",
            "NEXTOFFER_LOG_JSON": "false",
        }

    def copy(self, target: Path) -> Path:
        """A private copy of the database and registry, for a test that writes."""
        shutil.copytree(self.root, target, ignore=shutil.ignore_patterns("data", "spool"))
        return target


_BUILT: dict[Path, RulesWorld] = {}


def rules_world(factory: pytest.TempPathFactory) -> RulesWorld:
    """The session's world, built on first use (about 40 s)."""
    base = factory.getbasetemp()
    if base not in _BUILT:
        _BUILT[base] = _build(base / "rules-world")
    return _BUILT[base]


def _build(root: Path) -> RulesWorld:
    data = root / "data"
    generate_world(data, CUSTOMERS, SEED)
    products = pd.read_csv(data / "products.csv", dtype=str, keep_default_na=False)
    for column in ("requires_products", "requires_attribute", "exclusion_group", "upgrades_from"):
        products[column] = [RULES.get(p, {}).get(column, "") for p in products["product_id"]]
    products.to_csv(data / "products.csv", index=False)
    customers = pd.read_csv(data / "customers.csv", dtype=str, keep_default_na=False)
    # Fibre reaches two thirds of the fibre regions' customers, nobody elsewhere.
    reached = customers["region"].isin(FIBRE_REGIONS) & (np.arange(len(customers)) % 3 != 0)
    customers["fiber_available"] = np.where(reached, "true", "false")
    customers.to_csv(data / "customers.csv", index=False)

    world = RulesWorld(root, data)
    settings = world.settings()
    engine = make_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
        run_ingest(engine, settings, data)
        run_features(engine, settings)
        registry = ModelRegistry.from_settings(settings)
        run_training(engine, settings, registry, overrides=PINNED)
        run_precompute(engine, settings, load_offer_champion(registry))
    finally:
        engine.dispose()
    return world


def holdings(engine: Engine, day: date | None = None) -> dict[str, set[str]]:
    """Each customer's products held on `day` (default today): open or ending later."""
    day = day or date.today()
    query = select(Subscription.customer_id, Subscription.product_id).where(
        Subscription.start_date <= day,
        or_(Subscription.end_date.is_(None), Subscription.end_date >= day),
    )
    held: dict[str, set[str]] = {}
    with engine.connect() as conn:
        for customer, product in conn.execute(query):
            held.setdefault(str(customer), set()).add(str(product))
    return held


def fibre_reached(world: RulesWorld) -> set[str]:
    """The customers whose `fiber_available` attribute is true."""
    customers = pd.read_csv(world.data / "customers.csv", dtype=str, keep_default_na=False)
    return set(customers.loc[customers["fiber_available"] == "true", "customer_id"])


def violations(
    offered: dict[str, list[str]], held: dict[str, set[str]], fibre: set[str]
) -> list[str]:
    """Every (customer, offer) that breaks a rule of `RULES`, described; empty when none."""
    found = []
    for customer, products in offered.items():
        mine = held.get(customer, set())
        for product in products:
            rule = RULES.get(product, {})
            group = rule.get("exclusion_group")
            members = BROADBAND if group == "broadband" else DATA_PACKS if group else ()
            others = (mine & set(members)) - {product}
            upgrades = set(filter(None, rule.get("upgrades_from", "").split("|")))
            if others and not (mine & upgrades):
                found.append(f"{customer} holds {sorted(others)} but was offered {product}")
            needs = set(filter(None, rule.get("requires_products", "").split("|")))
            if needs and not (mine & needs):
                found.append(f"{customer} holds none of {sorted(needs)} but was offered {product}")
            if rule.get("requires_attribute") and customer not in fibre:
                found.append(f"{customer} has no fibre but was offered {product}")
    return found
