"""Consent and contact policy: in which channels a customer may be offered something now."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nextoffer.domain.vocabulary import Channel

CHANNELS: Final[tuple[str, ...]] = tuple(c.value for c in Channel)
CONTACT: Final = "contact"
"""Scope of the do-not-contact flag: withdrawn (granted false) means no offer in any channel."""
PROFILING: Final = "profiling"
"""Scope of profiling: withdrawn (granted false) means the customer objects to profiling and
is offered nothing but segment-free popular products."""
SCOPES: Final[tuple[str, ...]] = (*CHANNELS, CONTACT, PROFILING)
"""What a consent change is about: one marketing channel, all contact, or profiling."""
CALL_CHANNELS: Final = frozenset({Channel.TELESALES.value})
"""Channels the do-not-call list closes: outbound calls (an inbound call-center visit is the
customer's own contact)."""
SOURCES: Final[tuple[str, ...]] = ("import", "api", "event")
"""Where a consent change came from: an imported file, `PUT .../consent`, a consent event."""
TIMEZONE_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
"""What an IANA time zone name looks like (`Europe/Berlin`, `UTC`)."""
DAYS: Final[tuple[str, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Withheld(StrEnum):
    """Why an answer holds no offer although the customer has some (`withheld_reason`)."""

    DO_NOT_CONTACT = "do_not_contact"
    NO_CONSENT = "no_consent"
    DO_NOT_CALL = "do_not_call"
    QUIET_HOURS = "quiet_hours"
    POLICY_UNAVAILABLE = "policy_unavailable"
    """The consent records could not be read (database down): nothing is offered."""


@dataclass(frozen=True)
class ConsentFacts:
    """What is recorded about one customer's consent and contact preferences."""

    consent: Mapping[str, bool] = field(default_factory=dict)
    """The latest change per scope (a channel, `contact`, `profiling`): granted or not."""
    do_not_call: bool = False
    timezone: str | None = None
    region: str | None = None

    @property
    def do_not_contact(self) -> bool:
        """The customer asked not to be contacted at all."""
        return self.consent.get(CONTACT) is False

    @property
    def objects_to_profiling(self) -> bool:
        """The customer objected to profiling: popularity only, no model, no segment."""
        return self.consent.get(PROFILING) is False


QuietHours = tuple[time, time]
"""Quiet from the first time (inclusive) to the second (exclusive), wrapping past midnight."""


@dataclass(frozen=True)
class ContactRules:
    """The operator's contact rules (settings), parsed."""

    consent_required: bool = False
    """Opt-in: a channel needs a recorded grant. Otherwise only a withdrawal closes it."""
    quiet_hours: Mapping[str, QuietHours] = field(default_factory=dict)
    quiet_days: Mapping[str, frozenset[int]] = field(default_factory=dict)
    """Weekdays (0 = Monday) on which a channel is quiet all day."""
    region_zones: Mapping[str, str] = field(default_factory=dict)
    default_zone: str = "UTC"

    def zone_of(self, facts: ConsentFacts) -> ZoneInfo:
        """The customer's zone, else their region's, else the default (an unknown name: UTC)."""
        for name in (facts.timezone, self.region_zones.get(facts.region or ""), self.default_zone):
            if name:
                zone = _zone(name)
                if zone is not None:
                    return zone
        return ZoneInfo("UTC")

    def quiet(self, channel: str, local: datetime) -> bool:
        """Whether `channel` is in its quiet hours or on a quiet day at local time `local`."""
        if local.weekday() in self.quiet_days.get(channel, frozenset()):
            return True
        window = self.quiet_hours.get(channel)
        if window is None:
            return False
        start, end = window
        now = local.time().replace(tzinfo=None)
        if start == end:
            return True  # 0-24: the whole day
        if start < end:
            return start <= now < end
        return now >= start or now < end  # e.g. 21:00-09:00 spans midnight


@dataclass(frozen=True)
class ContactDecision:
    """What the policy allows for one request."""

    allowed: frozenset[str]
    """Channels an offer may be made in now (an offer needs one of them among its own)."""
    reason: Withheld | None = None
    """Set when nothing may be offered: why."""
    blocked: Mapping[str, Withheld] = field(default_factory=dict)
    """Every closed channel and why (the console shows them)."""
    popular_only: bool = False

    @property
    def open_everywhere(self) -> bool:
        """No channel is closed: offers need no channel filter."""
        return self.reason is None and not self.blocked


def decide(
    facts: ConsentFacts, rules: ContactRules, now: datetime, channel: str | None = None
) -> ContactDecision:
    """The channels open to the customer now; with `channel`, only that one is asked about."""
    popular_only = facts.objects_to_profiling
    if facts.do_not_contact:
        closed = dict.fromkeys(CHANNELS, Withheld.DO_NOT_CONTACT)
        return ContactDecision(frozenset(), Withheld.DO_NOT_CONTACT, closed, popular_only)
    local = now.astimezone(rules.zone_of(facts))
    asked = CHANNELS if channel is None else (channel,)
    blocked: dict[str, Withheld] = {}
    for name in CHANNELS if channel is None else (*CHANNELS, channel):
        why = _closed(facts, rules, name, local)
        if why is not None:
            blocked[name] = why
    allowed = frozenset(c for c in asked if c not in blocked)
    reason = None
    if not allowed:
        reasons = {blocked[c] for c in asked}
        # Quiet hours pass: say so first when waiting would open a channel.
        reason = next(r for r in _REASON_ORDER if r in reasons)
    return ContactDecision(allowed, reason, blocked, popular_only)


_REASON_ORDER: Final = (Withheld.QUIET_HOURS, Withheld.NO_CONSENT, Withheld.DO_NOT_CALL)


def _closed(
    facts: ConsentFacts, rules: ContactRules, channel: str, local: datetime
) -> Withheld | None:
    granted = facts.consent.get(channel)
    if granted is False or (granted is None and rules.consent_required):
        return Withheld.NO_CONSENT
    if facts.do_not_call and channel in CALL_CHANNELS:
        return Withheld.DO_NOT_CALL
    if rules.quiet(channel, local):
        return Withheld.QUIET_HOURS
    return None


def offer_allowed(product_channels: Iterable[str], allowed: frozenset[str]) -> bool:
    """A product may be offered when one of its channels is open (no channels: any channel)."""
    channels = frozenset(product_channels)
    return bool(allowed) and (not channels or bool(channels & allowed))


# -- settings ---------------------------------------------------------------------------


def parse_quiet_hours(text: str) -> dict[str, QuietHours]:
    """`telesales=21-9,call_center=20:30-08:00` → {channel: (start, end)}; ValueError if bad."""
    out: dict[str, QuietHours] = {}
    for channel, value in _pairs(text, "quiet hours"):
        _check_channel(channel, "quiet hours")
        match = re.fullmatch(r"(\d{1,2}(?::\d{2})?)-(\d{1,2}(?::\d{2})?)", value)
        if match is None:
            raise ValueError(f"quiet hours {channel}={value!r}: expected HH[:MM]-HH[:MM]")
        out[channel] = (_time(match.group(1)), _time(match.group(2)))
    return out


def parse_quiet_days(text: str) -> dict[str, frozenset[int]]:
    """`telesales=sat|sun` → {channel: {5, 6}}; ValueError if bad."""
    out: dict[str, frozenset[int]] = {}
    for channel, value in _pairs(text, "quiet days"):
        _check_channel(channel, "quiet days")
        days = [d.strip().lower()[:3] for d in value.split("|") if d.strip()]
        unknown = [d for d in days if d not in DAYS]
        if unknown or not days:
            raise ValueError(f"quiet days {channel}={value!r}: days are {', '.join(DAYS)}")
        out[channel] = frozenset(DAYS.index(d) for d in days)
    return out


def parse_region_zones(text: str) -> dict[str, str]:
    """`north=Europe/Berlin,south=Europe/Rome` → {region: zone}; ValueError if a zone is unknown."""
    out: dict[str, str] = {}
    for region, zone in _pairs(text, "region time zones"):
        if _zone(zone) is None:
            raise ValueError(f"region time zones {region}={zone!r}: no such time zone")
        out[region] = zone
    return out


def rules_from(
    *,
    consent_required: bool,
    quiet_hours: str,
    quiet_days: str,
    region_timezones: str,
    default_timezone: str,
) -> ContactRules:
    """The contact rules from their settings' text; ValueError naming a bad setting."""
    if _zone(default_timezone) is None:
        raise ValueError(f"default time zone {default_timezone!r}: no such time zone")
    return ContactRules(
        consent_required=consent_required,
        quiet_hours=parse_quiet_hours(quiet_hours),
        quiet_days=parse_quiet_days(quiet_days),
        region_zones=parse_region_zones(region_timezones),
        default_zone=default_timezone,
    )


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{what}: {item!r} is not name=value")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _check_channel(channel: str, what: str) -> None:
    if channel not in CHANNELS:
        raise ValueError(f"{what}: unknown channel {channel!r} (one of {', '.join(CHANNELS)})")


def _time(text: str) -> time:
    hours, _, minutes = text.partition(":")
    h, m = int(hours), int(minutes or 0)
    if h == 24 and m == 0:
        return time(0, 0)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"{text!r} is not a time of day")
    return time(h, m)


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    if not re.fullmatch(TIMEZONE_PATTERN, name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
