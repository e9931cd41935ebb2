"""The destinations API's wire format, as the OpenAPI document describes it.

Bodies are read by ``destinations.service.parse_input``; these models only describe them. The
``fields`` are each destination type's settings, checked by its connector (400 naming
``fields.<name>`` when one does not fit); ``GET .../transfers/available-options`` and a
destination's ``destination_type.settings`` list them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from opendts.connectors.describe import SetupSetting
from opendts.kit.openapi import enveloped

MAX_ID = 9223372036854775807
#: Not blank once trimmed.
NOT_BLANK = r"\S"


class DestinationRequest(BaseModel):
    """CreateDestinationRequest / UpdateDestinationRequest (a full replacement).

    Credentials left out of an update (or blank) are kept; ``new_password`` replaces a password.
    """

    type: str = Field(
        max_length=60,
        pattern=NOT_BLANK,
        description="A destination connector: duckdb, postgresql, sqlite, parquet (DWH_ prefix "
        "and any case allowed).",
    )
    display_name: str = Field(max_length=200, pattern=NOT_BLANK)
    fields: dict[str, Any] = Field(description="The connector's settings.")
    auth_method: str | None = Field(None, max_length=60, pattern=NOT_BLANK)
    new_password: str | None = Field(None, max_length=1000, pattern=NOT_BLANK)


class TestConnectionRequest(BaseModel):
    """A destination's settings to try; ``destination_id`` reuses a saved one's credentials."""

    type: str = Field(max_length=60, pattern=NOT_BLANK)
    display_name: str | None = Field(None, max_length=200, pattern=NOT_BLANK)
    fields: dict[str, Any]
    auth_method: str | None = Field(None, max_length=60, pattern=NOT_BLANK)
    new_password: str | None = Field(None, max_length=1000, pattern=NOT_BLANK)
    destination_id: int | None = Field(None, ge=1, le=MAX_ID)


class AuthMethod(BaseModel):
    id: str
    title: str
    is_default: bool


class DestinationType(BaseModel):
    type: str
    title: str
    icon_url: str
    is_internal: bool
    settings: list[SetupSetting]
    auth_methods: list[AuthMethod]


class DestinationInfo(BaseModel):
    """The contract's DestinationInfo, plus our ``type``, ``fields``, ``auth_method`` and times.

    Credentials are never included: a password's ``value`` is null and its ``note`` says whether
    one is set.
    """

    id: int
    display_name: str
    destination_type: DestinationType
    edit_settings: list[SetupSetting]
    type: str
    fields: dict[str, Any]
    auth_method: str | None
    created_time: datetime
    updated_time: datetime


class DestinationListItem(BaseModel):
    id: int
    display_name: str
    type: str


class TestConnectionResult(BaseModel):
    """A failed connection is a 200 with ``success: false`` and the reason."""

    success: bool
    error: str | None


class DestinationUser(BaseModel):
    transfer_id: int
    transfer_name: str


class DestinationUsage(BaseModel):
    is_used: bool
    transfers: list[DestinationUser]


DestinationListEnvelope = enveloped(list[DestinationListItem], "DestinationListEnvelope")
DestinationInfoEnvelope = enveloped(DestinationInfo, "DestinationInfoEnvelope")
TestConnectionEnvelope = enveloped(TestConnectionResult, "TestConnectionEnvelope")
DestinationUsageEnvelope = enveloped(DestinationUsage, "DestinationUsageEnvelope")
