"""`/docs` renders Swagger UI from the app's own files: every operation, no other host asked."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import ConsoleWorld


def test_docs_render_every_operation_from_the_apps_own_files(
    page: Any, world: ConsoleWorld
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    document = world.api().get("/openapi.json").json()
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]

    page.goto("/docs")
    # Swagger UI names each operation's block `operations-<tag>-<operationId>`.
    page.locator("#operations-customers-getOffers").wait_for(state="visible", timeout=30_000)

    assert page.locator(".opblock").count() == len(operation_ids)
    assert "Next-best offers" in page.locator("#operations-customers-getOffers").inner_text()
    assert requested, "the page asked for nothing"
    assert all(url.startswith(world.url + "/") for url in requested), requested
    paths = {url.removeprefix(world.url).split("?")[0] for url in requested}
    assert {"/docs", "/openapi.json", "/docs/static/swagger-ui/swagger-ui-bundle.js"} <= paths
