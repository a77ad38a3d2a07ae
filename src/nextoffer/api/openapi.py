"""The OpenAPI document: clean operationIds and every problem answer, derived from the routes.

Each operation lists the 4xx/5xx statuses it can answer, read from the route itself: its
dependencies declare theirs (`may_answer`: credentials 401/403/429, backends 503), a path
parameter adds 404 (no such resource, or no route), a body 400 (unreadable) and 413, and
every operation 422 (parameters and text are checked before any route). Codes only a route
knows of (a 409 conflict, a 404 without a path parameter) it lists in its own `responses=`,
with a description. Every one of them is documented as the shared `Problem` schema in
`application/problem+json`, replacing FastAPI's `HTTPValidationError` (`application/json`),
so routes added later are documented the same way without a line of their own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import TypeAdapter
from starlette.routing import BaseRoute

from nextoffer.api.problems import PROBLEM_MEDIA_TYPE, Problem

COMPONENTS_REF = "#/components/schemas/"
_PROBLEM_REF = {"$ref": COMPONENTS_REF + "Problem"}
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")

_MAY_ANSWER: dict[Callable[..., Any], dict[int, str]] = {}

GENERIC: Mapping[int, str] = {
    400: "the request cannot be done as given",
    401: "no valid credentials: send X-API-Key or Authorization: Bearer",
    403: "the caller's role is not allowed to do this",
    404: "no such resource (or the path matches no route)",
    409: "the request clashes with the current state",
    413: "the request body is over NEXTOFFER_MAX_BODY_BYTES",
    422: "a parameter or the body is invalid, or holds text no value may hold",
    429: "over the caller's requests per minute; retry after Retry-After",
    503: "a backend this answer needs cannot be reached now; retry after Retry-After",
}
"""What each problem status means when the route gives no description of its own."""

_STRING = {"type": "string"}
_SECONDS = {"type": "integer", "minimum": 0}
HEADERS: Mapping[int, Mapping[str, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "the bearer scheme (an X-API-Key is the other way in)",
            "required": True,
            "schema": _STRING,
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds to wait before retrying",
            "required": True,
            "schema": _SECONDS,
        }
    },
    503: {
        "Retry-After": {
            "description": "seconds to wait before retrying",
            "required": True,
            "schema": _SECONDS,
        }
    },
}
"""Headers a problem of a status always carries, besides X-Request-ID."""

_REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "the request's id, as in the problem's request_id and the logs",
        "required": True,
        "schema": _STRING,
    }
}


def may_answer(dependency: Callable[..., Any], statuses: Mapping[int, str]) -> None:
    """Declare the problem statuses (with why) that a route depending on `dependency` may get."""
    _MAY_ANSWER[dependency] = dict(statuses)


def operation_id(route: APIRoute) -> str:
    """The operationId of a route: its name (the function's, or `name=`) in lowerCamelCase.

    `get_offers` becomes `getOffers`; stable across releases as long as the name is.
    """
    head, *rest = route.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` document every operation's problem answers with one `Problem`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document_problems(document, app.routes)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def document_problems(document: dict[str, Any], routes: list[BaseRoute]) -> None:
    """Add the `Problem` schema and each operation's problem responses to `document`."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=COMPONENTS_REF + "{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    seen: Counter[str] = Counter()
    for route in _documented(routes):
        _restore_examples(schemas, route)
        statuses = problem_statuses(route)
        for method in sorted(route.methods or ()):
            operation = document["paths"][route.path_format].get(method.lower())
            if operation is None:
                continue
            seen[operation["operationId"]] += 1
            responses = operation["responses"]
            for status, description in statuses.items():
                responses[str(status)] = _problem_response(
                    status, description, responses.get(str(status))
                )
            operation["responses"] = dict(sorted(responses.items()))
    duplicated = sorted(name for name, n in seen.items() if n > 1)
    if duplicated:
        raise ValueError(f"operationIds must be unique; used twice: {duplicated}")
    if _FASTAPI_422[0] not in str(document["paths"]):
        for name in _FASTAPI_422:
            schemas.pop(name, None)


def problem_statuses(route: APIRoute | RouteContext) -> dict[int, str]:
    """The problem statuses `route` can answer, each with why, in status order."""
    found: dict[int, str] = {422: GENERIC[422]}
    if route.body_field is not None:
        found[400] = "the body cannot be read (bytes that are not UTF-8 text)"
        found[413] = GENERIC[413]
    if route.dependant.path_params:
        found[404] = GENERIC[404]
    for dependant in _walk(route.dependant):
        for status, why in _MAY_ANSWER.get(dependant.call, {}).items() if dependant.call else ():
            found.setdefault(status, why)
    for key, declared in route.responses.items():
        code = int(key) if str(key).isdigit() else 0  # "default", "4XX": not a problem status
        if code >= 400:
            found[code] = str(declared.get("description") or GENERIC.get(code, ""))
    return dict(sorted(found.items()))


def _restore_examples(schemas: dict[str, Any], route: APIRoute | RouteContext) -> None:
    """Put back the `null`s of the models' examples, which FastAPI's encoding drops.

    FastAPI writes the document with `exclude_none`, so `"stopped_at": null` vanishes from
    an example and the example no longer validates against its own schema.
    """
    models = [route.response_model, *(p.field_info.annotation for p in route.dependant.body_params)]
    models += [r["model"] for r in route.responses.values() if "model" in r]
    for model in models:
        if model is None:
            continue
        found = TypeAdapter(model).json_schema(ref_template=COMPONENTS_REF + "{model}")
        named = dict(found.pop("$defs", {}))
        named[getattr(model, "__name__", "")] = found
        for name, schema in named.items():
            if "examples" in schema and name in schemas:
                schemas[name]["examples"] = schema["examples"]


def _problem_response(
    status: int, description: str, generated: dict[str, Any] | None
) -> dict[str, Any]:
    """The response object of a problem status; a route's own body model for it is kept."""
    content = (generated or {}).get("content", {})
    own = {
        media: body
        for media, body in content.items()
        if media != "application/json" or "HTTPValidationError" not in str(body)
    }
    if own.get("application/json", {}).get("schema"):
        return {**(generated or {}), "description": description}
    headers = {**_REQUEST_ID_HEADER, **HEADERS.get(status, {})}
    return {
        "description": description,
        "headers": headers,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}},
    }


def _documented(routes: list[BaseRoute]) -> Iterator[RouteContext]:
    # Included routers stay routers in the app (FastAPI >= 0.16x): their routes, with the
    # prefix, tags and responses of the inclusion, are what the document is made from.
    for context in iter_route_contexts(routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _walk(dep)
