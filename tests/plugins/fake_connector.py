"""A third-party source, as a plugin package would ship it (for the entry point test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pyarrow as pa

from opendts.connectors.base import ConnectorSettings, ReadRequest


class ConstantSettings(ConnectorSettings):
    value: int = 7


class ConstantSource:
    name: ClassVar[str] = "constant"
    title: ClassVar[str] = "Constant (plugin)"
    Settings: ClassVar[type[ConnectorSettings]] = ConstantSettings

    def read(self, settings: Any, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        yield pa.RecordBatch.from_pydict(
            {"value": [settings.value], "day": [str(request.data_date)]}
        )
