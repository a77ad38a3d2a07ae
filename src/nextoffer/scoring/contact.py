"""The contact rules of the settings (consent regime, quiet hours, time zones), parsed once."""

from __future__ import annotations

from functools import lru_cache

from nextoffer.config import Settings
from nextoffer.domain.contact import ContactRules, rules_from


def contact_rules(settings: Settings) -> ContactRules:
    """The contact rules of `settings`; ValueError naming a setting that does not parse."""
    return _rules(
        settings.consent_required,
        settings.quiet_hours,
        settings.quiet_days,
        settings.region_timezones,
        settings.default_timezone,
    )


@lru_cache(maxsize=8)
def _rules(required: bool, hours: str, days: str, zones: str, default: str) -> ContactRules:
    return rules_from(
        consent_required=required,
        quiet_hours=hours,
        quiet_days=days,
        region_timezones=zones,
        default_timezone=default,
    )
