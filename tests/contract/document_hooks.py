"""Schemathesis hooks for the run over the server's own ``/v1/openapi.json``.

- Requests meant to be valid go to the live server's demo team (``OPENDTS_ST_TEAM_ID``), so they
  reach real data and real rules instead of a 403 for a team the key is not in; reads of runs and
  backfill creates go to its demo transfer (``OPENDTS_ST_TRANSFER_ID``), which has runs to list
  and which generated requests never pause, change or delete.
  Cases meant to send an invalid path keep it: a ``[parameters]`` override would replace the
  invalid value too, and ``negative_data_rejection`` would then see a valid request "accepted".
- The runs list has one rule JSON Schema cannot state: ``end_date`` is not before
  ``start_date`` (400 otherwise). Two valid dates the wrong way round are swapped, so
  ``positive_data_acceptance`` still holds the rest of the list to the document.
- A backfill's range must end by today and span at most 3,660 days (422 otherwise, as the
  document says): two valid dates of a create are moved to a month ending in the past, so
  generated creates succeed often enough for the stateful links (get, cancel) to be followed.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation

#: Operations whose transfer_id is the demo transfer's (none of them changes the transfer).
_ON_DEMO_TRANSFER = frozenset({"listTransferRuns", "getLatestBackfill", "createBackfill"})
#: Operations that would pause, change or delete the demo transfer (generated ids start at 1,
#: as it does): they get a transfer that does not exist instead, and the stateful phase's own
#: transfers to change.
_SPARE_DEMO_TRANSFER = frozenset({"deleteTransfer", "updateTransfer", "setTransferState"})


def _day(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return (
            datetime.fromisoformat(value).date() if len(value) > 10 else date.fromisoformat(value)
        )
    except ValueError:
        return None


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    operation_id = case.operation.definition.raw.get("operationId")
    if "team_id" in (case.path_parameters or {}) and not (
        meta is not None and meta.is_negative_at(ParameterLocation.PATH)
    ):
        pinned = {"team_id": int(os.environ["OPENDTS_ST_TEAM_ID"])}
        if operation_id in _ON_DEMO_TRANSFER:
            pinned["transfer_id"] = int(os.environ["OPENDTS_ST_TRANSFER_ID"])
        case.path_parameters = {**case.path_parameters, **pinned}
    demo = int(os.environ["OPENDTS_ST_TRANSFER_ID"])
    if (
        operation_id in _SPARE_DEMO_TRANSFER
        and (case.path_parameters or {}).get("transfer_id") == demo
    ):
        case.path_parameters = {**case.path_parameters, "transfer_id": demo + 10**9}
    if operation_id == "listTransferRuns" and isinstance(case.query, dict):
        first, last = _day(case.query.get("start_date")), _day(case.query.get("end_date"))
        if first is not None and last is not None and last < first:
            case.query = {
                **case.query,
                "start_date": case.query["end_date"],
                "end_date": case.query["start_date"],
            }
    if operation_id == "createBackfill" and isinstance(case.body, dict):
        first, last = _day(case.body.get("range_start")), _day(case.body.get("range_end"))
        if first is not None and last is not None:
            end = min(max(first, last), date.today() - timedelta(days=1))
            start = max(min(first, last), end - timedelta(days=30))
            case.body = {
                **case.body,
                "range_start": start.isoformat(),
                "range_end": end.isoformat(),
            }
    return case
