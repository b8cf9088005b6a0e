"""One open ``foldlog.Store`` per directory per process, shared and reference-counted.

A foldlog directory has one writer handle at a time (a second open in the same process is refused with
``LockedError``), while an ``eventsourcing`` process opens the same path from several places: an application
and the projection runner that follows it, or repeated ``factory.*_recorder()`` calls. Every factory
acquires a handle here and releases it on ``close()``; the last release closes the store.

The table holds the stores weakly: a store whose factories were never closed (the library does not close
every factory it makes) closes when the last recorder using it is garbage collected, and the path can then
be opened again.
"""

from __future__ import annotations

import atexit
import os
import threading
import warnings
import weakref
from pathlib import Path

from foldlog import FoldlogError, Store

_lock = threading.Lock()
_open: dict[str, tuple[weakref.ref[Store], int]] = {}


def acquire(path: Path, *, durability: str, create: bool) -> Store:
    """The open store of ``path``, opening it if no factory of this process holds it yet.

    The first opener's ``durability`` applies to every sharer of the handle.
    """
    key = os.path.realpath(path)
    with _lock:
        held = _open.get(key)
        store = None if held is None else held[0]()
        if held is not None and store is not None and not store.closed:
            _open[key] = (held[0], held[1] + 1)
            return store
        store = Store(key, durability=durability, create=create)
        _open[key] = (weakref.ref(store), 1)
        return store


def release(store: Store) -> None:
    """Gives back one reference to ``store``; the last one closes it."""
    key = os.path.realpath(store.path)
    with _lock:
        held = _open.get(key)
        if held is None or held[0]() is not store:
            return
        if held[1] > 1:
            _open[key] = (held[0], held[1] - 1)
            return
        del _open[key]
    store.close()


@atexit.register
def _close_all() -> None:
    """Closes what is still open when the interpreter exits (syncs and marks each log cleanly closed)."""
    with _lock:
        stores = [store for ref, _ in _open.values() if (store := ref()) is not None]
        _open.clear()
    for store in stores:
        try:
            store.close()
        except FoldlogError as e:
            warnings.warn(f"foldlog: closing {store.path} at exit failed: {e}", RuntimeWarning, stacklevel=1)
