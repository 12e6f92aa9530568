"""Run a function off the GUI thread and get its result back on the GUI thread (Anki's pattern).

``run_in_background(fn, on_done, on_error)`` runs ``fn()`` on a QThreadPool; the callbacks are
invoked on the GUI thread through queued signals, so they may touch widgets. Workers never do.
``run_db_write`` does the same on a pool of exactly one thread: every database write from the
GUI goes through it, in order, so the GUI's writes never contend with each other for the
SQLite write lock and a user's actions are applied in the order they were made.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot

from clinic_app.domain.errors import ClinicError

log = logging.getLogger(__name__)

#: Tasks in flight; holding them keeps their signal objects alive until they have reported.
_IN_FLIGHT: set[_Task] = set()


class _Relay(QObject):
    """Lives on the GUI thread; the worker emits its signals, its slots run on the GUI thread."""

    done = Signal(object)
    failed = Signal(object)

    def __init__(
        self, on_done: Callable[[Any], object], on_error: Callable[[Exception], object]
    ) -> None:
        super().__init__()
        self._on_done = on_done
        self._on_error = on_error
        self.done.connect(self._deliver_done, Qt.ConnectionType.QueuedConnection)
        self.failed.connect(self._deliver_failed, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _deliver_done(self, value: object) -> None:
        self._on_done(value)

    @Slot(object)
    def _deliver_failed(self, exc: object) -> None:
        assert isinstance(exc, Exception)
        self._on_error(exc)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.relay = relay

    def run(self) -> None:
        try:
            result = self.fn()
        except ClinicError as exc:  # an expected refusal or a cancel: the callback shows it
            log.info("Background task ended: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            self.relay.failed.emit(exc)
        except Exception as exc:
            log.exception("Background task failed")
            self.relay.failed.emit(exc)
        else:
            self.relay.done.emit(result)


_DB_WRITE_POOL: QThreadPool | None = None


def db_write_pool() -> QThreadPool:
    """The GUI's single database-writer thread (created on first use)."""
    global _DB_WRITE_POOL
    if _DB_WRITE_POOL is None:
        _DB_WRITE_POOL = QThreadPool()
        _DB_WRITE_POOL.setMaxThreadCount(1)
        _DB_WRITE_POOL.setObjectName("clinicfusion-db-writer")
    return _DB_WRITE_POOL


def run_db_write(
    fn: Callable[[], Any],
    on_done: Callable[[Any], object],
    on_error: Callable[[Exception], object],
) -> None:
    """Run a database-writing service call on the single writer thread."""
    run_in_background(fn, on_done, on_error, pool=db_write_pool())


def run_in_background(
    fn: Callable[[], Any],
    on_done: Callable[[Any], object],
    on_error: Callable[[Exception], object],
    pool: QThreadPool | None = None,
) -> None:
    """Run ``fn`` on ``pool`` (the global pool by default); report on the GUI thread."""
    task: _Task

    def finish(callback: Callable[[Any], object], value: Any) -> None:
        _IN_FLIGHT.discard(task)
        callback(value)

    relay = _Relay(lambda value: finish(on_done, value), lambda exc: finish(on_error, exc))
    task = _Task(fn, relay)
    _IN_FLIGHT.add(task)
    (pool or QThreadPool.globalInstance()).start(task)


class _ProgressRelay(QObject):
    """Carries a job's progress to the GUI thread (queued), dropping updates that come too fast."""

    progressed = Signal(float, str)

    def __init__(self, on_progress: Callable[[float, str], None]) -> None:
        super().__init__()
        self._on_progress = on_progress
        self.progressed.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @Slot(float, str)
    def _deliver(self, fraction: float, message: str) -> None:
        self._on_progress(fraction, message)


class JobHandle:
    """A running long job: ``cancel()`` asks it to stop at its next check (cooperative)."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self.finished = False

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


#: The pool inference runs on: one thread, so one model is loaded and used at a time.
_INFERENCE_POOL: QThreadPool | None = None


def inference_pool() -> QThreadPool:
    global _INFERENCE_POOL
    if _INFERENCE_POOL is None:
        _INFERENCE_POOL = QThreadPool()
        _INFERENCE_POOL.setMaxThreadCount(1)
        _INFERENCE_POOL.setObjectName("clinicfusion-inference")
    return _INFERENCE_POOL


def run_job(
    fn: Callable[[Callable[[float, str], None], Callable[[], bool]], Any],
    on_progress: Callable[[float, str], None],
    on_done: Callable[[Any], object],
    on_error: Callable[[Exception], object],
    *,
    pool: QThreadPool | None = None,
    min_interval_s: float = 0.05,
) -> JobHandle:
    """Run an Orange3-style ``fn(progress, cancel)`` off the GUI thread.

    Progress reaches ``on_progress`` on the GUI thread at most every ``min_interval_s`` (the
    last update and the final 1.0 always arrive); ``handle.cancel()`` makes ``cancel()`` true."""
    handle = JobHandle()
    relay = _ProgressRelay(on_progress)
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - last[0] >= min_interval_s:
            last[0] = now
            relay.progressed.emit(float(fraction), message)

    def work() -> Any:
        try:
            return fn(progress, handle._cancelled.is_set)
        finally:
            handle.finished = True

    def done(value: Any) -> None:
        relay.deleteLater()
        on_done(value)

    def failed(exc: Exception) -> None:
        relay.deleteLater()
        on_error(exc)

    run_in_background(work, done, failed, pool=pool or inference_pool())
    return handle
