"""``Factory``: the infrastructure factory that ``PERSISTENCE_MODULE=eventsourcing_foldlog`` selects, for
``Application`` (an ``InfrastructureFactory``) and ``DCBApplication`` (a ``DCBInfrastructureFactory``) alike."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from eventsourcing.dcb.persistence import DCBInfrastructureFactory
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    ProcessRecorder,
)
from eventsourcing.utils import resolve_topic, strtobool

from foldlog import FoldlogError

from eventsourcing_foldlog import handles
from eventsourcing_foldlog.dcb import FoldlogDCBRecorder
from eventsourcing_foldlog.recorders import (
    FoldlogAggregateRecorder,
    FoldlogApplicationRecorder,
    FoldlogProcessRecorder,
    FoldlogSnapshotRecorder,
    FoldlogTrackingRecorder,
    translate,
)

if TYPE_CHECKING:
    from eventsourcing.utils import Environment, EnvType
    from foldlog import Store

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class Factory(InfrastructureFactory[FoldlogTrackingRecorder], DCBInfrastructureFactory[FoldlogTrackingRecorder]):
    """Recorders on foldlog stores under ``FOLDLOG_PATH``.

    One class for both kinds of application: the library finds a module's factory by scanning it for
    subclasses of the factory base it wants (``InfrastructureFactory`` for ``Application``,
    ``DCBInfrastructureFactory`` for ``DCBApplication``) and requires exactly one, so one class that is both
    lets the same ``PERSISTENCE_MODULE=eventsourcing_foldlog`` serve either, and a projection of a
    ``DCBApplication`` (whose view comes from an ``InfrastructureFactory``) too.

    Settings (each may carry the application's name as a prefix, ``BANKACCOUNTS_FOLDLOG_PATH``, which wins
    over the plain key):

    - ``FOLDLOG_PATH`` (required): a directory holding one folder per application, named after it
      (``<path>/BankAccounts``), with a store per kind of record: ``events`` (the application sequence and
      process tracking), ``snapshots``, ``tracking`` (stand-alone tracking recorders and views), ``dcb``
      (a ``DCBApplication``'s tagged events).
    - ``FOLDLOG_DURABILITY``: ``always`` (synced before an insert returns), ``group`` (the default: synced
      within 10 ms or 1,000 inserts; a crash of the process loses nothing, a power loss at most that
      window) or ``never`` (the OS writes back; only a clean close syncs).
    - ``CREATE_TABLE``: ``false`` opens only stores that exist already.

    A process opens each directory once: factories and recorders on the same path share one handle, which
    the last ``close()`` closes.
    """

    FOLDLOG_PATH = "FOLDLOG_PATH"
    FOLDLOG_DURABILITY = "FOLDLOG_DURABILITY"
    CREATE_TABLE = "CREATE_TABLE"
    DURABILITIES = ("always", "group", "never")

    aggregate_recorder_class = FoldlogAggregateRecorder
    snapshot_recorder_class = FoldlogSnapshotRecorder
    application_recorder_class = FoldlogApplicationRecorder
    tracking_recorder_class = FoldlogTrackingRecorder
    process_recorder_class = FoldlogProcessRecorder
    dcb_recorder_class = FoldlogDCBRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        path = self.env.get(self.FOLDLOG_PATH)
        if not path:
            keys = ", ".join(self.env.create_keys(self.FOLDLOG_PATH))
            msg = f"foldlog path not found in the environment (keys: {keys})"
            raise OSError(msg)
        durability = (self.env.get(self.FOLDLOG_DURABILITY) or "group").strip().lower()
        if durability not in self.DURABILITIES:
            msg = f"{self.FOLDLOG_DURABILITY} must be one of {', '.join(self.DURABILITIES)}, not {durability!r}"
            raise OSError(msg)
        name = self.env.name or "default"
        if not _NAME.fullmatch(name):
            msg = f"application name {name!r} cannot name a folder (letters, digits, '_', '.', '-')"
            raise OSError(msg)
        self.durability = durability
        self.directory = Path(path) / name
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()

    def _store(self, kind: str) -> Store:
        if not _NAME.fullmatch(kind):
            msg = f"{kind!r} cannot name a store folder (letters, digits, '_', '.', '-')"
            raise ValueError(msg)
        with self._lock:
            store = self._stores.get(kind)
            if store is None or store.closed:
                create = strtobool(self.env.get(self.CREATE_TABLE) or "yes")
                try:
                    store = handles.acquire(self.directory / kind, durability=self.durability, create=create)
                except FoldlogError as e:
                    raise translate(e) from e
                self._stores[kind] = store
            return store

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        """Events of aggregates (``purpose="events"``, the application's store) or snapshots
        (``"snapshots"``, kept apart); another purpose gets a store of its own."""
        if purpose == "snapshots":
            return self.snapshot_recorder_class(self._store("snapshots"))
        return self.aggregate_recorder_class(self._store(purpose))

    def application_recorder(self) -> ApplicationRecorder:
        """The application sequence (``APPLICATION_RECORDER_TOPIC`` may name a subclass)."""
        topic = self.env.get(self.APPLICATION_RECORDER_TOPIC)
        cls = resolve_topic(topic) if topic else self.application_recorder_class
        assert issubclass(cls, FoldlogApplicationRecorder)
        return cls(self._store("events"))

    def tracking_recorder(
        self, tracking_recorder_class: type[FoldlogTrackingRecorder] | None = None
    ) -> FoldlogTrackingRecorder:
        """A tracking recorder (or view) of this class, else ``TRACKING_RECORDER_TOPIC``'s, on the
        ``tracking`` store."""
        if tracking_recorder_class is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            tracking_recorder_class = resolve_topic(topic) if topic else self.tracking_recorder_class
        assert tracking_recorder_class is not None
        assert issubclass(tracking_recorder_class, FoldlogTrackingRecorder)
        return tracking_recorder_class(self._store("tracking"))

    def process_recorder(self) -> ProcessRecorder:
        """The application sequence with tracking (``PROCESS_RECORDER_TOPIC`` may name a subclass)."""
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        cls = resolve_topic(topic) if topic else self.process_recorder_class
        assert issubclass(cls, FoldlogProcessRecorder)
        return cls(self._store("events"))

    def dcb_recorder(self) -> FoldlogDCBRecorder:
        """The tagged events of a ``DCBApplication``, in a store of their own (``dcb``)."""
        return self.dcb_recorder_class(self._store("dcb"))

    def close(self) -> None:
        """Releases this factory's stores (the last user of a store closes it)."""
        with self._lock:
            stores = list(self._stores.values())
            self._stores.clear()
        for store in stores:
            handles.release(store)
