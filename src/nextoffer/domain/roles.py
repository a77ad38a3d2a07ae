"""The four access roles, ordered: viewer < writer < operator < admin."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What an API key or a user may do; each role may do everything the ones below it may.

    viewer reads offers, churn risk and segments; writer also posts events; operator also
    runs experiments and jobs; admin also manages keys and users and promotes models.
    """

    VIEWER = "viewer"
    WRITER = "writer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in the order, 0 for viewer up to 3 for admin."""
        return _RANKS[self]


# Declaration order is the order of privilege.
_RANKS: dict[Role, int] = {role: rank for rank, role in enumerate(Role)}


def role_allows(has: Role, needs: Role) -> bool:
    """True when a holder of `has` may do what requires `needs`."""
    return has.rank >= needs.rank


def parse_role(text: str) -> Role:
    """The Role named by `text` (case and surrounding spaces ignored), or ValueError."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        valid = ", ".join(role.value for role in Role)
        raise ValueError(f"unknown role {text!r}; valid roles: {valid}") from None
