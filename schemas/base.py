"""Base for wire models: unknown fields are refused, so typos never pass silently.

Every request body is screened as a whole before its fields are validated: a My Number
anywhere in it (any field, any key, any depth: ``schemas.identifiers.my_number_in``) refuses it
with ``my_number_detected``, and a NUL or an unpaired surrogate (which PostgreSQL cannot store)
with ``validation_error``. The messages name the rule, never the value.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from schemas.identifiers import MY_NUMBER_MESSAGE, my_number_in, storable_problem


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _screen(cls, data: Any) -> Any:
        if my_number_in(data):
            raise ValueError(MY_NUMBER_MESSAGE)
        problem = storable_problem(data)
        if problem:
            raise ValueError(f"text {problem}")
        return data


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
