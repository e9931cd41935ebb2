"""The transfers API's wire format, as the OpenAPI document describes it.

Bodies are read by ``transfers.api.validate`` (every problem named at once); these models only
describe them. Field names, types, limits and enums follow that code: change both together
(schemathesis over the whole document fails when they drift apart).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from opendts.connectors import registry
from opendts.connectors.describe import SetupSetting
from opendts.destinations.schemas import DestinationType
from opendts.kit.openapi import enveloped
from opendts.transfers import schedule
from opendts.transfers.service import MAX_PARALLEL_RUNS

#: A SQL identifier; blank means the default (surrounding spaces are trimmed).
IDENTIFIER = r"^\s*(?:[A-Za-z_][A-Za-z0-9_]{0,62})?\s*$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
MAX_ID = 9223372036854775807
#: A string that is not blank once trimmed.
NOT_BLANK = r"\S"


def _installed_sources(schema: dict[str, Any]) -> None:
    # The document lists the sources installed on this server (built-ins and plugins).
    for name in ("data_source_id", "source_id"):
        if name in schema["properties"]:
            schema["properties"][name]["enum"] = sorted(registry.sources())


def _required_for(interval: str, field: str) -> dict[str, Any]:
    return {
        "if": {"properties": {"run_interval": {"const": interval}}, "required": ["run_interval"]},
        "then": {"properties": {field: {"type": "integer"}}, "required": [field]},
    }


class TransferSchedule(BaseModel):
    """When recurring refreshes run: daily (the default), hourly, weekly or monthly."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [_required_for("weekly", "run_weekday"), _required_for("monthly", "run_day")]
        },
    )

    run_interval: Literal["daily", "hourly", "weekly", "monthly"] | None = None
    run_hour: int | None = Field(None, ge=0, le=23, description="UTC hour (0).")
    refresh_window: int | None = Field(
        None, ge=1, le=schedule.MAX_REFRESH_WINDOW, description="Days each refresh reloads (1)."
    )
    run_weekday: int | None = Field(
        None, ge=1, le=7, description="1 = Monday; required for weekly schedules."
    )
    run_day: int | None = Field(
        None, ge=1, le=31, description="Day of the month; required for monthly schedules."
    )


class TransferAccount(BaseModel):
    """An account of the source; its ``account_id`` is handed to the source."""

    model_config = ConfigDict(extra="forbid")

    data_source_username: str | None = None
    login_id: int | None = None
    account_id: str | None = None


class TransferSegment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_source_username: str | None = None
    login_id: int | None = None
    segment_id: str | None = None
    segment_name: str | None = None


class TransferDataSourceSetting(BaseModel):
    """One setting of the source, by its id (see availableOptions for a source's settings)."""

    field_id: str
    value: Any = None
    group: Any = Field(None, description="Kept for compatibility; not used.")


class TransferConfigurationRequest(BaseModel):
    """The contract's TransferConfigurationRequest plus opendts's extensions (``table`` on).

    Unknown top-level fields are ignored. The source's settings (``data_source_settings`` and
    ``source_config``, merged) are checked by the source connector, and ``destination_id``
    must name a destination of the team: both answer 400 naming the field when they do not
    fit (validations answers ``is_valid: false`` instead).
    """

    model_config = ConfigDict(json_schema_extra=_installed_sources)

    data_source_id: str = Field(max_length=60, description="A source connector of this server.")
    destination_id: int = Field(ge=1, le=MAX_ID, description="A destination of the team.")
    display_name: str = Field(max_length=200, pattern=NOT_BLANK)
    schema_id: int | None = Field(None, ge=0, le=MAX_ID, description="Kept as sent.")
    transfer_type: int | None = Field(None, ge=0, le=2**31 - 1, description="Kept as sent.")
    schedule: list[TransferSchedule] | None = None
    accounts: list[TransferAccount] | None = None
    segments: list[TransferSegment] | None = None
    data_source_settings: list[TransferDataSourceSetting] | None = None
    notification_recipients: list[Annotated[str, Field(pattern=EMAIL)]] | None = None
    source_config: dict[str, Any] | None = Field(
        None, description="The source's settings as an object (merged over data_source_settings)."
    )
    table: str | None = Field(
        None, pattern=IDENTIFIER, description="Target table (default: the display name as one)."
    )
    date_column: str | None = Field(None, pattern=IDENTIFIER, description="(date)")
    refresh_mode: Literal["replace", "append", "overwrite"] | None = Field(
        None, description="replace (the date's rows in one transaction), append or overwrite."
    )
    max_parallel_runs: int | None = Field(None, ge=1, le=MAX_PARALLEL_RUNS, description="(1)")
    data_source_connection_id: str | None = Field(
        None,
        json_schema_extra={"format": "uuid"},
        description="A data-source connection of the team for this source: its settings and "
        "credentials are used, source_config adds to them. Left out of an update: kept.",
    )


class TransferConfigurationCandidate(RootModel[dict[str, Any]]):
    """A TransferConfigurationRequest to check: any JSON object is accepted, and its problems
    are the answer (see createTransfer for the fields)."""


class TransferStateRequest(BaseModel):
    transfer_state: Literal["pause", "unpause"]


class TransferCreated(BaseModel):
    """TransferCreatedResponse / TransferUpdatedResponse."""

    transfer_id: int = Field(ge=1)
    transfer_name: str


class TransferStateResponse(BaseModel):
    result: bool
    state: Literal["PAUSED", "ACTIVE"]


class FieldProblem(BaseModel):
    field_id: str = Field(examples=["schedule[0].run_hour"])
    error_code: str = Field(examples=["isEmpty", "invalidType", "invalidValue", "unknown"])
    message: str


class ValidationErrorsResponse(BaseModel):
    """An invalid configuration is a 200 with ``is_valid: false``, not an HTTP error."""

    is_valid: bool
    errors: list[FieldProblem]


class AvailableSource(BaseModel):
    """The contract's DataSource, plus our ``name`` and ``settings``."""

    data_source_id: str
    service_name: str
    service_provider: str = Field(examples=["opendts", "plugin"])
    logo_url: str | None
    has_custom_fields: bool
    is_custom_connector: bool = Field(description="True for a plugin's source.")
    is_public_beta: bool
    is_released: bool
    is_internal: bool
    applicable_destinations: list[str] = Field(description="Destination types it can load into.")
    name: str
    settings: list[SetupSetting]


class DestinationDetail(BaseModel):
    id: str
    value: Any = None


class TransferDestination(BaseModel):
    """One of the team's destinations (credentials never included)."""

    destination_id: int
    destination_name: str
    destination_type: str
    destination_label: str
    destination_icon_url: str
    is_internal: bool
    details: list[DestinationDetail] = Field(description="Its settings, credentials masked.")


class CatalogueDestinationType(DestinationType):
    """An installed destination type, with where to check, create and update one."""

    connection_check_url: str
    create_url: str
    update_url_template: str


class AvailableSourcesResponse(BaseModel):
    data_sources: list[AvailableSource]
    destinations: list[TransferDestination]
    destination_types: list[CatalogueDestinationType]


class AvailableOptionsQuery(BaseModel):
    model_config = ConfigDict(json_schema_extra=_installed_sources)

    source_id: str = Field(description="A source connector of this server, e.g. demo.")
    destination_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="One of the team's destinations (400 otherwise)."
    )


class OptionsDataSource(BaseModel):
    data_source_id: str
    service_name: str
    settings: list[SetupSetting]


class ScheduleField(BaseModel):
    id: str
    minimum: int
    maximum: int
    is_required: bool
    default: int | None


class ScheduleOption(BaseModel):
    run_interval: Literal["daily", "hourly", "weekly", "monthly"]
    label: str
    fields: list[ScheduleField]


class SchemaOption(BaseModel):
    schema_id: int
    schema_name: str
    description: str


class LicenseInfo(BaseModel):
    name: str
    license: str
    max_backfill_days: int
    max_parallel_runs: int
    rate_limit_per_hour: int


class TransferOptionsResponse(BaseModel):
    """The contract's TransferOptionsResponse, plus our ``source_id`` on."""

    data_source: OptionsDataSource
    schedule_options: list[ScheduleOption]
    schemas: list[SchemaOption]
    logins: list[dict[str, Any]] = Field(description="Always empty: sources sign in by settings.")
    accounts: list[dict[str, Any]] = Field(description="Always empty.")
    segments: list[dict[str, Any]] = Field(description="Always empty.")
    license: LicenseInfo
    source_id: str
    destination_id: int | None
    destination: TransferDestination | None
    settings: list[SetupSetting]
    refresh_modes: list[Literal["replace", "append", "overwrite"]]
    schedule_intervals: list[Literal["daily", "hourly", "weekly", "monthly"]]


class TransferDataSource(BaseModel):
    data_source_id: str
    service_name: str
    service_provider: str
    settings: list[TransferDataSourceSetting]


class NotificationRecipient(BaseModel):
    email: str


class TransferConfigurationResponse(BaseModel):
    """The contract's TransferConfigurationResponse, plus our extensions (``transfer_type`` on).

    Credentials among the source's settings are never included.
    """

    transfer_id: int
    display_name: str
    schema_id: int | None
    destination_id: int | None
    accounts: list[TransferAccount]
    segments: list[TransferSegment]
    schedule: list[TransferSchedule]
    data_source: TransferDataSource
    notification_recipients: list[NotificationRecipient]
    external_url: str | None
    transfer_type: int | None
    state: Literal["active", "paused"]
    kind: str
    source_config: dict[str, Any]
    table: str | None
    date_column: str
    refresh_mode: Literal["replace", "append", "overwrite"]
    max_parallel_runs: int
    data_source_connection_id: str | None
    next_run_time: datetime | None
    created_time: datetime | None


class InfoDataSource(BaseModel):
    data_source_id: str
    title: str


class InfoDestination(BaseModel):
    id: int
    display_name: str
    type: str


class InfoBackfill(BaseModel):
    transfer_backfill_id: int
    status: str
    range_start_date: date
    range_end_date: date


class TransferInfoResponse(BaseModel):
    """The contract's TransferInfoResponse (``run_date`` is the next scheduled run), plus our
    extensions (``transfer_id`` on)."""

    dwh_transfer_id: int
    display_name: str
    external_transfer_id: str
    status: str
    state: Literal["active", "paused"]
    schedule: str = Field(description="The first schedule's interval, or manual.")
    run_date: datetime | None
    data_source: InfoDataSource
    destination: InfoDestination | None
    backfill: InfoBackfill | None = Field(description="The latest backfill.")
    accounts: list[str]
    transfer_id: int
    kind: str
    table: str | None
    refresh_mode: str
    max_parallel_runs: int


TransferInfoListEnvelope = enveloped(list[TransferInfoResponse], "TransferInfoListEnvelope")
TransferCreatedEnvelope = enveloped(TransferCreated, "TransferCreatedEnvelope")
