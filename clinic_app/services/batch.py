"""Batch analysis: a persistent queue of cases in the database, worked through by a worker.

A clinic queues "everything new" (or chosen cases) as one *run* of *items* (``batch_runs``,
``batch_items``); a worker (``BatchService.run``, the CLI's ``clinic-app batch run``) takes a
lease on the run and analyses its items a batch at a time: one forward pass per batch, with the
next batch's stored files checked and read on a background thread while the model computes.

Crash safety: each case's analysis and its item's DONE state are committed in one transaction
(``CaseService.record_analysis(in_transaction=...)`` marks the item done inside the commit that
stores the analysis), so a kill -9 at
any moment loses at most the in-flight batch and never records a case twice. A restarted worker
puts items left RUNNING back in the queue; one that was running when the worker died
``MAX_ATTEMPTS`` times is marked failed, so a case that crashes the process cannot loop forever.

Cancelling is cooperative and works across processes: ``cancel`` marks the run CANCELLING in the
database and cancels its queued items; the worker notices between batches, finishes the batch in
hand and stops. ``run(cancel=...)`` is the worker's own stop request (Ctrl-C): it stops between
batches and leaves the queue as it was, so a later ``run`` resumes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from clinic_app.config.settings import DEVICES, Settings
from clinic_app.domain.errors import ClinicError, InputError, ReadOnlyCase
from clinic_app.domain.explanations import EXPLANATION_KEY
from clinic_app.domain.permissions import Permission
from clinic_app.domain.records import AuditAction, CaseStatus
from clinic_app.services.authorization import authorize
from clinic_app.services.case_analysis import (
    CaseRequest,
    case_request,
    convert_prediction,
    open_case_request,
    predictor_facts,
    store_converted,
)
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor, record_audit
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import (
    Analysis,
    BatchItem,
    BatchItemState,
    BatchRun,
    BatchRunState,
    Case,
    CaseInput,
    NoteVersion,
    VitalSigns,
)

if TYPE_CHECKING:
    from model.predictor import CaseFailure, Prediction

log = logging.getLogger(__name__)

#: A worker's lease on its run lasts this long and is renewed every HEARTBEAT_S (and with every
#: stored case); a worker that died on this host is recognised at once by its process id.
LEASE_S = 60.0
HEARTBEAT_S = 10.0
#: A case that was in the model when the worker died this many times is marked failed.
MAX_ATTEMPTS = 3
MAX_BATCH_SIZE = 256
#: Progress callbacks come at most this often (the last one always comes).
PROGRESS_INTERVAL_S = 0.2
#: cases/s is measured over this many most recently finished items.
RATE_WINDOW = 200

_ACTIVE_RUNS = (BatchRunState.QUEUED, BatchRunState.RUNNING, BatchRunState.CANCELLING)
_OPEN_ITEMS = (BatchItemState.QUEUED, BatchItemState.RUNNING)

CancelCheck = Callable[[], bool]


class WorkerBusy(ClinicError):
    """Another live worker holds the run's lease."""


class LeaseLost(ClinicError):
    """This worker's lease was taken over (it had lapsed): it stops without storing more."""


# -- what callers see ------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchFailure:
    """A case of the run that could not be analysed, and why (a sentence to act on)."""

    case_uid: str
    error: str
    attempts: int


@dataclass(frozen=True)
class BatchStatus:
    """Where a batch run stands. ``cases_per_s`` is over the most recently finished items;
    ``eta_s`` is None when nothing is left or no rate is known yet."""

    run_id: int
    state: str
    total: int
    done: int
    failed: int
    queued: int
    running: int
    cancelled: int
    cases_per_s: float | None
    eta_s: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    worker_active: bool
    explain: bool
    batch_size: int
    device: str
    bundle: str | None
    failures: tuple[BatchFailure, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state in (BatchRunState.FINISHED, BatchRunState.CANCELLED)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times in ISO 8601 UTC)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "run_id": self.run_id,
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "queued": self.queued,
            "running": self.running,
            "cancelled": self.cancelled,
            "cases_per_s": self.cases_per_s,
            "eta_s": self.eta_s,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "worker": self.worker,
            "worker_active": self.worker_active,
            "explain": self.explain,
            "batch_size": self.batch_size,
            "device": self.device,
            "bundle": self.bundle,
            "failures": [
                {"case_uid": f.case_uid, "error": f.error, "attempts": f.attempts}
                for f in self.failures
            ],
        }


@dataclass(frozen=True)
class BatchProgress:
    """A worker's progress report (throttled to a few per second)."""

    done: int
    failed: int
    total: int
    cases_per_s: float | None
    eta_s: float | None
    message: str


# -- the worker's identity and lease ---------------------------------------------------------
def new_worker_id() -> str:
    """``host:pid:uuid``: unique per worker, and says where it runs and which process it is."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _process_gone(pid: int) -> bool:
    """True when no such process lives on this host (or it is a zombie waiting to be reaped)."""
    if os.name != "posix":
        return False  # os.kill(pid, 0) would terminate it on Windows: rely on the lease time
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    return False


def lease_live(run: BatchRun, now: datetime | None = None) -> bool:
    """Whether the run's worker still holds it: the lease has not lapsed, and when the worker
    ran on this host, its process still exists (a kill -9 frees the run at once)."""
    now = now or datetime.now(UTC)
    if run.worker is None or run.lease_expires_at is None or run.lease_expires_at <= now:
        return False
    host, _, rest = run.worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        return not _process_gone(int(pid_text))
    return True


def _now() -> datetime:
    return datetime.now(UTC)


def _lease_until() -> datetime:
    return _now() + timedelta(seconds=LEASE_S)


@dataclass
class _Loaded:
    """One claimed-to-be case of a batch, read on the loader thread (or why it could not be)."""

    item_id: int
    case_uid: str
    request: CaseRequest | None = None
    error: str | None = None
    read_ms: float = 0.0
    stack: ExitStack = field(default_factory=ExitStack)


class _Heartbeat(threading.Thread):
    """Renews the worker's lease while it runs and notices a cancel from another process."""

    def __init__(self, database: Database, run_id: int, worker: str) -> None:
        super().__init__(name="clinicfusion-batch-lease", daemon=True)
        self._database, self._run_id, self._worker = database, run_id, worker
        self._stop_event = threading.Event()
        self.cancelling = False
        self.lost = False

    def run(self) -> None:
        while not self._stop_event.wait(HEARTBEAT_S):
            try:
                with self._database.write() as session:
                    run = session.get(BatchRun, self._run_id, with_for_update=True)
                    if run is None or run.worker != self._worker:
                        self.lost = True
                        return
                    run.lease_expires_at = _lease_until()
                    self.cancelling = run.state is BatchRunState.CANCELLING
            except ClinicError as exc:  # a busy database: try again at the next beat
                log.warning("Could not renew the batch lease: %s", exc)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


# -- the service -----------------------------------------------------------------------------
class BatchService:
    """Queue, watch, cancel and work through batch analyses (Qt-free; the CLI and GUI share it).

    ``enqueue``, ``status`` and ``cancel`` import no ML library (the GUI may call them);
    ``run`` loads the model in this process."""

    def __init__(self, cases: CaseService, settings: Settings) -> None:
        self.cases = cases
        self.settings = settings
        self.database = cases.database

    # -- queueing --------------------------------------------------------------------------
    def enqueue(
        self,
        actor: Actor,
        case_uids: Sequence[str] | None = None,
        *,
        explain: bool = True,
        batch_size: int = 8,
        device: str = "auto",
        bundle: Path | None = None,
    ) -> BatchStatus:
        """Queue a run: the given cases, or (None) every latest-version case that is unsigned,
        has inputs and has no analysis yet and is not queued already. A given case that is
        unknown, signed or already queued becomes a failed item with the reason. One audit event.
        """
        authorize(
            self.database, actor, Permission.CASE_ANALYSE, "batch.enqueue", AuditAction.CREATE
        )
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InputError(f"The batch size must be between 1 and {MAX_BATCH_SIZE}.")
        if device not in DEVICES:
            raise InputError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
        from clinic_app.services.analysis import resolve_bundle

        bundle_dir = resolve_bundle(self.settings, bundle)
        with self.database.write() as session:
            if case_uids is None:
                wanted = _new_case_uids(session)
                refused: dict[str, str] = {}
                if not wanted:
                    raise InputError(
                        "There are no new cases to analyse: every unsigned case with inputs "
                        "has an analysis or is queued already.",
                        hint="To analyse a case again, open it and press Analyse (or name it "
                        "with `clinic-app batch enqueue --case`).",
                    )
            else:
                wanted = list(dict.fromkeys(uid.strip() for uid in case_uids if uid.strip()))
                if not wanted:
                    raise InputError("Name at least one case to analyse.")
                refused = _refusals(session, wanted)
            run = BatchRun(
                state=BatchRunState.QUEUED,
                bundle=str(bundle_dir),
                device=device,
                explain=explain,
                batch_size=batch_size,
                created_by_id=actor.user_id,
                created_at=_now(),
            )
            now = _now()
            for uid in wanted:
                reason = refused.get(uid)
                run.items.append(
                    BatchItem(
                        case_uid=uid,
                        state=BatchItemState.FAILED if reason else BatchItemState.QUEUED,
                        attempts=0,
                        error=reason,
                        finished_at=now if reason else None,
                    )
                )
            if len(refused) == len(wanted):
                run.state = BatchRunState.FINISHED
                run.finished_at = now
            session.add(run)
            session.flush()
            record_audit(
                session,
                actor,
                "batch.enqueue",
                AuditAction.CREATE,
                details={
                    "run_id": run.id,
                    "cases": len(wanted),
                    "refused": len(refused),
                    "selection": "all-new" if case_uids is None else "named",
                    "explain": explain,
                    "batch_size": batch_size,
                    "device": device,
                },
            )
            return _status(session, run)

    def status(self, actor: Actor, run_id: int | None = None) -> BatchStatus:
        """The run's counts, rate, ETA and failures (default: the latest run). Not audited: it
        shows ids and error sentences, no clinical content, and the GUI polls it."""
        authorize(self.database, actor, Permission.CASE_READ, "batch.status", AuditAction.READ)
        with self.database.read() as session:
            return _status(session, _find_run(session, run_id))

    def cancel(self, actor: Actor, run_id: int | None = None) -> BatchStatus:
        """Cancel a run: its queued items now, the items in the model when the worker (in any
        process) reaches the end of its batch. Finished items stay; audited."""
        authorize(self.database, actor, Permission.CASE_ANALYSE, "batch.cancel", AuditAction.UPDATE)
        with self.database.write() as session:
            run = _find_run(session, run_id, for_update=True)
            if run.state in (BatchRunState.FINISHED, BatchRunState.CANCELLED):
                return _status(session, run)
            live = lease_live(run)
            open_states = (BatchItemState.QUEUED,) if live else _OPEN_ITEMS
            cancelled = _set_items(session, run.id, open_states, BatchItemState.CANCELLED)
            if live:
                run.state = BatchRunState.CANCELLING
            else:
                run.state = BatchRunState.CANCELLED
                run.finished_at = _now()
                run.lease_expires_at = None
            record_audit(
                session,
                actor,
                "batch.cancel",
                AuditAction.UPDATE,
                details={"run_id": run.id, "cancelled": cancelled, "worker_active": live},
            )
            return _status(session, run)

    # -- the worker ------------------------------------------------------------------------
    def run(
        self,
        actor: Actor,
        run_id: int | None = None,
        *,
        progress: Callable[[BatchProgress], None] | None = None,
        cancel: CancelCheck | None = None,
    ) -> BatchStatus:
        """Work through a run (default: the oldest unfinished one no live worker holds) in this
        process, with the model loaded here. Resumes a run a worker left; ``cancel()`` turning
        true stops between batches and leaves the rest queued for a later ``run``."""
        authorize(self.database, actor, Permission.CASE_ANALYSE, "batch.run", AuditAction.EXECUTE)
        worker = new_worker_id()
        held = self._acquire(actor, run_id, worker)
        if held is None:
            with self.database.read() as session:
                return _status(session, _find_run(session, run_id))
        heartbeat = _Heartbeat(self.database, held, worker)
        heartbeat.start()
        try:
            _Worker(self, actor, held, worker, heartbeat, progress, cancel).work()
        except LeaseLost:
            raise
        except KeyboardInterrupt:
            self._release(held, worker)
            raise
        except BaseException:
            # Items in the model stay RUNNING: the next worker counts this as a failed attempt.
            self._release(held, worker, crashed=True)
            raise
        finally:
            heartbeat.stop()
        self._release(held, worker)
        with self.database.read() as session:
            return _status(session, _find_run(session, held))

    def _acquire(self, actor: Actor, run_id: int | None, worker: str) -> int | None:
        """Take the lease and put items a dead worker left RUNNING back in the queue; None when
        the run has nothing left to do."""
        with self.database.write() as session:
            if run_id is None:
                candidates = session.scalars(
                    select(BatchRun)
                    .where(BatchRun.state.in_(_ACTIVE_RUNS))
                    .order_by(BatchRun.id)
                    .with_for_update()
                ).all()
                free = [run for run in candidates if not lease_live(run)]
                if not free and candidates:
                    raise _busy(candidates[0])
                if not free:
                    raise InputError(
                        "There is no batch run waiting to be worked on.",
                        hint="Queue one with `clinic-app batch enqueue` (or run --enqueue-new).",
                    )
                run = free[0]
            else:
                run = _find_run(session, run_id, for_update=True)
                if run.state in (BatchRunState.FINISHED, BatchRunState.CANCELLED):
                    return None
                if lease_live(run) and run.worker != worker:
                    raise _busy(run)
            requeued = failed = 0
            for item in session.scalars(
                select(BatchItem)
                .where(BatchItem.run_id == run.id, BatchItem.state == BatchItemState.RUNNING)
                .with_for_update()
            ):
                if item.attempts >= MAX_ATTEMPTS:
                    item.state = BatchItemState.FAILED
                    item.finished_at = _now()
                    item.error = (
                        f"The analysis of case {item.case_uid} stopped the batch worker "
                        f"{item.attempts} times, so it was not tried again."
                    )
                    failed += 1
                else:
                    item.state = BatchItemState.QUEUED
                    requeued += 1
            if run.state is BatchRunState.CANCELLING:  # its worker died before honouring it
                _set_items(session, run.id, _OPEN_ITEMS, BatchItemState.CANCELLED)
                run.state, run.finished_at, run.lease_expires_at = (
                    BatchRunState.CANCELLED,
                    _now(),
                    None,
                )
                return None
            run.state = BatchRunState.RUNNING
            run.worker = worker
            run.lease_expires_at = _lease_until()
            run.started_at = run.started_at or _now()
            record_audit(
                session,
                actor,
                "batch.run",
                AuditAction.EXECUTE,
                details={
                    "run_id": run.id,
                    "worker": worker,
                    "requeued": requeued,
                    "failed_after_crashes": failed,
                },
            )
            return run.id

    def _release(self, run_id: int, worker: str, *, crashed: bool = False) -> None:
        """Give the lease back: finished, cancelled, or queued for a later worker."""
        with self.database.write() as session:
            run = session.get(BatchRun, run_id, with_for_update=True)
            if run is None or run.worker != worker:
                return
            run.lease_expires_at = None
            if run.state is BatchRunState.CANCELLING:
                _set_items(session, run_id, _OPEN_ITEMS, BatchItemState.CANCELLED)
                run.state, run.finished_at = BatchRunState.CANCELLED, _now()
                return
            if not crashed:
                _set_items(session, run_id, (BatchItemState.RUNNING,), BatchItemState.QUEUED)
            left = session.scalar(
                select(func.count())
                .select_from(BatchItem)
                .where(BatchItem.run_id == run_id, BatchItem.state.in_(_OPEN_ITEMS))
            )
            if left:
                run.state = BatchRunState.QUEUED
            else:
                run.state, run.finished_at = BatchRunState.FINISHED, _now()


class _Worker:
    """One worker session on one run: the loop of peek, read (background), claim, predict,
    store. Database writes happen on this thread, reads of the next batch on the loader."""

    def __init__(
        self,
        service: BatchService,
        actor: Actor,
        run_id: int,
        worker: str,
        heartbeat: _Heartbeat,
        progress: Callable[[BatchProgress], None] | None,
        cancel: CancelCheck | None,
    ) -> None:
        self.service = service
        self.database = service.database
        self.actor = actor
        self.run_id = run_id
        self.worker = worker
        self.heartbeat = heartbeat
        self.progress = progress
        self.cancel = cancel
        from clinic_app.services.ingest import read_limits

        self.limits = read_limits(service.settings)
        with self.database.read() as session:
            run = session.get(BatchRun, run_id)
            assert run is not None
            self.explain, self.batch_size = run.explain, run.batch_size
            self.device, self.bundle = run.device, run.bundle
            counts = _counts(session, run_id)
        self.total = sum(counts.values()) - counts.get(BatchItemState.CANCELLED, 0)
        self.done = counts.get(BatchItemState.DONE, 0)
        self.failed = counts.get(BatchItemState.FAILED, 0)
        self.processed = 0
        self.clock: float | None = None
        self.last_report = 0.0

    # -- the loop --------------------------------------------------------------------------
    def work(self) -> bool:
        """Process the queue; True when stopped by ``cancel()`` (the rest stays queued)."""
        from clinic_app.services.analysis import get_predictor, model_errors, resolve_bundle

        bundle_dir = resolve_bundle(
            self.service.settings, Path(self.bundle) if self.bundle else None
        )
        self._report("Loading the model…", force=True)
        predictor = get_predictor(bundle_dir, self.device, explain=self.explain)
        with model_errors():
            facts = predictor_facts(predictor)
        stopped = False
        with ThreadPoolExecutor(1, thread_name_prefix="clinicfusion-batch-read") as loader:
            pending = self._peek()
            future: Future[list[_Loaded]] | None = (
                loader.submit(self._load, pending) if pending else None
            )
            try:
                while future is not None:
                    loaded = future.result()
                    future = None
                    stopped = self._stop_requested()
                    if stopped or self.heartbeat.cancelling:
                        _close(loaded)
                        break
                    claimed = self._claim([item.item_id for item in loaded])
                    if claimed is None:  # cancelled from elsewhere
                        _close(loaded)
                        break
                    batch = [item for item in loaded if item.item_id in claimed]
                    _close([item for item in loaded if item.item_id not in claimed])
                    upcoming = self._peek()
                    if upcoming:  # read the next batch while this one is in the model
                        future = loader.submit(self._load, upcoming)
                    try:
                        self._process(batch, predictor, facts)
                    finally:
                        _close(batch)
            finally:
                if future is not None:
                    future.cancel()
                    with contextlib.suppress(BaseException):
                        _close(future.result())
        self._report(self._summary(stopped), force=True)
        return stopped

    def _stop_requested(self) -> bool:
        """Whether this worker was asked to stop (``cancel()``); raises when the lease is lost."""
        if self.heartbeat.lost:
            raise LeaseLost(f"Batch run {self.run_id} was taken over by another worker.")
        return self.cancel is not None and self.cancel()

    def _peek(self) -> list[tuple[int, str]]:
        with self.database.read() as session:
            rows = session.execute(
                select(BatchItem.id, BatchItem.case_uid)
                .where(BatchItem.run_id == self.run_id, BatchItem.state == BatchItemState.QUEUED)
                .order_by(BatchItem.id)
                .limit(self.batch_size)
            ).all()
        return [(row[0], row[1]) for row in rows]

    def _load(self, items: list[tuple[int, str]]) -> list[_Loaded]:
        """Check and read the cases' stored files (the loader thread; never the model)."""
        out: list[_Loaded] = []
        for item_id, case_uid in items:
            loaded = _Loaded(item_id, case_uid)
            clock = time.perf_counter()
            try:
                detail = self.service.cases.get_case(self.actor, case_uid)
                if detail.summary.status.read_only:
                    raise ReadOnlyCase(
                        f"Case {case_uid} is signed and cannot be changed.",
                        hint="Amend it to create a new version, then analyse that.",
                    )
                loaded.request = open_case_request(
                    self.service.cases, self.actor, case_request(detail), self.limits, loaded.stack
                )
            except ClinicError as exc:
                loaded.error = str(exc)
                loaded.stack.close()
            loaded.read_ms = _ms(clock)
            out.append(loaded)
        return out

    def _claim(self, item_ids: list[int]) -> set[int] | None:
        """Mark the batch RUNNING (one more attempt each); None when the run is being cancelled."""
        with self.database.write() as session:
            run = self._own_run(session)
            if run.state is BatchRunState.CANCELLING:
                return None
            items = session.scalars(
                select(BatchItem)
                .where(BatchItem.id.in_(item_ids), BatchItem.state == BatchItemState.QUEUED)
                .with_for_update()
            ).all()
            now = _now()
            for item in items:
                item.state = BatchItemState.RUNNING
                item.attempts += 1
                item.started_at = now
                item.error = None
            run.lease_expires_at = _lease_until()
            return {item.id for item in items}

    def _own_run(self, session: Session) -> BatchRun:
        run = session.get(BatchRun, self.run_id, with_for_update=True)
        if run is None or run.worker != self.worker:
            raise LeaseLost(f"Batch run {self.run_id} was taken over by another worker.")
        return run

    # -- one batch -------------------------------------------------------------------------
    def _process(
        self, batch: list[_Loaded], predictor: Any, facts: tuple[float, bool, str]
    ) -> None:
        if self.clock is None:
            self.clock = time.perf_counter()
        for item in batch:
            if item.request is None:
                self._fail(item, item.error or "The case could not be read.")
        good = [item for item in batch if item.request is not None]
        if not good:
            return
        clock = time.perf_counter()
        results = _predict(predictor, [item.request for item in good if item.request])
        share = _ms(clock) / len(good)
        window_s, calibrated, device_text = facts
        from model.predictor import CaseFailure

        for item, result in zip(good, results, strict=True):
            assert item.request is not None
            if isinstance(result, CaseFailure):
                self._fail(item, result.message)
                continue
            clock = time.perf_counter()
            converted = convert_prediction(
                result,
                item.request.context,
                window_s=window_s,
                calibrated=calibrated,
                device=device_text,
            )
            if not self.explain:  # absent (not None): explanations were not computed
                converted.outputs.pop(EXPLANATION_KEY, None)
            timings = {
                **converted.timings_ms,
                "read_inputs": item.read_ms,
                "predict": round(share, 3),
                "batch_cases": float(len(good)),
            }
            timings["total_ms"] = round(item.read_ms + share + _ms(clock), 3)
            try:
                store_converted(
                    self.service.cases,
                    self.actor,
                    item.request,
                    converted,
                    timings,
                    extra_outputs={"batch": {"run_id": self.run_id, "explain": self.explain}},
                    in_transaction=self._finisher(item),
                )
            except LeaseLost:
                raise
            except ClinicError as exc:
                self._fail(item, str(exc))
                continue
            self.done += 1
            self.processed += 1
            self._report(f"Analysed case {item.case_uid}.")

    def _finisher(self, item: _Loaded) -> Callable[[Session, int], None]:
        """Marks the item DONE in the transaction that stores its analysis (one commit)."""

        def finish(session: Session, analysis_id: int) -> None:
            self._own_run(session).lease_expires_at = _lease_until()
            row = session.get(BatchItem, item.item_id, with_for_update=True)
            if row is None or row.state is not BatchItemState.RUNNING:
                raise LeaseLost(f"Batch item of case {item.case_uid} is no longer this worker's.")
            row.state = BatchItemState.DONE
            row.analysis_id = analysis_id
            row.finished_at = _now()
            row.error = None

        return finish

    def _fail(self, item: _Loaded, error: str) -> None:
        with self.database.write() as session:
            self._own_run(session)
            row = session.get(BatchItem, item.item_id, with_for_update=True)
            if row is None or row.state is not BatchItemState.RUNNING:
                raise LeaseLost(f"Batch item of case {item.case_uid} is no longer this worker's.")
            row.state = BatchItemState.FAILED
            row.error = error
            row.finished_at = _now()
        self.failed += 1
        self.processed += 1
        log.info("Batch run %s: case %s failed: %s", self.run_id, item.case_uid, error)
        self._report(f"Case {item.case_uid} failed: {error}")

    # -- progress --------------------------------------------------------------------------
    def _rate(self) -> tuple[float | None, float | None]:
        if self.clock is None or not self.processed:
            return None, None
        elapsed = time.perf_counter() - self.clock
        rate = self.processed / elapsed if elapsed > 0 else None
        left = max(0, self.total - self.done - self.failed)
        return rate, (left / rate if rate else None)

    def _report(self, message: str, *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if not force and now - self.last_report < PROGRESS_INTERVAL_S:
            return
        self.last_report = now
        rate, eta = self._rate()
        self.progress(BatchProgress(self.done, self.failed, self.total, rate, eta, message))

    def _summary(self, stopped: bool) -> str:
        counts = (
            f"{self.done} analysed, {self.failed} failed of {self.total}; "
            f"{self.processed} by this worker"
        )
        if stopped:
            return f"Batch run {self.run_id} paused ({counts}); run it again to resume."
        if self.heartbeat.cancelling:
            return f"Batch run {self.run_id} cancelled ({counts})."
        return f"Batch run {self.run_id} finished: {counts}."


# -- helpers ---------------------------------------------------------------------------------
def _predict(predictor: Any, requests: list[CaseRequest]) -> list[Prediction | CaseFailure]:
    """One forward pass for the batch; if the batch as a whole fails, each case alone, so one
    bad case fails by itself with its reason."""
    from clinic_app.services.analysis import model_errors

    inputs = [request.model_input() for request in requests]
    try:
        with model_errors():
            results: list[Prediction | CaseFailure] = predictor.predict_or_fail(inputs)
        return results
    except Exception:
        if len(inputs) == 1:
            return [_predict_alone(predictor, inputs[0])]
        log.warning("A batch failed as a whole; analysing its cases one by one", exc_info=True)
        return [_predict_alone(predictor, case) for case in inputs]


def _predict_alone(predictor: Any, case: Any) -> Prediction | CaseFailure:
    from clinic_app.services.analysis import model_errors
    from model.predictor import CaseFailure

    try:
        with model_errors():
            result: Prediction | CaseFailure = predictor.predict_or_fail([case])[0]
        return result
    except ClinicError as exc:
        return CaseFailure(case.case_id, str(exc))
    except Exception as exc:
        log.exception("The model failed on case %s", case.case_id)
        return CaseFailure(
            case.case_id,
            f"The model could not analyse this case ({type(exc).__name__}); the log has details.",
        )


def _close(items: list[_Loaded]) -> None:
    for item in items:
        item.stack.close()


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _busy(run: BatchRun) -> WorkerBusy:
    until = run.lease_expires_at.isoformat(timespec="seconds") if run.lease_expires_at else "?"
    return WorkerBusy(
        f"Batch run {run.id} is being worked on by {run.worker} (lease until {until}).",
        hint="Wait for it, or cancel the run with `clinic-app batch cancel`.",
    )


def _find_run(session: Session, run_id: int | None, *, for_update: bool = False) -> BatchRun:
    statement = select(BatchRun)
    statement = (
        statement.where(BatchRun.id == run_id)
        if run_id is not None
        else statement.order_by(BatchRun.id.desc()).limit(1)
    )
    if for_update:
        statement = statement.with_for_update()
    run = session.scalars(statement).one_or_none()
    if run is None:
        if run_id is not None:
            raise InputError(
                f"There is no batch run {run_id}.", hint="See `clinic-app batch status`."
            )
        raise InputError(
            "No batch run has been queued yet.", hint="Queue one with `clinic-app batch enqueue`."
        )
    return run


def _set_items(
    session: Session,
    run_id: int,
    states: Sequence[BatchItemState],
    new_state: BatchItemState,
) -> int:
    items = session.scalars(
        select(BatchItem)
        .where(BatchItem.run_id == run_id, BatchItem.state.in_(states))
        .with_for_update()
    ).all()
    now = _now()
    for item in items:
        item.state = new_state
        if new_state is BatchItemState.CANCELLED:
            item.finished_at = now
    return len(items)


def _counts(session: Session, run_id: int) -> dict[BatchItemState, int]:
    rows = session.execute(
        select(BatchItem.state, func.count())
        .where(BatchItem.run_id == run_id)
        .group_by(BatchItem.state)
    ).all()
    return {BatchItemState(row[0]): int(row[1]) for row in rows}


def _status(session: Session, run: BatchRun) -> BatchStatus:
    counts = _counts(session, run.id)
    finished = session.execute(
        select(BatchItem.started_at, BatchItem.finished_at)
        .where(
            BatchItem.run_id == run.id,
            BatchItem.state.in_((BatchItemState.DONE, BatchItemState.FAILED)),
            BatchItem.started_at.is_not(None),
            BatchItem.finished_at.is_not(None),
        )
        .order_by(BatchItem.finished_at.desc())
        .limit(RATE_WINDOW)
    ).all()
    starts = [row[0] for row in finished if row[0] is not None]
    ends = [row[1] for row in finished if row[1] is not None]
    rate = None
    if starts and ends:
        span = (max(ends) - min(starts)).total_seconds()
        rate = len(finished) / span if span > 0 else None
    left = counts.get(BatchItemState.QUEUED, 0) + counts.get(BatchItemState.RUNNING, 0)
    active = run.state in _ACTIVE_RUNS
    failures = tuple(
        BatchFailure(row[0], row[1] or "", int(row[2]))
        for row in session.execute(
            select(BatchItem.case_uid, BatchItem.error, BatchItem.attempts)
            .where(BatchItem.run_id == run.id, BatchItem.state == BatchItemState.FAILED)
            .order_by(BatchItem.id)
        )
    )
    return BatchStatus(
        run_id=run.id,
        state=run.state.value,
        total=sum(counts.values()),
        done=counts.get(BatchItemState.DONE, 0),
        failed=counts.get(BatchItemState.FAILED, 0),
        queued=counts.get(BatchItemState.QUEUED, 0),
        running=counts.get(BatchItemState.RUNNING, 0),
        cancelled=counts.get(BatchItemState.CANCELLED, 0),
        cases_per_s=round(rate, 4) if rate else None,
        eta_s=round(left / rate, 1) if rate and left and active else None,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        worker=run.worker,
        worker_active=active and lease_live(run),
        explain=run.explain,
        batch_size=run.batch_size,
        device=run.device,
        bundle=run.bundle,
        failures=failures,
    )


def _latest_cases() -> Any:
    latest = (
        select(Case.case_uid.label("uid"), func.max(Case.version).label("version"))
        .group_by(Case.case_uid)
        .subquery()
    )
    return select(Case).join(
        latest, (Case.case_uid == latest.c.uid) & (Case.version == latest.c.version)
    )


def _queued_elsewhere(session: Session, uids: Sequence[str] | None = None) -> dict[str, int]:
    """Cases waiting or running in an unfinished run: case uid -> run id."""
    statement = (
        select(BatchItem.case_uid, BatchItem.run_id)
        .join(BatchRun, BatchRun.id == BatchItem.run_id)
        .where(BatchRun.state.in_(_ACTIVE_RUNS), BatchItem.state.in_(_OPEN_ITEMS))
    )
    if uids is not None:
        statement = statement.where(BatchItem.case_uid.in_(list(uids)))
    return {row[0]: row[1] for row in session.execute(statement)}


def _new_case_uids(session: Session) -> list[str]:
    """Latest versions that are unsigned, have an input, note or vitals, and no analysis."""
    has_input = or_(
        exists().where(CaseInput.case_id == Case.id),
        exists().where(NoteVersion.case_id == Case.id),
        exists().where(VitalSigns.case_id == Case.id),
    )
    statement = (
        _latest_cases()
        .where(
            Case.status.not_in([status for status in CaseStatus if status.read_only]),
            has_input,
            ~exists().where(Analysis.case_id == Case.id),
        )
        .order_by(Case.created_at, Case.id)
    )
    queued = _queued_elsewhere(session)
    return [case.case_uid for case in session.scalars(statement) if case.case_uid not in queued]


def _refusals(session: Session, uids: Sequence[str]) -> dict[str, str]:
    """Why each named case cannot be queued (unknown, signed, queued in another run)."""
    found = {
        case.case_uid: case
        for case in session.scalars(_latest_cases().where(Case.case_uid.in_(list(uids))))
    }
    queued = _queued_elsewhere(session, uids)
    refused: dict[str, str] = {}
    for uid in uids:
        case = found.get(uid)
        if case is None:
            refused[uid] = f"There is no case {uid}."
        elif case.status.read_only:
            refused[uid] = (
                f"Case {uid} is signed and cannot be changed; amend it to analyse it again."
            )
        elif uid in queued:
            refused[uid] = f"Case {uid} is already queued in batch run {queued[uid]}."
    return refused


__all__ = [
    "BatchFailure",
    "BatchProgress",
    "BatchService",
    "BatchStatus",
    "LeaseLost",
    "WorkerBusy",
    "lease_live",
    "new_worker_id",
]
