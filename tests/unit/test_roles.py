"""Roles: the order viewer < writer < operator < admin, and parsing role names."""

from __future__ import annotations

import pytest

from nextoffer.domain.roles import Role, parse_role, role_allows

ORDER = [Role.VIEWER, Role.WRITER, Role.OPERATOR, Role.ADMIN]


def test_roles_are_ranked_in_privilege_order() -> None:
    assert list(Role) == ORDER
    assert [role.rank for role in ORDER] == [0, 1, 2, 3]
    assert [role.value for role in ORDER] == ["viewer", "writer", "operator", "admin"]


@pytest.mark.parametrize("has", ORDER)
@pytest.mark.parametrize("needs", ORDER)
def test_a_role_allows_itself_and_every_role_below(has: Role, needs: Role) -> None:
    assert role_allows(has, needs) is (ORDER.index(has) >= ORDER.index(needs))


def test_admin_allows_everything_and_viewer_only_viewing() -> None:
    assert all(role_allows(Role.ADMIN, needs) for needs in Role)
    assert [needs for needs in Role if role_allows(Role.VIEWER, needs)] == [Role.VIEWER]


@pytest.mark.parametrize(
    ("text", "role"),
    [("viewer", Role.VIEWER), ("Writer", Role.WRITER), (" OPERATOR ", Role.OPERATOR)],
)
def test_parse_role_ignores_case_and_spaces(text: str, role: Role) -> None:
    assert parse_role(text) is role


@pytest.mark.parametrize("text", ["", "root", "admins", "superuser"])
def test_parse_role_rejects_unknown_names_listing_the_valid_ones(text: str) -> None:
    with pytest.raises(ValueError, match="viewer, writer, operator, admin") as info:
        parse_role(text)
    assert repr(text) in str(info.value)


def test_roles_are_strings() -> None:
    assert isinstance(Role.ADMIN, str)
    assert Role("admin") is Role.ADMIN
    assert f"{Role.WRITER}" == "writer"
