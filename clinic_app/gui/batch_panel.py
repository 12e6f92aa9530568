"""Batch analysis from the desktop: queue the new cases, start a worker, watch and cancel.

The queue lives in the database (``services.batch``). The worker runs as its own process,
``clinic-app batch run --run-id N``, not in the app: the app's process never imports torch
(see ``services.model_host``), a crash of the worker cannot take the window down, and a worker
killed mid-run resumes without losing or repeating a case. The worker is started detached, so
a long batch goes on when the window is closed; reopening this panel shows where it stands.
The panel polls the run's status once a second off the GUI thread; Cancel asks the worker,
through the database, to stop after the batch it holds.
"""

from __future__ import annotations

import sys
from typing import Any

from PySide6.QtCore import QProcess, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.errors import ClinicError, InputError
from clinic_app.gui.dialogs import show_error
from clinic_app.gui.workers import run_db_write, run_in_background
from clinic_app.services.context import Actor

#: How often the panel asks the database where the run stands.
POLL_MS = 1000


def worker_command(data_dir: str, run_id: int) -> tuple[str, list[str]]:
    """The program and arguments that run batch ``run_id`` in a process of its own (the frozen
    desktop bundle is its own ``clinic-app``)."""
    args = ["--data-dir", data_dir, "batch", "run", "--run-id", str(run_id)]
    if getattr(sys, "frozen", False):
        return sys.executable, args
    return sys.executable, ["-m", "clinic_app", *args]


class BatchAnalysisDialog(QDialog):
    """Queue every new case (or resume a queued run), start the worker, show its progress."""

    #: Emitted when more cases have been analysed (to refresh the lists).
    casesAnalysed = Signal()

    def __init__(self, services: Any, actor: Actor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from clinic_app.services.batch import BatchService

        self.services = services
        self.actor = actor
        self.batch = BatchService(services.cases, services.settings)
        self.status: Any = None
        self.worker_pid: int | None = None
        self._polling = False
        self._last_done = -1
        self.setObjectName("batchAnalysisDialog")
        self.setWindowTitle("Batch analysis")
        self.resize(640, 460)

        intro = QLabel(
            "Analyse every case that has inputs but no analysis yet, in batches, in a separate "
            "process. The queue is kept in the database: if the computer stops, start the "
            "worker again and it resumes without repeating finished cases. Results appear in "
            "the triage worklist as they are stored."
        )
        intro.setWordWrap(True)
        self.explain_box = QCheckBox("Compute explanations (heatmaps, ECG and note relevance)")
        self.explain_box.setChecked(True)
        self.explain_box.setToolTip(
            "Explanations take several seconds per case on a CPU; without them the worklist "
            "is filled much faster and a case's explanation is computed when it is analysed "
            "again from its workspace"
        )
        self.state_label = QLabel("Reading the batch queue\u2026")
        self.state_label.setObjectName("batchState")
        self.state_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("batchProgress")
        self.progress.setAccessibleName("Batch progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.failures = QPlainTextEdit()
        self.failures.setObjectName("batchFailures")
        self.failures.setReadOnly(True)
        self.failures.setAccessibleName("Cases that failed")
        self.failures.setPlaceholderText("Cases that could not be analysed are listed here.")

        self.buttons = QDialogButtonBox()
        self.queue_button = self.buttons.addButton(
            "Analyse new cases", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.queue_button.setObjectName("queueNewCases")
        self.queue_button.setToolTip("Queue every unanalysed case and start the worker")
        self.queue_button.clicked.connect(self.queue_new_cases)
        self.resume_button = self.buttons.addButton(
            "Resume", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.resume_button.setObjectName("resumeBatch")
        self.resume_button.setToolTip("Start a worker for the unfinished run")
        self.resume_button.setEnabled(False)
        self.resume_button.clicked.connect(self.resume)
        self.cancel_button = self.buttons.addButton(
            "Cancel run", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.cancel_button.setObjectName("cancelBatch")
        self.cancel_button.setToolTip(
            "Stop after the batch in hand; cases already analysed keep their results"
        )
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_run)
        close = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.clicked.connect(self.close)
        for button in (self.queue_button, self.resume_button, self.cancel_button, close):
            button.setAutoDefault(False)  # Enter must not start or cancel a batch by accident
            button.setDefault(False)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.explain_box)
        layout.addWidget(self.state_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.failures, 1)
        layout.addWidget(self.buttons)

        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self.poll()

    # -- status -------------------------------------------------------------------------------
    def poll(self) -> None:
        if self._polling:
            return
        self._polling = True
        batch, actor = self.batch, self.actor

        def read() -> Any:
            try:
                return batch.status(actor)
            except InputError:
                return None  # no run queued yet

        def failed(exc: Exception) -> None:
            self._polling = False
            self.timer.stop()
            show_error(self, exc)

        run_in_background(read, self._show, failed)

    def _show(self, status: Any) -> None:
        self._polling = False
        self.status = status
        if status is None:
            self.state_label.setText("No batch run yet.")
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.resume_button.setEnabled(False)
            self.cancel_button.setEnabled(False)
            return
        total = max(1, status.total)
        self.progress.setRange(0, total)
        self.progress.setValue(status.done + status.failed + status.cancelled)
        self.progress.setFormat(f"{status.done + status.failed} of {status.total}")
        rate = f"{status.cases_per_s:.2f} cases/s" if status.cases_per_s else "rate not known yet"
        eta = f", about {_duration(status.eta_s)} left" if status.eta_s else ""
        worker = "a worker is running" if status.worker_active else "no worker is running"
        self.state_label.setText(
            f"Run {status.run_id}: {status.state}; {status.done} analysed, {status.failed} "
            f"failed, {status.queued + status.running} to go ({rate}{eta}); {worker}."
        )
        unfinished = not status.finished
        self.resume_button.setEnabled(unfinished and not status.worker_active)
        self.cancel_button.setEnabled(unfinished)
        self.failures.setPlainText("\n".join(f"{f.case_uid}: {f.error}" for f in status.failures))
        if status.done != self._last_done:
            if self._last_done >= 0:
                self.casesAnalysed.emit()
            self._last_done = status.done

    # -- actions ------------------------------------------------------------------------------
    def queue_new_cases(self) -> None:
        batch, actor, explain = self.batch, self.actor, self.explain_box.isChecked()
        self.queue_button.setEnabled(False)

        def done(status: Any) -> None:
            self.queue_button.setEnabled(True)
            self._show(status)
            self.start_worker(status.run_id)

        def failed(exc: Exception) -> None:
            self.queue_button.setEnabled(True)
            show_error(self, exc)

        run_db_write(lambda: batch.enqueue(actor, None, explain=explain), done, failed)

    def resume(self) -> None:
        if self.status is not None and not self.status.finished:
            self.start_worker(self.status.run_id)

    def start_worker(self, run_id: int) -> bool:
        """Start ``clinic-app batch run`` for the run, detached from this window."""
        program, args = worker_command(str(self.services.settings.data_dir), run_id)
        # The worker inherits this process's environment (keys folder, database passphrase,
        # portable mode), so it opens the same database with the same keys.
        started, pid = QProcess.startDetached(program, args)
        if not started:
            show_error(
                self,
                ClinicError(
                    "The batch worker could not be started.",
                    hint="Run `clinic-app batch run` in a terminal to see why.",
                ),
            )
            return False
        self.worker_pid = int(pid)
        self.resume_button.setEnabled(False)
        self.state_label.setText(f"Run {run_id}: starting the worker (loading the model)\u2026")
        return True

    def cancel_run(self) -> None:
        batch, actor = self.batch, self.actor
        run_id = self.status.run_id if self.status is not None else None
        self.cancel_button.setEnabled(False)
        run_db_write(
            lambda: batch.cancel(actor, run_id), self._show, lambda exc: show_error(self, exc)
        )

    def closeEvent(self, event: Any) -> None:
        self.timer.stop()
        super().closeEvent(event)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 90:
        return f"{whole} s"
    if whole < 5400:
        return f"{round(whole / 60)} min"
    return f"{whole / 3600:.1f} h"
