"""Run a function off the GUI thread and get its result back on the GUI thread (Anki's pattern).

``run_in_background(fn, on_done, on_error)`` runs ``fn()`` on a QThreadPool; the callbacks are
invoked on the GUI thread through queued signals, so they may touch widgets. Workers never do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

#: Tasks in flight; holding them keeps their signal objects alive until they have reported.
_IN_FLIGHT: set[_Task] = set()


class _Signals(QObject):
    done = Signal(object)
    failed = Signal(object)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.signals = _Signals()  # created on the GUI thread, so its slots run there

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:
            log.exception("Background task failed")
            self.signals.failed.emit(exc)
        else:
            self.signals.done.emit(result)


def run_in_background(
    fn: Callable[[], Any],
    on_done: Callable[[Any], None],
    on_error: Callable[[Exception], None],
    pool: QThreadPool | None = None,
) -> None:
    """Run ``fn`` on ``pool`` (the global pool by default); report on the GUI thread."""
    task = _Task(fn)
    _IN_FLIGHT.add(task)

    def finish(callback: Callable[[Any], None], value: object) -> None:
        _IN_FLIGHT.discard(task)
        callback(value)

    task.signals.done.connect(lambda value: finish(on_done, value))
    task.signals.failed.connect(lambda exc: finish(on_error, exc))
    (pool or QThreadPool.globalInstance()).start(task)
