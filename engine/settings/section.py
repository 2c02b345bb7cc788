"""The base of every settings section: what any field's value must be, whatever its type."""

from __future__ import annotations

import typing

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from ..common.safe_io import encoding_problem


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, assignments re-validate.

    Numbers are finite (no .inf / .nan), a true/false is never taken for a number, and
    text must be encodable (no lone surrogates) so every value can be saved back.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: object, info: ValidationInfo) -> object:
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and _is_numeric(annotation):
            raise ValueError(f"must be a number, got {value}")
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                _check_encodable(text)
        return value


def _is_numeric(annotation: object) -> bool:
    """int / float, possibly inside Annotated, Optional or a union."""
    if annotation in (int, float):
        return True
    return any(_is_numeric(arg) for arg in typing.get_args(annotation))


def _check_encodable(text: str) -> None:
    problem = encoding_problem(text)
    if problem:
        raise ValueError(problem)
    if "\x00" in text:
        raise ValueError("contains a NUL character")
