"""The README's bank example (examples/bank.py) runs and tells the story it prints."""

from __future__ import annotations

import importlib.util
import sys
from decimal import Decimal
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "bank.py"


def test_bank_example(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bank_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    bank = importlib.util.module_from_spec(spec)
    # eventsourcing finds event classes by their topic ("bank_example:BankAccount.Opened"): the module must
    # be importable by that name.
    sys.modules[spec.name] = bank
    spec.loader.exec_module(bank)
    found = bank.main(str(tmp_path))
    assert found["balance"] == Decimal("75.00")
    assert found["history"] == [Decimal("0.00"), Decimal("100.00"), Decimal("70.00"), Decimal("75.00")]
    assert found["snapshots"] == [2, 4]
    assert found["notifications"] == ["Opened", "Deposited", "Withdrawn", "Deposited"]
    assert (found["reloaded"], found["at_version_3"]) == (Decimal("75.00"), Decimal("70.00"))
    # Snapshots are kept apart: the log holds the four events only.
    assert found["positions"] == 4
