"""The same workloads through eventsourcing's SQLite and POPO modules and eventsourcing_foldlog, in one run.

    python bench/bench.py [--quick] [--markdown]

Every workload goes through the library's recorder interface (or its ``Application``), as an application
would use it, with the persistence module as the only difference. Each backend gets a new directory. Prints
one table: a row per backend (with what its durability means), a column per workload, and the ratio of
each foldlog row to the SQLite file row.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory, StoredEvent
from eventsourcing.tests.application import BankAccounts

STATE = b'{"amount": "10.00", "timestamp": "2026-11-30T12:00:00+00:00"}'  # a typical small event body


@dataclass
class Backend:
    name: str
    durability: str
    env: Callable[[str], dict[str, str]]


def sqlite_synchronous() -> str:
    con = sqlite3.connect(":memory:")
    level = con.execute("PRAGMA synchronous").fetchone()[0]
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, str(level))


BACKENDS = [
    Backend("POPO (eventsourcing.popo)", "none: in memory", lambda d: {"PERSISTENCE_MODULE": "eventsourcing.popo"}),
    Backend(
        "SQLite file (eventsourcing.sqlite)",
        f"WAL, synchronous={sqlite_synchronous()}: fsync per commit",
        lambda d: {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": os.path.join(d, "db.sqlite")},
    ),
]
for durability, meaning in [
    ("always", "fsync before each insert returns"),
    ("group", "fsync within 10 ms / 1,000 inserts (default)"),
    ("never", "OS write-back, fsync on close"),
]:
    BACKENDS.append(
        Backend(
            f"foldlog {durability} (eventsourcing_foldlog)",
            meaning,
            lambda d, durability=durability: {
                "PERSISTENCE_MODULE": "eventsourcing_foldlog",
                "FOLDLOG_PATH": d,
                "FOLDLOG_DURABILITY": durability,
            },
        )
    )


def timed(fn: Callable[[], object], n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls. Dirty pages of earlier phases are written back first,
    so that no phase pays for the previous one's write-back in its fsyncs."""
    os.sync()
    gc.collect()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def events(originator: UUID, count: int, first: int = 1) -> list[StoredEvent]:
    return [StoredEvent(originator, first + i, "bench:Event", STATE) for i in range(count)]


def run(backend: Backend, scale: float) -> dict[str, float | None]:
    """Each workload's result for one backend: microseconds per operation, or events per second."""
    directory = tempfile.mkdtemp(prefix="bench-")
    results: dict[str, float | None] = {}
    n = lambda base: max(10, int(base * scale))  # noqa: E731
    try:
        factory = InfrastructureFactory.construct(backend.env(directory) | {"CREATE_TABLE": "y"})
        recorder = factory.application_recorder()
        assert isinstance(recorder, ApplicationRecorder)

        # Insert one event (a new aggregate each time), and a batch of 100 events.
        ones = iter([events(uuid4(), 1) for _ in range(n(2000))])
        results["insert 1 event (us)"] = timed(lambda: recorder.insert_events(next(ones)), n(2000)) * 1e6
        hundreds = iter([events(uuid4(), 100) for _ in range(n(200))])
        results["insert 100 events (us)"] = timed(lambda: recorder.insert_events(next(hundreds)), n(200)) * 1e6

        # Select a stream of 100 events; select 100 notifications from a log of about 20,000.
        stream = uuid4()
        recorder.insert_events(events(stream, 100))
        results["select stream of 100 (us)"] = timed(lambda: recorder.select_events(stream), n(2000)) * 1e6
        top = recorder.max_notification_id() or 1
        starts = iter([1 + (i * 997) % (top - 100) for i in range(n(2000))])
        results["select 100 notifications (us)"] = (
            timed(lambda: recorder.select_notifications(next(starts), 100), n(2000)) * 1e6
        )

        # A subscription draining 100,000 events.
        total = n(100_000)
        base = recorder.max_notification_id() or 0
        for _ in range(total // 100):
            recorder.insert_events(events(uuid4(), 100))
        try:
            subscription = recorder.subscribe(gt=base)
        except NotImplementedError:
            results["subscription (events/s)"] = None
        else:
            os.sync()
            started = time.perf_counter()
            with subscription:
                for count, _ in enumerate(subscription, 1):
                    if count == total // 100 * 100:
                        break
            results["subscription (events/s)"] = count / (time.perf_counter() - started)
        factory.close()

        # An application saving and loading aggregates (the library's BankAccounts, 1 + 5 events each).
        env = backend.env(directory + "/app") | {"CREATE_TABLE": "y"}
        if "SQLITE_DBNAME" in env:
            os.makedirs(directory + "/app", exist_ok=True)
        app = BankAccounts(env=env)
        ids: list[UUID] = []

        def open_and_credit() -> None:
            account_id = app.open_account("Alice", "alice@example.com")
            for _ in range(5):
                app.credit_account(account_id, Decimal("10.00"))
            ids.append(account_id)

        results["app: open + 5 credits (us)"] = timed(open_and_credit, n(300)) * 1e6
        loads = iter(ids * 10)
        results["app: load an account (us)"] = timed(lambda: app.get_account(next(loads)), len(ids) * 10) * 1e6
        app.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return results


def table(rows: list[tuple[Backend, dict[str, float | None]]]) -> str:
    columns = list(rows[0][1])
    sqlite = next(r for b, r in rows if b.name.startswith("SQLite"))
    lines = [
        "| backend | durability | " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for backend, result in rows:
        cells = []
        for c in columns:
            v, s = result[c], sqlite[c]
            if v is None:
                cells.append("n/a")
                continue
            cell = f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
            if backend.name.startswith("foldlog") and s is not None:
                speedup = v / s if c.endswith("(events/s)") else s / v
                cell += f" ({speedup:.1f}x)"
            elif backend.name.startswith("foldlog"):
                cell += " (SQLite: none)"
            cells.append(cell)
        lines.append(f"| {backend.name} | {backend.durability} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the work (a smoke run)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    rows = []
    for backend in BACKENDS:
        started = time.perf_counter()
        rows.append((backend, run(backend, scale)))
        print(f"# {backend.name}: {time.perf_counter() - started:.1f} s", flush=True)
    print()
    print(table(rows))
    print()
    print("Microseconds per operation (lower is better) except the subscription (events per second); in")
    print("parentheses, how many times faster than the SQLite file row.")


if __name__ == "__main__":
    main()
