"""The control group's sticky hash, exposure ids and records, and the daily sync's schedule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest

from nextoffer.config import Settings
from nextoffer.domain.control_group import (
    control_mask,
    control_point,
    control_points,
    in_control_group,
)
from nextoffer.domain.experiments import assignment_point
from nextoffer.domain.exposures import (
    Arm,
    ExposureRecord,
    ExposureSource,
    exposure_id,
    new_exposure,
)
from nextoffer.domain.offers import Offer
from nextoffer.serving.offers import OffersAnswer, Source
from nextoffer.usecases.offers import OfferRequest, exposure_of
from nextoffer.worker.schedule import beat_schedule

IDS = [f"C{i:06d}" for i in range(20_000)]
SALT = "nextoffer-control"


def test_the_point_is_the_experiments_uniform_draw_of_salt_and_id() -> None:
    assert control_point("C000042", SALT) == assignment_point(SALT, "C000042")
    bulk = control_points(IDS[:500], SALT)
    assert bulk.tolist() == [control_point(c, SALT) for c in IDS[:500]]
    assert control_points([], SALT).shape == (0,)
    assert ((bulk >= 0) & (bulk < 1)).all()


def test_membership_is_the_share_and_a_new_salt_draws_a_new_group() -> None:
    mask = control_mask(IDS, 0.05, SALT)
    assert mask.tolist() == [in_control_group(c, 0.05, SALT) for c in IDS]
    # 20 000 Bernoulli(0.05) draws: the count lies within 4.5 standard deviations of 1 000.
    assert abs(int(mask.sum()) - 1000) < 4.5 * np.sqrt(20_000 * 0.05 * 0.95)
    assert not control_mask(IDS, 0.0, SALT).any()
    assert not in_control_group(IDS[0], 0.0, SALT)
    other = control_mask(IDS, 0.05, "another salt")
    assert 0 < int((mask & other).sum()) < 0.2 * int(mask.sum())


def test_a_changed_share_never_reshuffles_members() -> None:
    small, large = control_mask(IDS, 0.02, SALT), control_mask(IDS, 0.05, SALT)
    assert (small <= large).all()  # growing only adds, shrinking only lets go
    assert small.sum() < large.sum()


def test_exposure_ids_are_one_per_unit_a_day_and_per_experiment() -> None:
    day = date(2026, 12, 6)
    assert exposure_id("C1", day) == "C1@2026-12-06"
    assert exposure_id("s-9", day, "e-1") == "s-9@2026-12-06#e-1"


def test_an_exposure_is_dated_by_its_utc_day_and_round_trips_through_the_spool() -> None:
    late = datetime(2026, 12, 6, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    exposure = new_exposure(
        "C1",
        late,
        Arm.CONTROL,
        ["P2", "P1"],
        experiment_id="e-1",
        variant="control",
        unit_id="s-9",
        channel="app",
        model_version="v3",
    )
    assert exposure.exposure_id == "s-9@2026-12-07#e-1"
    assert not exposure.universal_control  # an experiment's control arm
    assert exposure.row()["product_ids"] == "P2|P1"
    assert exposure.row()["exposed_at"] == datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
    assert ExposureRecord.from_json(exposure.to_json()) == exposure
    plain = new_exposure("C2", late, Arm.CONTROL, ["P1"], source=ExposureSource.CAMPAIGN)
    assert plain.universal_control and plain.unit_id == "C2"
    assert plain.exposure_id == "C2@2026-12-07"


def test_an_exposure_needs_a_zone_and_a_product() -> None:
    with pytest.raises(ValueError, match="time zone"):
        new_exposure("C1", datetime(2026, 1, 1), Arm.TREATED, ["P1"])
    with pytest.raises(ValueError, match="at least one product"):
        new_exposure("C1", datetime(2026, 1, 1, tzinfo=UTC), Arm.TREATED, [])
    with pytest.raises(ValueError):
        ExposureRecord.from_json('{"arm": "treated"}')


def test_the_sync_runs_daily_after_the_nightly_etl() -> None:
    schedule = beat_schedule(Settings(broker_url="redis://127.0.0.1:6379/15"))
    entry = schedule["control-group"]
    assert entry["args"] == ["control-group", ["control_group"]]
    assert entry["schedule"].hour == {5} and entry["schedule"].minute == {0}


def test_an_answer_with_nothing_to_offer_exposes_no_one_in_either_arm() -> None:
    services = SimpleNamespace(clock=lambda: datetime(2026, 12, 6, 10, tzinfo=UTC))
    offer = Offer("P1", "Extra data", "addon", 0.5, 0.4, 1.0, ("popular",), "v3")
    request = OfferRequest("C1", channel="app")
    for control in (False, True):
        empty = OffersAnswer("C1", [], Source.CONTROL if control else Source.CACHE, "v3")
        empty.control = control
        assert exposure_of(services, request, empty) is None  # type: ignore[arg-type]
    shown = OffersAnswer("C1", [offer], Source.CACHE, "v3")
    held = OffersAnswer("C1", [], Source.CONTROL, "v3", control=True, withheld=[offer])
    made = [exposure_of(services, request, a) for a in (shown, held)]  # type: ignore[arg-type]
    assert [(e.arm, e.product_ids, e.channel) for e in made if e] == [
        (Arm.TREATED, ("P1",), "app"),
        (Arm.CONTROL, ("P1",), "app"),
    ]
