"""The API document users read is typed and truthful (built from the app, no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from services.api.main import create_app


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return create_app().openapi()


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
    ]


def test_every_v1_operation_declares_a_typed_success_body(doc: dict[str, Any]) -> None:
    for path, method, op in _operations(doc):
        if not path.startswith("/v1"):
            continue
        for status, response in op["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            contents = response.get("content", {})
            assert contents, (method, path, status)
            for media, content in contents.items():
                assert content.get("schema"), (method, path, status, media)


def test_a_bearer_scheme_secures_every_v1_operation(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    for path, method, op in _operations(doc):
        if path.startswith("/v1"):
            assert op.get("security"), (method, path)


def test_every_operation_has_a_description_and_examples(doc: dict[str, Any]) -> None:
    for path, method, op in _operations(doc):
        assert op.get("description"), (method, path)
        examples = [
            c.get("example")
            for r in op["responses"].values()
            for c in r.get("content", {}).values()
        ]
        assert any(e is not None for e in examples), (method, path)


def test_every_4xx_is_the_real_error_body(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorBody"]["required"]) == {"error", "detail"}
    assert "reason" in schemas["ErrorDetail"]["required"]
    seen_422 = False
    for path, method, op in _operations(doc):
        for status, response in op["responses"].items():
            if status.startswith("4"):
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (
                    method,
                    path,
                    status,
                )
                assert set(content["example"]) == {"error", "detail"}
                seen_422 |= status == "422"
    assert seen_422


def test_trainer_endpoints_are_left_out(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    assert "/v1/training-runs/{run_id}/spec" not in paths
    assert "/v1/training-runs/{run_id}/data" not in paths
    assert "/v1/training-runs/{run_id}/eval-sets/{dataset_id}" not in paths
    assert "post" not in paths.get("/v1/training-runs/{run_id}/events", {})
