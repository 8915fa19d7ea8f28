"""Schema fuzzing (schemathesis): every operation of the app's own OpenAPI document, with cases
generated from it (valid ones and ones that break the schema), sent with a facility token and with
an insurer token, on both backends. No answer is a 5xx, and every answer conforms to the document
(status code listed, content type, headers, body schema).

Bounded: ``EXAMPLES`` valid and ``NEGATIVE`` invalid cases per operation and token, derandomized
(the same cases every run). The counts are printed (``-s``) and appended to the file named by
``SHIKAKU_FUZZ_REPORT`` when set."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import auth
from tests.factories import eligibility_csv, person

EXAMPLES = 25
NEGATIVE = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _send(client: TestClient, case: Any, token: str) -> Any:
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=auth(token))
    data = kwargs.pop("data", None)
    if data is not None:
        kwargs["content"] = data if isinstance(data, bytes | str) else None
        if kwargs["content"] is None:  # a form the serializer left as a mapping
            kwargs["data"] = data
    for transport_only in ("auth", "timeout", "allow_redirects", "cookies", "verify", "cert"):
        kwargs.pop(transport_only, None)  # the operations take no cookies
    return client.request(**kwargs)


def _fuzz_operation(
    client: TestClient, operation: Any, mode: GenerationMode, count: int, token: str, tally: Counter[str]
) -> dict[str, str]:
    """``count`` cases of one operation; one example of each distinct failure, by title."""
    failures: dict[str, str] = {}
    strategy = operation.as_strategy(generation_mode=mode)

    @settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate),  # failures are collected, not shrunk
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy)
        response = _send(client, case, token)
        tally["examples"] += 1
        if response.status_code >= 500:
            tally["5xx"] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:  # collected: every operation is fuzzed, all reported
            for failure in group.exceptions:
                key = f"{operation.label} [{mode.value}] {failure.title}"
                failures.setdefault(key, f"{key} → {response.status_code}: {failure.message}"[:1200])

    try:
        run()
    except Unsatisfiable:  # nothing to break: an operation without parameters or body
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


def _fuzz(client: TestClient, spec: dict[str, Any], token: str, tally: Counter[str]) -> None:
    failures: dict[str, str] = {}
    for result in schemathesis.openapi.from_dict(spec).get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid operation raises here
        for mode, count in ((GenerationMode.POSITIVE, EXAMPLES), (GenerationMode.NEGATIVE, NEGATIVE)):
            failures |= _fuzz_operation(client, operation, mode, count, token, tally)
    assert not failures, "\n\n".join(failures.values())


@pytest.mark.slow
@pytest.mark.parametrize("who", ["reception", "insurer"])
def test_every_operation_answers_within_its_schema_and_never_5xx(
    client: TestClient, tokens: dict[str, str], backend: str, who: str
) -> None:
    # something to find: one insured person, so that lookups can match as well as miss
    r = client.post(
        "/v1/uploads?kind=eligibility",
        content=eligibility_csv([person()]),
        headers=auth(tokens["insurer"]) | {"Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    spec = client.get("/openapi.json").json()
    tally: Counter[str] = Counter()
    _fuzz(client, spec, tokens[who], tally)
    line = f"schema fuzz {backend} {who}: {tally['examples']} examples, {tally['5xx']} 5xx"
    print(line)
    report = os.environ.get("SHIKAKU_FUZZ_REPORT")
    if report:
        with Path(report).open("a") as f:
            f.write(line + "\n")
    assert tally["5xx"] == 0
    assert tally["examples"] >= len(spec["paths"]) * EXAMPLES // 2  # really fuzzed, not short-circuited
