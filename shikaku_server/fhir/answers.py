"""The CoverageEligibilityResponse of an eligibility answer, validated once per distinct answer.

A response is a pure function of the by-number lookup's answer (the JSON of the eligibility
result, ``eligibility.views.lookup``), the insurer number asked, and three elements that are the
request's and the clock's, not the answer's (``mapping.response_variables``): the request's
identifier, which the request reader has already validated as an R4B ``Identifier``, and
``created``, a FHIR ``dateTime`` from ``mapping.now_instant``.

So the response is built (``mapping.eligibility_response``) and validated by its R4B model
(``CoverageEligibilityResponse``) once per distinct answer — once with an identifier and once
without, the two shapes — and kept as serialized pieces around those three slots (``Template``).
Each later response for the same answer is those validated bytes with the slots filled by values
of the slots' own types; tests/unit/fhir/test_answers.py checks, for every validity and for
generated identifiers and times, that the result is byte for byte what the validated
path (``mapping.render``) sends. No invalid FHIR leaves: a response is either validated itself
or made of validated pieces and typed values.

The key is a digest of the answer's bytes and the insurer number: a different answer (an upload
changed the record, another day, another person) is another key, so nothing is ever stale and
there is nothing to invalidate. Per process, bounded (``MAX_TEMPLATES``, least recently used out).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import orjson
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse

from shikaku_server.fhir import mapping

MAX_TEMPLATES = 8192  # ≈ 3 KB each: ≈ 25 MB per worker at most
_SAMPLE_IDENTIFIER = {"system": "urn:shikaku:sample", "value": "sample"}
_SAMPLE_CREATED = "2000-01-01T00:00:00+00:00"
SLOTS = tuple(mapping.response_variables(None, _SAMPLE_CREATED))


class Template:
    """A validated CoverageEligibilityResponse in pieces: fixed fragments (``"key":value``, in
    the model's order) and the slots of ``SLOTS`` between them."""

    __slots__ = ("_parts", "_validated")

    def __init__(self, result: dict[str, Any], insurer_number: str) -> None:
        sample = mapping.eligibility_response(
            result, {"insurer_number": insurer_number}, _SAMPLE_IDENTIFIER, _SAMPLE_CREATED
        )
        if not set(SLOTS) <= sample.keys():
            raise ValueError("the response lacks a slot")  # a bug in mapping: never served
        self._parts: list[bytes | str] = [
            key if key in SLOTS else orjson.dumps(key) + b":" + orjson.dumps(value) for key, value in sample.items()
        ]
        self._validated: set[bool] = set()  # the shapes checked: with an identifier, without

    def render(self, identifier: dict[str, Any] | None, created: str) -> bytes:
        variables = mapping.clean(mapping.response_variables(identifier, created))
        fragments = [
            part if isinstance(part, bytes) else orjson.dumps(part) + b":" + orjson.dumps(variables[part])
            for part in self._parts
            if isinstance(part, bytes) or part in variables
        ]
        body = b"{" + b",".join(fragments) + b"}"
        shape = "identifier" in variables
        if shape not in self._validated:
            CoverageEligibilityResponse.model_validate_json(body)  # a failure is a bug: it raises
            self._validated.add(shape)
        return body


_TEMPLATES: OrderedDict[bytes, Template] = OrderedDict()


def template(answer: bytes, insurer_number: str) -> Template:
    """The template of one answer (the lookup's JSON), built and kept on first use."""
    key = hashlib.blake2b(insurer_number.encode() + b"\x1f" + answer, digest_size=16).digest()
    found = _TEMPLATES.get(key)
    if found is not None:
        _TEMPLATES.move_to_end(key)
        return found
    made = Template(orjson.loads(answer), insurer_number)
    _TEMPLATES[key] = made
    if len(_TEMPLATES) > MAX_TEMPLATES:
        _TEMPLATES.popitem(last=False)
    return made


def eligibility_body(answer: bytes, insurer_number: str, identifier: dict[str, Any] | None) -> mapping.Validated:
    """The CoverageEligibilityResponse for a lookup's answer, as validated bytes."""
    return mapping.Validated(template(answer, insurer_number).render(identifier, mapping.now_instant()))
