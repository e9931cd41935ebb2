"""How ``backfill watch`` turns the final statuses of what it watched into an exit code."""

from __future__ import annotations

import pytest

from opendts.cli.backfills import exit_code


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["COMPLETED"], 0),
        (["COMPLETED", "COMPLETED"], 0),
        (["FAILED"], 1),
        (["CANCELLED"], 2),
        (["COMPLETED", "CANCELLED"], 2),
        (["CANCELLED", "FAILED", "COMPLETED"], 1),
        ([], 0),
    ],
)
def test_any_failed_is_1_else_any_cancelled_is_2(statuses: list[str], code: int) -> None:
    assert exit_code(statuses) == code
