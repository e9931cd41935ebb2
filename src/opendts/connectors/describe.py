"""Connector settings described for people and UIs (the contract's SetupSetting shape)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, Field

from opendts.connectors.base import secret_fields


class SetupSetting(BaseModel):
    """What ``setup_settings`` returns for one field, as the OpenAPI document describes it."""

    id: str
    input_type: str = Field(examples=["text", "number", "checkbox", "select", "json", "password"])
    is_required: bool
    label: str
    value: Any = None
    options: list[dict[str, Any]] | None = None
    help_text: str | None = None
    note: str | None = Field(None, description="For a credential: whether one is set.")


def _input_type(annotation: Any) -> tuple[str, list[dict[str, Any]] | None]:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Literal:
        return "select", [{"value": v, "label": str(v)} for v in typing.get_args(annotation)]
    if origin is not None and args and origin is not list and origin is not dict:
        return _input_type(args[0])  # Optional[X] / X | None
    if annotation is bool:
        return "checkbox", None
    if annotation in (int, float):
        return "number", None
    if origin in (list, dict):
        return "json", None
    return "text", None


def setup_settings(
    model: type[BaseModel],
    values: dict[str, Any] | None = None,
    secrets_set: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """One SetupSetting per field of ``model``; credentials never carry their value."""
    secret = secret_fields(model)
    out = []
    for name, info in model.model_fields.items():
        is_secret = name in secret
        input_type, options = ("password", None) if is_secret else _input_type(info.annotation)
        if is_secret:
            value = None
        elif values is not None and name in values:
            value = values[name]
        else:
            value = None if info.is_required() else info.get_default(call_default_factory=True)
        if isinstance(value, (list, dict)):
            input_type = "json"
        item: dict[str, Any] = {
            "id": name,
            "input_type": input_type,
            "is_required": info.is_required(),
            "label": name.replace("_", " ").capitalize(),
            "value": value
            if isinstance(value, (str, int, float, bool, type(None), list, dict))
            else str(value),
        }
        if options is not None:
            item["options"] = options
        if info.description:
            item["help_text"] = info.description
        if is_secret:
            item["note"] = "set" if name in secrets_set else "not set"
        out.append(item)
    return out
