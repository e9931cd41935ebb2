"""The data-source connections API's wire format, as the OpenAPI document describes it.

Bodies are read by ``connections.service``; these models only describe them. ``fields`` are
the source connector's settings (its ``Settings`` model), checked by the connector: 400 naming
``fields.<name>`` when one does not fit. Credentials among them are sealed at rest and come
back masked as ``***``; ``stored_credentials`` names the ones kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from opendts.kit.openapi import enveloped

NOT_BLANK = r"\S"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"


class CreateDataSourceConnectionRequest(BaseModel):
    """The contract's body, plus opendts' ``display_name`` and ``fields``."""

    data_source_id: str = Field(
        max_length=60,
        pattern=NOT_BLANK,
        description="A source connector (GET .../transfers/available-sources lists them).",
    )
    destination_type: str = Field(
        max_length=60,
        pattern=NOT_BLANK,
        description="The destination type the connection loads into (e.g. duckdb).",
    )
    api_key: str | None = Field(
        None, max_length=1000, description="Accepted for the contract; opendts does not use it."
    )
    display_name: str | None = Field(None, max_length=200, pattern=NOT_BLANK)
    fields: dict[str, Any] | None = Field(
        None, description="The source's settings, credentials included (sealed at rest)."
    )


class UpdateDataSourceConnectionRequest(BaseModel):
    """What to change; ``fields`` replaces the settings (credentials left out, or sent back as
    ``***``, are kept while the connection points where it did; otherwise 400)."""

    data_source_id: str | None = Field(
        None, max_length=60, pattern=NOT_BLANK, description="Cannot change; may be repeated."
    )
    destination_type: str | None = Field(None, max_length=60, pattern=NOT_BLANK)
    display_name: str | None = Field(None, max_length=200, pattern=NOT_BLANK)
    fields: dict[str, Any] | None = None


class DataSourceConnection(BaseModel):
    """The contract's DataSourceConnection, plus opendts' fields (credentials masked)."""

    connection_id: str = Field(pattern=UUID_PATTERN, description="A UUID.")
    login_url: str | None = Field(description="Always null: opendts has no OAuth flow.")
    connect_url: str | None = Field(description="Always null.")
    data_source_id: str
    destination_type: str
    display_name: str
    fields: dict[str, Any] = Field(description="The settings; credentials masked as ***.")
    stored_credentials: list[str] = Field(description="Names of the credentials kept sealed.")
    created_time: datetime
    updated_time: datetime | None


DataSourceConnectionEnvelope = enveloped(DataSourceConnection, "DataSourceConnectionEnvelope")
DataSourceConnectionListEnvelope = enveloped(
    list[DataSourceConnection], "DataSourceConnectionListEnvelope"
)
