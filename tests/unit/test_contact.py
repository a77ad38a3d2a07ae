"""The contact policy's rule: consent per channel, do not contact, do not call, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from nextoffer.domain.contact import (
    CHANNELS,
    ConsentFacts,
    ContactRules,
    Withheld,
    decide,
    offer_allowed,
    parse_quiet_days,
    parse_quiet_hours,
    rules_from,
)

# Saturday 2026-11-21 23:30 UTC: 00:30 on Sunday in Berlin.
SATURDAY_NIGHT = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)


def rules(**values: object) -> ContactRules:
    settings: dict[str, object] = {
        "consent_required": False,
        "quiet_hours": "",
        "quiet_days": "",
        "region_timezones": "",
        "default_timezone": "UTC",
    }
    return rules_from(**(settings | values))  # type: ignore[arg-type]


def test_opt_out_opens_unrecorded_channels_and_opt_in_closes_them() -> None:
    withdrawn = ConsentFacts(consent={"web": False, "app": True})
    open_ = decide(withdrawn, rules(), SATURDAY_NIGHT)
    assert open_.allowed == frozenset(CHANNELS) - {"web"}
    assert open_.blocked == {"web": Withheld.NO_CONSENT} and open_.reason is None
    strict = decide(withdrawn, rules(consent_required=True), SATURDAY_NIGHT)
    assert strict.allowed == {"app"}
    assert decide(withdrawn, rules(), SATURDAY_NIGHT, "web").reason is Withheld.NO_CONSENT
    nothing = decide(ConsentFacts(), rules(consent_required=True), SATURDAY_NIGHT)
    assert nothing.allowed == frozenset() and nothing.reason is Withheld.NO_CONSENT


def test_do_not_contact_wins_over_every_grant_and_profiling_is_separate() -> None:
    facts = ConsentFacts(consent=dict.fromkeys(CHANNELS, True) | {"contact": False})
    decision = decide(facts, rules(), SATURDAY_NIGHT, "web")
    assert decision.reason is Withheld.DO_NOT_CONTACT and decision.allowed == frozenset()
    objecting = decide(ConsentFacts(consent={"profiling": False}), rules(), SATURDAY_NIGHT)
    assert objecting.popular_only and objecting.open_everywhere


def test_quiet_hours_and_days_in_the_customer_zone_then_region_then_default() -> None:
    quiet = rules(
        quiet_hours="telesales=21-9,web=0-24",
        quiet_days="call_center=sun",
        region_timezones="north=Europe/Berlin",
    )
    berlin = ConsentFacts(timezone="Europe/Berlin")
    north = ConsentFacts(region="north")
    utc = ConsentFacts(region="south")
    # 00:30 Sunday in Berlin: call_center's quiet day; 23:30 Saturday in UTC: not yet.
    assert decide(berlin, quiet, SATURDAY_NIGHT, "call_center").reason is Withheld.QUIET_HOURS
    assert decide(north, quiet, SATURDAY_NIGHT, "call_center").reason is Withheld.QUIET_HOURS
    assert decide(utc, quiet, SATURDAY_NIGHT, "call_center").reason is None
    assert decide(utc, quiet, SATURDAY_NIGHT, "telesales").reason is Withheld.QUIET_HOURS
    noon = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert decide(utc, quiet, noon, "telesales").reason is None
    assert decide(utc, quiet, noon, "web").reason is Withheld.QUIET_HOURS  # 0-24: all day
    # An unknown zone falls back to the default rather than failing the answer.
    assert decide(ConsentFacts(timezone="Mars/Olympus"), quiet, noon, "telesales").reason is None


def test_no_channel_left_says_quiet_hours_when_waiting_would_open_one() -> None:
    facts = ConsentFacts(consent={"retail": False, "web": False, "app": False}, do_not_call=True)
    quiet = rules(quiet_hours="call_center=20-8")
    decision = decide(facts, quiet, SATURDAY_NIGHT)
    assert decision.allowed == frozenset() and decision.reason is Withheld.QUIET_HOURS
    assert decision.blocked == {
        "retail": Withheld.NO_CONSENT,
        "web": Withheld.NO_CONSENT,
        "app": Withheld.NO_CONSENT,
        "call_center": Withheld.QUIET_HOURS,
        "telesales": Withheld.DO_NOT_CALL,
    }


def test_an_offer_needs_one_open_channel_of_its_own() -> None:
    assert offer_allowed(frozenset({"web", "app"}), frozenset({"app"}))
    assert not offer_allowed(frozenset({"web"}), frozenset({"app"}))
    assert offer_allowed(frozenset(), frozenset({"app"}))  # no channels: any
    assert not offer_allowed(frozenset(), frozenset())


def test_settings_that_do_not_parse_name_the_problem() -> None:
    assert parse_quiet_hours("telesales=21:30-08:15") == {"telesales": (time(21, 30), time(8, 15))}
    assert parse_quiet_days("telesales=Sat|sunday") == {"telesales": frozenset({5, 6})}
    for bad, message in [
        ({"quiet_hours": "fax=21-9"}, "unknown channel 'fax'"),
        ({"quiet_hours": "web=9pm-8am"}, "expected HH"),
        ({"quiet_hours": "web=25-8"}, "not a time of day"),
        ({"quiet_days": "web=someday"}, "days are"),
        ({"region_timezones": "north=Europe/Atlantis"}, "no such time zone"),
        ({"default_timezone": "nowhere"}, "no such time zone"),
        ({"quiet_hours": "web"}, "not name=value"),
    ]:
        with pytest.raises(ValueError, match=message):
            rules(**bad)
