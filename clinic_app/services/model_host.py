"""Run the model in a child process of its own, so the desktop app's event loop never waits.

Importing torch, monai and transformers holds Python's global interpreter lock for up to
~0.3 s at a time (measured here: seven event-loop gaps of 100-280 ms while they import on a
worker thread), which no thread can hide from the GUI. The model therefore lives in a
long-lived child ("spawn": a clean interpreter, no Qt state or database connections) that loads
the libraries and the bundle once, in the background, and answers prediction requests over a
pipe. The parent only waits on the pipe, which releases the lock. A crash or out-of-memory in
the child becomes one ModelError and the next request starts a fresh child.

Requests carry file paths of *verified, already de-identified* stored inputs; the child reads
them itself (a slide reader cannot cross processes) and returns the model's Prediction.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from clinic_app.domain.errors import Cancelled, ClinicError, InputError, ModelError

if TYPE_CHECKING:
    from model.predictor import Prediction

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds between checks of the cancel flag and of the child's health while waiting.
POLL_S = 0.1
#: How much lower the model process's CPU priority is than the app's (POSIX nice).
CHILD_NICENESS = 10


@dataclass(frozen=True)
class ModelRequest:
    """One case for the model, as paths and plain values (picklable)."""

    bundle_dir: str
    device: str = "auto"
    image_path: str | None = None
    ecg_path: str | None = None
    note: str | None = None
    vitals: Mapping[str, Any] | None = None
    case_id: str | None = None
    explain: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedModel:
    """What the child reports once the model is loaded."""

    name: str
    version: str
    sha256: str
    device: str


# -- the child -----------------------------------------------------------------------------
def _error_payload(exc: BaseException) -> tuple[str, str, str | None]:
    kind = "input" if isinstance(exc, InputError) else "model"
    hint = getattr(exc, "hint", None)
    message = str(exc) if isinstance(exc, ClinicError) else f"{type(exc).__name__}: {exc}"
    return kind, message, hint


def _load(bundle_dir: str, device: str, explain: bool) -> Any:
    from clinic_app.services.analysis import get_predictor, model_errors

    predictor = get_predictor(Path(bundle_dir), device, explain=explain)
    with model_errors():
        predictor.load()
    return predictor


def _predict(request: ModelRequest) -> Prediction:
    from contextlib import ExitStack

    from clinic_app.domain.signals import EcgRecording
    from clinic_app.io.readers import read_input
    from clinic_app.io.slides import open_slide
    from clinic_app.services.analysis import model_errors
    from model.predictor import CaseInput, EcgInput

    predictor = _load(request.bundle_dir, request.device, request.explain)
    with ExitStack() as stack:
        slide = None
        if request.image_path is not None:
            slide = open_slide(Path(request.image_path))
            stack.callback(slide.close)
        ecg = None
        if request.ecg_path is not None:
            recording = read_input(Path(request.ecg_path))
            if not isinstance(recording, EcgRecording):
                raise InputError("The stored ECG input does not read as an ECG recording.")
            ecg = EcgInput(
                recording.samples,
                recording.sampling_rate_hz,
                tuple(recording.lead_names),
                recording.units,
            )
        case = CaseInput(
            image=slide,
            ecg=ecg,
            note=request.note,
            vitals=dict(request.vitals) if request.vitals else None,
            case_id=request.case_id,
        )
        with model_errors():
            prediction = predictor.predict([case])[0]
    # The tile pixels stay here; the coordinates travel with the explanation.
    stripped: Prediction = replace(prediction, tiles=None)
    return stripped


def _serve(conn: Connection) -> None:
    """The child's loop: one request at a time until told to stop or the pipe closes."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Below the GUI's priority: on a busy CPU the window still gets its time slices first.
    with contextlib.suppress(AttributeError, OSError):
        os.nice(CHILD_NICENESS)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind, request_id = message[0], message[1]
        if kind == "stop":
            return
        try:
            if kind == "load":
                _, _, bundle_dir, device, explain = message
                predictor = _load(bundle_dir, device, explain)
                identity = predictor.identity
                result: Any = LoadedModel(
                    identity.name, identity.version, identity.sha256, predictor.plan.device
                )
            elif kind == "call":
                _, _, fn, args = message
                result = fn(*args)
            elif kind == "predict":
                _, _, request, convert = message
                prediction = _predict(request)
                result = convert(prediction, request) if convert is not None else prediction
            else:
                raise ModelError(f"Unknown request {kind!r} to the model process.")
        except BaseException as exc:  # every failure goes back as one message
            conn.send((request_id, "error", _error_payload(exc)))
        else:
            conn.send((request_id, "ok", result))


# -- the parent ------------------------------------------------------------------------------
class ModelHost:
    """The app's handle on the model process (started on first use, restarted after a crash)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None
        self._ids = itertools.count(1)
        self.loaded: LoadedModel | None = None
        self._closing = False

    def _ensure_started(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self._discard()
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=_serve, args=(child,), name="clinicfusion-model", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self.loaded = None
        log.info("Model process started (pid %s)", process.pid)
        return parent

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._process, self._conn = None, None

    def _call(self, message: tuple[Any, ...], cancel: Callable[[], bool] | None) -> Any:
        """Send one request and wait for its answer, checking ``cancel`` and the child's health.

        On cancel the child finishes in its own time and its late answer is dropped."""
        with self._lock:
            if self._closing:
                raise Cancelled("The model was stopped because the app is closing.")
            conn = self._ensure_started()
            request_id = next(self._ids)
            try:
                conn.send((message[0], request_id, *message[1:]))
            except (EOFError, OSError):
                self._crashed()
            while True:
                if cancel is not None and cancel():
                    raise Cancelled("The analysis was cancelled; nothing was stored.")
                try:
                    ready = conn.poll(POLL_S)
                    answer = conn.recv() if ready else None
                except (EOFError, OSError):
                    self._crashed()
                if answer is None:
                    if not self._process.is_alive():
                        self._crashed()
                    continue
                answer_id, status, payload = answer
                if answer_id != request_id:  # a late answer to a cancelled request
                    continue
                if status == "ok":
                    return payload
                error_kind, text, hint = payload
                raise (InputError if error_kind == "input" else ModelError)(text, hint=hint)

    def _crashed(self) -> NoReturn:
        code = self._process.exitcode if self._process is not None else None
        self._discard()
        if self._closing:
            raise Cancelled("The model was stopped because the app is closing.")
        raise ModelError(
            f"The model process stopped unexpectedly (exit code {code}); nothing was stored.",
            hint="Try again; if it happens again, run Tools > System check and send the log "
            "to your IT team.",
        )

    def load(
        self, bundle_dir: Path, device: str = "auto", cancel: Callable[[], bool] | None = None
    ) -> LoadedModel:
        """Start the child if needed and load the bundle there (imports torch in the child)."""
        loaded: LoadedModel = self._call(("load", str(bundle_dir), device, True), cancel)
        self.loaded = loaded
        return loaded

    def predict(
        self,
        request: ModelRequest,
        convert: Callable[[Prediction, ModelRequest], T] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> T:
        """The model's answer for one case, passed through ``convert`` *in the child*.

        ``convert`` must be a module-level function (it is pickled by name) that turns the
        Prediction into plain app objects: unpickling model classes here would import torch
        into the app's process, stalling its event loop (measured: 200 ms)."""
        result: T = self._call(("predict", request, convert), cancel)
        return result

    def call(self, fn: Callable[..., T], *args: Any, cancel: Callable[[], bool] | None = None) -> T:
        """Run a module-level function in the model process (e.g. detecting the GPUs, which
        imports torch) and return its plain result."""
        result: T = self._call(("call", fn, args), cancel)
        return result

    def close(self) -> None:
        """Stop the child now, without waiting for a request in flight (it gets Cancelled)."""

        self._closing = True
        process, conn = self._process, self._conn
        if process is not None and process.is_alive():
            process.terminate()
            process.join(3)
            if process.is_alive():
                process.kill()
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()


_HOST: ModelHost | None = None
_HOST_LOCK = threading.Lock()


def model_host() -> ModelHost:
    """The process-wide model host (the GUI's one model process)."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            _HOST = ModelHost()
        return _HOST


def shutdown_model_host() -> None:
    global _HOST
    with _HOST_LOCK:
        host, _HOST = _HOST, None
    if host is not None:
        host.close()
