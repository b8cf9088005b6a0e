"""A bank on the eventsourcing library, stored by foldlog: accounts, time travel and snapshots.

    python examples/bank.py [DIRECTORY]

The domain and the application are plain ``eventsourcing`` code; the only foldlog-specific lines are the
two settings that select the persistence module. At the end the same events are read back with foldlog's
own API, from a read-only handle, to show what is on disk.
"""

from __future__ import annotations

import sys
import tempfile
from decimal import Decimal
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

import foldlog


class InsufficientFundsError(Exception):
    """A withdrawal larger than the balance."""


class BankAccount(Aggregate):
    """An account: every change is an event, and the balance is their fold."""

    @event("Opened")
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = Decimal("0.00")

    @event("Deposited")
    def deposit(self, amount: Decimal) -> None:
        self.balance += amount

    def withdraw(self, amount: Decimal) -> None:
        # The command checks; the event (below) only records what was decided.
        if amount > self.balance:
            msg = f"cannot withdraw {amount} from a balance of {self.balance}"
            raise InsufficientFundsError(msg)
        self._withdrawn(amount)

    @event("Withdrawn")
    def _withdrawn(self, amount: Decimal) -> None:
        self.balance -= amount


class Bank(Application[UUID]):
    """The application: commands load an account, call it, and save its new events."""

    is_snapshotting_enabled = True

    def open_account(self, owner: str) -> UUID:
        account = BankAccount(owner)
        self.save(account)
        return account.id

    def deposit(self, account_id: UUID, amount: Decimal) -> None:
        account: BankAccount = self.repository.get(account_id)
        account.deposit(amount)
        self.save(account)

    def withdraw(self, account_id: UUID, amount: Decimal) -> None:
        account: BankAccount = self.repository.get(account_id)
        account.withdraw(amount)
        self.save(account)

    def balance(self, account_id: UUID, version: int | None = None) -> Decimal:
        """The balance now, or as it was at ``version`` (time travel)."""
        account: BankAccount = self.repository.get(account_id, version=version)
        return account.balance


def main(directory: str) -> dict[str, object]:
    """Runs the story in ``directory``; prints it and returns what it found, for the tests."""
    env = {"PERSISTENCE_MODULE": "eventsourcing_foldlog", "FOLDLOG_PATH": directory}
    found: dict[str, object] = {}

    with Bank(env=env) as bank:
        alice = bank.open_account("Alice")
        bank.deposit(alice, Decimal("100.00"))
        bank.withdraw(alice, Decimal("30.00"))
        bank.deposit(alice, Decimal("5.00"))
        try:
            bank.withdraw(alice, Decimal("500.00"))
        except InsufficientFundsError as refusal:
            print(f"refused: {refusal}")
        found["balance"] = bank.balance(alice)
        print(f"alice's balance: {found['balance']}")

        # Time travel: the account as it was after each of its events (versions start at 1).
        found["history"] = [bank.balance(alice, version=v) for v in range(1, 5)]
        print("balance after each event:", ", ".join(map(str, found["history"])))

        # Snapshots: every one is kept, apart from the notification log.
        bank.take_snapshot(alice, version=2)
        bank.take_snapshot(alice)
        assert bank.snapshots is not None
        found["snapshots"] = [s.originator_version for s in bank.snapshots.get(alice)]
        print("snapshots at versions:", found["snapshots"])
        found["notifications"] = [n.topic.rsplit(".", 1)[-1] for n in bank.notification_log["1,10"].items]
        print("notification log:", ", ".join(found["notifications"]))  # type: ignore[arg-type]

    # A new application object (as after a restart) loads alice from the snapshot at version 4.
    with Bank(env=env) as bank:
        found["reloaded"] = bank.balance(alice)
        found["at_version_3"] = bank.balance(alice, version=3)  # from the snapshot at 2, plus one event
        print(f"after a restart: {found['reloaded']} (at version 3: {found['at_version_3']})")

    # The same events through foldlog's own API, on a read-only handle.
    with foldlog.Store(f"{directory}/Bank/events", read_only=True) as store:
        for e in store.read_all():
            print(f"  position {e.position}: stream {e.stream} v{e.version} {e.event_type.rsplit('.', 1)[-1]}")
        found["positions"] = store.next_position()
    return found


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="foldlog-bank-"))
