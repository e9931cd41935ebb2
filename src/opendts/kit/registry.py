"""Imports every model module so ``Base.metadata`` knows every table (Alembic, tests)."""

from __future__ import annotations

from opendts.auth import models as auth_models
from opendts.auth import sessions as ui_session_models
from opendts.backfills import models as backfill_models
from opendts.connections import models as connection_models
from opendts.destinations import models as destination_models
from opendts.kit.db import Base
from opendts.runs import models as run_models
from opendts.teams import models as team_models
from opendts.transfers import models as transfer_models

MODEL_MODULES = (
    team_models,
    auth_models,
    destination_models,
    connection_models,
    transfer_models,
    backfill_models,
    run_models,
    ui_session_models,
)
metadata = Base.metadata
