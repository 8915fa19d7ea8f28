"""The OpenAPI document describes security, errors, the upload body and identifier formats, and
``/docs`` works offline (Swagger UI served by the server itself)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shikaku_server.app import create_app
from shikaku_server.config import Settings


@pytest.fixture
def api(tmp_path: Any) -> Any:
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.sqlite3"))) as client:
        yield client


def test_every_v1_operation_has_bearer_security_and_problem_errors(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    operations = [(p, m, op) for p, ops in spec["paths"].items() for m, op in ops.items() if p.startswith("/v1/")]
    assert len(operations) >= 10
    for path, method, op in operations:
        assert op["security"] == [{"bearerAuth": []}], (path, method)
        for status in ("401", "403", "404", "422", "429", "503"):
            content = op["responses"][status]["content"]
            assert content == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        assert "Retry-After" in op["responses"]["503"]["headers"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_upload_body_and_identifier_formats_are_described(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    body = spec["paths"]["/v1/uploads"]["post"]["requestBody"]
    assert set(body["content"]) == {"text/csv", "application/x-ndjson"}
    query = spec["components"]["schemas"]["ByNumberQuery"]["properties"]
    assert re.fullmatch(query["insurer_number"]["pattern"], "01130012")
    assert re.fullmatch(query["insurer_number"]["pattern"], "138057")
    assert not re.fullmatch(query["insurer_number"]["pattern"], "0113001")
    branch = next(v for v in query["branch"]["anyOf"] if v.get("type") == "string")
    assert re.fullmatch(branch["pattern"], "00") and not re.fullmatch(branch["pattern"], "000")
    assert spec["paths"]["/metrics"]["get"]["security"] == [{}, {"bearerAuth": []}]


def test_docs_page_uses_only_local_assets(api: TestClient) -> None:
    r = api.get("/docs")
    assert r.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", r.text)
    assert urls, r.text
    assert not re.search(r"https?://|//cdn", r.text), "the page must not load anything from the internet"
    for url in urls:
        assert url.startswith("/"), url
        assert api.get(url).status_code == 200, url
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls)
