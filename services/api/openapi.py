"""The API document (``/openapi.json``, ``/docs``): what FastAPI generates from the typed routes,
made truthful where its defaults are not.

- Every 4xx, 422 included, is our ``ErrorBody`` (FastAPI's ``HTTPValidationError`` is removed).
- Every operation carries examples: responses take the example of the model they return (a page
  of a model gets one wrapped in ``data``); error responses show an error body of their kind.
- ``/docs`` (Swagger UI) and ``/redoc`` load their scripts, styles and icon from the API itself
  (``/docs/assets``, the pinned ``fastapi-offline`` package's bundles): FastAPI's defaults load
  them unpinned from three external hosts, which an offline GPU host cannot reach.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

DESCRIPTION = """\
Critique-guided distillation as a service. Upload a prompt dataset, run a **generation job**
(the student answers, the teacher critiques and refines, answers are verified), curate the
triplets into an immutable **snapshot**, export it for a trainer or start a **training run**.

Authenticate every `/v1` call with `Authorization: Bearer <API key>` (an operator creates keys
with `cgd admin create-key --team NAME`). Every resource belongs to the caller's team: another
team's id answers 404. Errors are `{"error": <kind>, "detail": {"reason", "field"?, "line"?}}`.
Lists are pages: `{"data": [...], "next_cursor"}`; pass `?cursor=` for the next one.
"""

_SUCCESS = ("200", "201", "202")
_ERROR_REF = "#/components/schemas/ErrorBody"


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = finish_document(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    install_docs(app)


DOCS_ASSETS = "/docs/assets"


def _assets_dir() -> Path:
    import fastapi_offline  # only for where its bundles lie; its app class is not used

    return Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` on the shipped bundles (the app is made with both turned off)."""
    title = f"{app.title} — API reference"
    icon = f"{DOCS_ASSETS}/favicon.png"

    async def swagger(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=title,
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=icon,
            # No "valid" badge: it would send the document to the public validator.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def redoc(_: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=title,
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=icon,
            with_google_fonts=False,
        )

    app.mount(DOCS_ASSETS, StaticFiles(directory=_assets_dir()), name="docs-assets")
    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)


def finish_document(doc: dict[str, Any]) -> dict[str, Any]:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            for status, response in responses.items():
                content = response.get("content", {}).get("application/json")
                if status.startswith("4"):
                    response["content"] = {
                        "application/json": {
                            "schema": {"$ref": _ERROR_REF},
                            "example": _error_example(status, response.get("description", "")),
                        }
                    }
                elif status in _SUCCESS and content is not None and "example" not in content:
                    example = _example(content.get("schema", {}), schemas)
                    if example is not None:
                        content["example"] = example
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    _add_links(doc)
    return doc


# Which operations a created resource's id feeds (OpenAPI links): clients and stateful fuzzers
# (schemathesis) follow them to call each operation with ids that exist.
_LINKS: dict[tuple[str, str], tuple[str, list[tuple[str, str]]]] = {
    ("/v1/datasets", "post"): (
        "dataset_id",
        [
            ("/v1/datasets/{dataset_id}", "get"),
            ("/v1/datasets/{dataset_id}/items", "get"),
            ("/v1/datasets/{dataset_id}", "delete"),
        ],
    ),
    ("/v1/jobs", "post"): (
        "job_id",
        [
            ("/v1/jobs/{job_id}", "get"),
            ("/v1/jobs/{job_id}/triplets", "get"),
            ("/v1/jobs/{job_id}/cancel", "post"),
            ("/v1/jobs/{job_id}/retry-failed", "post"),
        ],
    ),
    ("/v1/snapshots", "post"): (
        "snapshot_id",
        [
            ("/v1/snapshots/{snapshot_id}", "get"),
            ("/v1/snapshots/{snapshot_id}/card", "get"),
            ("/v1/snapshots/{snapshot_id}/export", "get"),
            ("/v1/snapshots/{snapshot_id}", "delete"),
        ],
    ),
    ("/v1/training-runs", "post"): (
        "run_id",
        [
            ("/v1/training-runs/{run_id}", "get"),
            ("/v1/training-runs/{run_id}/events", "get"),
            ("/v1/training-runs/{run_id}/cancel", "post"),
        ],
    ),
}


def _add_links(doc: dict[str, Any]) -> None:
    paths = doc.get("paths", {})
    for (path, method), (param, targets) in _LINKS.items():
        operation = paths.get(path, {}).get(method)
        if operation is None:
            continue
        links = {
            f"{target_method}{target.replace('/', '_').replace('{', '').replace('}', '')}": {
                "operationRef": "#/paths/"
                + target.replace("~", "~0").replace("/", "~1")
                + f"/{target_method}",
                "parameters": {param: "$response.body#/id"},
            }
            for target, target_method in targets
            if target_method in paths.get(target, {})
        }
        if path == "/v1/datasets":  # a new dataset feeds a job
            links["post_v1_jobs"] = {
                "operationRef": "#/paths/~1v1~1jobs/post",
                "requestBody": {"dataset_id": "$response.body#/id"},
            }
        for status, response in operation.get("responses", {}).items():
            if status in _SUCCESS:
                response["links"] = links


def _error_example(status: str, description: str) -> dict[str, Any]:
    kind = description.split(", ")[0] if description else "InvalidRequest"
    if status == "422":
        kind = "InvalidRequest" if "InvalidRequest" in description else kind
        return {"error": kind, "detail": {"reason": "field required", "field": "body.name"}}
    reasons = {"401": "invalid API key", "404": "not found", "409": "conflicts with the state"}
    return {"error": kind, "detail": {"reason": reasons.get(status, kind)}}


def _example(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """An example for a response schema, from the examples on the models it is made of."""
    ref = schema.get("$ref")
    if ref is None:
        return None
    component = schemas.get(ref.rsplit("/", 1)[-1], {})
    if "example" in component:
        return copy.deepcopy(component["example"])
    data = component.get("properties", {}).get("data", {})
    if set(component.get("properties", {})) == {"data", "next_cursor"}:  # a Page[...]
        return {"data": [_example(data.get("items", {}), schemas)], "next_cursor": None}
    return _synthesize(component, schemas, depth=0)


_SCALARS: dict[str, Any] = {
    "integer": 0,
    "number": 0.0,
    "boolean": False,
    "string": "string",
    "array": [],
    "object": {},
    "null": None,
}
_FORMATS = {
    "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "date-time": "2026-11-27T23:38:24Z",
}


def _synthesize(schema: dict[str, Any], schemas: dict[str, Any], depth: int) -> Any:
    """An example built from a model's fields, for models that declare none."""
    if "example" in schema:
        return copy.deepcopy(schema["example"])
    if depth > 4:
        return None
    if "$ref" in schema:
        return _synthesize(schemas.get(schema["$ref"].rsplit("/", 1)[-1], {}), schemas, depth + 1)
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, []) if o.get("type") != "null"]
        if options:
            return _synthesize(options[0], schemas, depth + 1)
    if "properties" in schema:
        return {
            name: _synthesize(prop, schemas, depth + 1)
            for name, prop in schema["properties"].items()
        }
    kind = schema.get("type")
    if kind == "string" and schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    if kind == "array" and "items" in schema:
        item = _synthesize(schema["items"], schemas, depth + 1)
        return [] if item is None else [item]
    return _SCALARS.get(kind) if isinstance(kind, str) else None
