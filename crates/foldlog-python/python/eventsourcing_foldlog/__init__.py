"""foldlog as a persistence module for the ``eventsourcing`` library.

Select it with ``PERSISTENCE_MODULE=eventsourcing_foldlog`` and ``FOLDLOG_PATH=<directory>`` (see
``Factory`` for the other settings), for an ``Application`` or a ``DCBApplication``. This module exposes
exactly one infrastructure factory, as the library's module lookup requires; the recorders are in
``eventsourcing_foldlog.recorders`` and, for DCB, ``eventsourcing_foldlog.dcb``.
"""

from eventsourcing_foldlog.dcb import FoldlogDCBRecorder, FoldlogDCBSubscription
from eventsourcing_foldlog.factory import Factory
from eventsourcing_foldlog.recorders import (
    FoldlogAggregateRecorder,
    FoldlogApplicationRecorder,
    FoldlogProcessRecorder,
    FoldlogSnapshotRecorder,
    FoldlogSubscription,
    FoldlogTrackingRecorder,
)

__all__ = [
    "Factory",
    "FoldlogAggregateRecorder",
    "FoldlogApplicationRecorder",
    "FoldlogDCBRecorder",
    "FoldlogDCBSubscription",
    "FoldlogProcessRecorder",
    "FoldlogSnapshotRecorder",
    "FoldlogSubscription",
    "FoldlogTrackingRecorder",
]
