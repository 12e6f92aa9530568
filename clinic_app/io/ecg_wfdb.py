"""WFDB records (PhysioNet) -> :class:`EcgRecording` in millivolts, with the data verified.

``read_wfdb`` reads through ``wfdb`` 4.3.1 every signal format it supports (8, 16, 24, 32, 61,
80, 160, 212, 310, 311, MATLAB ``.mat`` signal files, FLAC 508/516/524), multi-frequency and
multi-segment records, header comments and annotation files. Choices worth knowing:

- **Integrity.** wfdb loads many damaged files silently, so the reader checks, before anything
  is allocated, that every signal file exists, stays inside the header's folder and holds the
  bytes the header declares ("truncated: 4,000 of 7,500 samples"), and after reading that each
  signal's 16-bit checksum and initial value match the header. The samples are read once, as
  digital values; the checksum is a vectorised sum over that array and the conversion to mV is
  done here, so verification costs no second read. Headers without checksums load with
  ``metadata["checksum_verified"] = False``; a header without a signal length (``100-no-len``)
  gets its length from the file size, and its checksums still catch a cut-off file.
- **Units.** Voltage channels (mV, uV, V, ...) are converted to mV. Non-voltage channels (PLETH,
  ABP, RESP in NU/mmHg/...) are left out of the recording and listed in
  ``metadata["other_signals"]``: an :class:`EcgRecording` holds millivolts only.
- **Multi-frequency records** are brought to the *highest* signal rate (frame rate x the largest
  samples-per-frame), so the fastest channel keeps every sample; slower channels are held
  (each sample repeated, WFDB's frame alignment) or, for non-integer ratios, linearly
  interpolated. ``metadata["resampled_from_hz"]`` names the leads that were upsampled.
- **Multi-segment records** are assembled here segment by segment (each segment checked on its
  own, with its own gains); null segments and signals a segment lacks become NaN.
- **Start time.** WFDB times are naive local times of an unknown zone: with a base date and time
  ``start`` is that naive datetime; with a time but no date ``start`` is None and the time of
  day goes to ``metadata["start_time_of_day"]``.
- **Header comments** become ``age``, ``sex``, ``dx_snomed``, ``header_fields`` (other
  ``key: value`` lines) and ``header_text`` (free lines); the raw lines stay in
  ``header_comments``. Nothing is scrubbed here: de-identification is the caller's step.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clinic_app.domain.errors import InputError
from clinic_app.domain.signals import EcgAnnotation, EcgRecording
from clinic_app.io.leads import normalise_lead_name
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits

#: Bytes per sample of the byte-aligned formats (212, 310, 311 pack samples; FLAC compresses).
_BYTES_PER_SAMPLE = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2}
_PACKED_FORMATS = {"212", "310", "311"}
_FLAC_FORMATS = {"508", "516", "524"}
#: The digital value that marks an invalid sample, per format (WFDB convention).
_INVALID_VALUE = {
    "8": -128,
    "16": -32768,
    "24": -8388608,
    "32": -2147483648,
    "61": -32768,
    "80": -128,
    "160": -32768,
    "212": -2048,
    "310": -512,
    "311": -512,
    "508": -128,
    "516": -32768,
    "524": -8388608,
}
#: Digital dtype asked of wfdb: the narrowest that holds the format, so no widening copy is made.
_NARROW_FORMATS = frozenset({"16", "61", "80", "160", "212", "310", "311", "508", "516"})
#: Physical unit (lower case) -> factor to millivolts.
_VOLTAGE_UNITS = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "nv": 1e-6,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}
#: Annotation-file extensions PhysioNet annotators use; a broken one is an error, not skipped.
_KNOWN_ANNOTATORS = {
    "atr",
    "ecg",
    "qrs",
    "ari",
    "ann",
    "apn",
    "st",
    "pu",
    "pu0",
    "pu1",
    "wqrs",
    "sqrs",
    "gqrs",
    "jqrs",
    "man",
    "all",
    "hrv",
}
#: Extensions next to a record that are never annotation files.
_NOT_ANNOTATIONS = {
    "hea",
    "dat",
    "mat",
    "flac",
    "xyz",
    "csv",
    "txt",
    "json",
    "xml",
    "pdf",
    "png",
    "jpg",
    "edf",
    "zip",
    "gz",
    "md5",
    "html",
    "dcm",
    "npy",
}
#: WFDB beat symbols (annotation codes 1-13, 25, 30, 34, 35, 38, 41); others are notes/rhythm.
_BEAT_SYMBOLS = frozenset("NLRaVFJASEj/QBenfr?")
_MAX_HEADER_BYTES = 8 * 1024 * 1024
_FREQUENCY = re.compile(
    r"^(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?(?:/[\d.e+-]+)?(?:\([\d.e+-]+\))?$", re.IGNORECASE
)
_CHECKSUM_MODULUS = 65536


@dataclass
class _Segment:
    """One single-segment record read and verified: signals in their own units (mV for voltage)."""

    names: list[str]
    units: list[str]
    samples_per_frame: list[int]
    frames: int
    #: One 1-D float32 array per signal (length frames * samples_per_frame).
    signals: list[npt.NDArray[np.float32]]
    #: The (signal, time) array the rows above view, when every signal has the same rate.
    matrix: npt.NDArray[np.float32] | None
    voltage: list[bool]
    checksum_verified: bool
    formats: set[str]
    notes: list[str] = field(default_factory=list)


def read_wfdb(header_path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> EcgRecording:
    """Read the WFDB record whose header is ``header_path``; every bad file -> one InputError."""
    header_path = Path(header_path)
    if header_path.suffix.lower() != ".hea":
        header_path = header_path.with_name(header_path.name + ".hea")
    label = header_path.name
    try:
        return _read(header_path, limits)
    except InputError:
        raise
    except MemoryError as exc:
        raise InputError(f"{label}: the record is too large to load in memory.") from exc
    except Exception as exc:  # the boundary: any wfdb/numpy failure is a bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{label}: not a readable WFDB record ({reason[:200]}).") from exc


def _read(header_path: Path, limits: ReadLimits) -> EcgRecording:
    import wfdb

    label = header_path.name
    _check_header_file(header_path)
    record_base = str(header_path.with_suffix(""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = wfdb.rdheader(record_base)
    frame_rate = _frame_rate(header, label)
    metadata: dict[str, Any] = {"format": "WFDB", "record_name": header.record_name}

    if isinstance(header, wfdb.MultiRecord):
        names, units, rows, rate_factor, checksum_ok, formats = _read_multi(
            header, header_path.parent, frame_rate, limits, metadata
        )
    else:
        segment = _read_segment(header_path, header, frame_rate, limits)
        names, units = segment.names, segment.units
        rate_factor = max(segment.samples_per_frame, default=1)
        rows = _resampled_rows(segment, rate_factor, frame_rate, metadata)
        checksum_ok, formats = segment.checksum_verified, segment.formats
        if header.sig_len is None:
            metadata["length_inferred_from_file"] = True

    rate = frame_rate * rate_factor
    keep = [i for i, unit in enumerate(units) if _voltage_factor(unit) is not None]
    others = [i for i in range(len(names)) if i not in keep]
    if others:
        metadata["other_signals"] = [
            {
                "name": names[i],
                "units": units[i],
                "reason": f"not a voltage signal (units {units[i] or 'none'}); left out",
            }
            for i in others
        ]
    if not keep:
        listed = ", ".join(f"{names[i]} ({units[i] or 'no units'})" for i in others) or "none"
        raise InputError(f"{label}: the record has no voltage (ECG) signals; it holds {listed}.")
    samples = rows if len(keep) == rows.shape[0] else rows[keep]

    metadata["checksum_verified"] = checksum_ok
    metadata["signal_formats"] = sorted(formats)
    metadata["source_lead_names"] = [names[i] for i in keep]
    metadata["source_units"] = [units[i] for i in keep]
    start = _start_time(header, metadata)
    comments = [str(c) for c in (header.comments or [])]
    metadata.update(parse_header_comments(comments))
    annotations = _read_annotations(header_path, header, rate, samples.shape[1], metadata)
    return EcgRecording(
        samples=samples,
        sampling_rate_hz=rate,
        lead_names=tuple(normalise_lead_name(names[i]) for i in keep),
        start=start,
        annotations=annotations,
        metadata=metadata,
    )


# -- header and signal files ------------------------------------------------------------------


def _check_header_file(header_path: Path) -> None:
    label = header_path.name
    if not header_path.is_file():
        raise InputError(f"WFDB header {label} is missing.")
    size = header_path.stat().st_size
    if size > _MAX_HEADER_BYTES:
        raise InputError(
            f"{label}: a WFDB header of {size:,} bytes is larger than any real header "
            f"({_MAX_HEADER_BYTES:,} bytes at most)."
        )
    text = header_path.read_bytes().decode("latin-1")
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        # wfdb reads a frequency it cannot parse ("-5", "abc") as the 250 Hz default: refuse it
        if len(fields) >= 3 and not _FREQUENCY.match(fields[2]):
            raise InputError(f"{label}: the sampling frequency {fields[2]!r} is not valid.")
        break


def _frame_rate(header: Any, label: str) -> float:
    rate = header.fs
    if rate is None:
        return 250.0  # the WFDB default when the header names no frequency
    rate = float(rate)
    if not (math.isfinite(rate) and 0 < rate <= 1e6):
        raise InputError(f"{label}: the sampling frequency {rate:g} Hz is not valid.")
    return rate


def _safe_member(directory: Path, name: str, label: str, what: str) -> Path:
    """``directory / name``, refusing names that would reach outside the header's folder."""
    if not name or "/" in name or "\\" in name or name in {".", ".."} or "\x00" in name:
        raise InputError(f"{label}: the {what} name {name!r} is not a plain file name.")
    return directory / name


def _packed_bytes(fmt: str, n_samples: int) -> int:
    """Bytes that hold ``n_samples`` samples of a format (WFDB's read rule for packed formats)."""
    if fmt == "212":  # two 12-bit samples in three bytes; an odd last sample needs two
        return (3 * n_samples + 1) // 2
    if fmt in {"310", "311"}:  # three 10-bit samples in four bytes
        full, rest = divmod(n_samples, 3)
        extra = {0: 0, 1: 2, 2: 4 if fmt == "310" else 3}[rest]
        return full * 4 + extra
    return n_samples * _BYTES_PER_SAMPLE[fmt]


def _samples_in(fmt: str, n_bytes: int) -> int:
    """How many whole samples ``n_bytes`` bytes of a format hold (inverse of _packed_bytes)."""
    if n_bytes <= 0:
        return 0
    if fmt == "212":
        return (2 * n_bytes) // 3
    if fmt in {"310", "311"}:
        full, rest = divmod(n_bytes, 4)
        return full * 3 + (0 if rest < 2 else (1 if rest < (4 if fmt == "310" else 3) else 2))
    return n_bytes // _BYTES_PER_SAMPLE[fmt]


def _file_groups(header: Any) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for channel, name in enumerate(header.file_name):
        groups.setdefault(str(name), []).append(channel)
    return groups


def _check_signal_files(header_path: Path, header: Any, spf: list[int], limits: ReadLimits) -> int:
    """Check files exist, declare one format and hold the declared samples; return the length."""
    label = header_path.name
    directory = header_path.parent
    groups = _file_groups(header)
    sig_len: int | None = header.sig_len
    for file_name, channels in groups.items():
        path = _safe_member(directory, file_name, label, "signal file")
        if not path.is_file():
            raise InputError(f"signal file {file_name} is missing (named by {label}).")
        formats = {str(header.fmt[c]) for c in channels}
        if len(formats) != 1:
            raise InputError(
                f"{file_name}: the signals stored in it declare different formats "
                f"({', '.join(sorted(formats))}); the header is damaged."
            )
        fmt = formats.pop()
        if fmt not in _INVALID_VALUE:
            raise InputError(f"{file_name}: WFDB signal format {fmt} is not supported.")
        per_frame = sum(spf[c] for c in channels)
        offset = int(header.byte_offset[channels[0]] or 0)
        size = path.stat().st_size
        if fmt in _FLAC_FORMATS:
            if sig_len is None:
                raise InputError(f"{label}: a FLAC record needs its length in the header.")
            _check_flac(path, len(channels), sig_len * spf[channels[0]] + offset)
            continue
        if sig_len is None:  # 100-no-len: the length comes from the first file, as in WFDB
            sig_len = _samples_in(fmt, size - offset) // per_frame
            _check_declared_total(label, sig_len, spf, limits)
        needed = offset + _packed_bytes(fmt, sig_len * per_frame)
        if size < needed:
            have = _samples_in(fmt, size - offset) // per_frame
            raise InputError(
                f"{file_name}: truncated: {have:,} of {sig_len:,} samples "
                f"({size:,} of {needed:,} bytes); the file was cut off in copying."
            )
    return int(sig_len or 0)


def _check_flac(path: Path, channels: int, needed_frames: int) -> None:
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception as exc:
        raise InputError(f"{path.name}: not a readable FLAC signal file ({exc}).") from exc
    if info.channels != channels:
        raise InputError(
            f"{path.name}: holds {info.channels} channels, the header declares {channels}."
        )
    if info.frames < needed_frames:
        raise InputError(
            f"{path.name}: truncated: {info.frames:,} of {needed_frames:,} samples; "
            "the file was cut off in copying."
        )


def _check_declared_total(label: str, sig_len: int, spf: list[int], limits: ReadLimits) -> None:
    total = sig_len * sum(spf)
    if total > limits.max_signal_samples:
        raise InputError(
            f"{label}: the record declares {total:,} samples, more than the limit of "
            f"{limits.max_signal_samples:,}; it was not read."
        )


# -- one segment: read digital samples, verify, convert --------------------------------------


def _read_segment(
    header_path: Path, header: Any, frame_rate: float, limits: ReadLimits
) -> _Segment:
    import wfdb

    label = header_path.name
    n_sig = int(header.n_sig or 0)
    names = [
        str(n) if n is not None else f"signal {i + 1}" for i, n in enumerate(header.sig_name or [])
    ]
    if n_sig == 0 or len(names) != n_sig:
        raise InputError(f"{label}: the header declares no signals.")
    spf = [int(s or 1) for s in header.samps_per_frame]
    if min(spf) < 1 or max(spf) > 10_000:
        raise InputError(f"{label}: the samples per frame {max(spf)} are not valid.")
    if header.sig_len is not None:
        if header.sig_len < 0:
            raise InputError(f"{label}: the signal length {header.sig_len} is not valid.")
        _check_declared_total(label, int(header.sig_len), spf, limits)
    sig_len = _check_signal_files(header_path, header, spf, limits)
    formats = {str(f) for f in header.fmt}
    narrow = all(f in _NARROW_FORMATS for f in formats)
    single_rate = len(set(spf)) == 1 and spf[0] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = wfdb.rdrecord(
            str(header_path.with_suffix("")),
            physical=False,
            smooth_frames=single_rate,
            return_res=16 if narrow else 32 if formats <= {"8", "24", "524"} else 64,
        )
    if single_rate:
        digital = record.d_signal
        if digital is None or digital.shape != (sig_len, n_sig):
            got = 0 if digital is None else digital.shape[0]
            raise InputError(f"{label}: truncated: {got:,} of {sig_len:,} samples.")
        columns = [digital[:, i] for i in range(n_sig)]
    else:
        columns = list(record.e_d_signal)
        for i, column in enumerate(columns):
            if column.shape[0] != sig_len * spf[i]:
                raise InputError(
                    f"{label}: truncated: {column.shape[0]:,} of {sig_len * spf[i]:,} "
                    f"samples of signal {i + 1} ({names[i]})."
                )
    verified = _verify(label, header, names, columns)
    units = [str(u) if u is not None else "mV" for u in (header.units or ["mV"] * n_sig)]
    gains = [float(g) if g else 200.0 for g in header.adc_gain]
    baselines = [float(b if b is not None else 0) for b in header.baseline]
    for i, g in enumerate(gains):
        if not math.isfinite(g) or not math.isfinite(baselines[i]):
            raise InputError(f"{label}: the gain or baseline of {names[i]} is not a number.")
    scales = [_voltage_factor(u) or 1.0 for u in units]
    invalid = [_INVALID_VALUE[str(f)] for f in header.fmt]
    matrix: npt.NDArray[np.float32] | None = None
    if single_rate and digital.dtype.itemsize <= 2:  # the common case: one ufunc pass each
        matrix = np.empty((n_sig, sig_len), dtype=np.float32)
        np.subtract(digital.T, np.array(baselines, dtype=np.float32)[:, None], out=matrix)
        divisors = np.array([g / s for g, s in zip(gains, scales, strict=True)], dtype=np.float32)
        np.divide(matrix, divisors[:, None], out=matrix)
        signals = [matrix[i] for i in range(n_sig)]
        for value in set(invalid):
            if (digital == value).any():  # rare: find the channels and mark NaN
                for i in range(n_sig):
                    if invalid[i] == value:
                        signals[i][columns[i] == value] = np.nan
    else:
        if single_rate:
            matrix = np.empty((n_sig, sig_len), dtype=np.float32)
            signals = [matrix[i] for i in range(n_sig)]
        else:
            signals = [np.empty(c.shape[0], dtype=np.float32) for c in columns]
        for i, column in enumerate(columns):
            _to_physical(column, baselines[i], gains[i] / scales[i], invalid[i], signals[i])
    return _Segment(
        names=names,
        units=units,
        samples_per_frame=spf,
        frames=sig_len,
        signals=signals,
        matrix=matrix,
        voltage=[_voltage_factor(u) is not None for u in units],
        checksum_verified=verified,
        formats=formats,
    )


def _verify(
    label: str,
    header: Any,
    names: list[str],
    columns: list[npt.NDArray[Any]],
) -> bool:
    """Compare each signal's checksum and first sample with the header; True when all checked."""
    checksums = header.checksum
    initial = header.init_value
    skews = [int(s or 0) for s in (header.skew or [0] * len(columns))]
    file_names = [str(f) for f in header.file_name]
    # One vectorised pass per signal over the digital samples already read. Summing each
    # (strided) column is ~20x faster than numpy's axis-0 reduction of a (time, 2) array.
    sums = [int(c.sum(dtype=np.int64)) for c in columns]
    verified = checksums is not None
    for i, column in enumerate(columns):
        if skews[i]:
            verified = False  # the skewed read covers other samples than the checksum does
            continue
        expected = checksums[i] if checksums is not None else None
        if expected is not None:
            actual = int(sums[i]) % _CHECKSUM_MODULUS
            if int(expected) % _CHECKSUM_MODULUS != actual:
                raise InputError(
                    f"{file_names[i]}: signal {i + 1} ({names[i]}) fails its checksum "
                    f"(header {int(expected) % _CHECKSUM_MODULUS:,}, data {actual:,}): the file "
                    "is damaged or does not belong to this header."
                )
        else:
            verified = False
        first = initial[i] if initial is not None else None
        if first is not None and column.shape[0] and int(column[0]) != int(first):
            raise InputError(
                f"{file_names[i]}: signal {i + 1} ({names[i]}) starts at {int(column[0]):,}, "
                f"the header says {int(first):,}: the file is damaged or does not belong to "
                "this header."
            )
    return verified


def _to_physical(
    digital: npt.NDArray[Any],
    baseline: float,
    gain: float,
    invalid: int,
    out: npt.NDArray[np.float32],
) -> None:
    """``(digital - baseline) / gain`` in float32 into ``out``; the invalid value becomes NaN."""
    if digital.dtype.itemsize <= 2:
        np.subtract(digital, np.float32(baseline), out=out, dtype=np.float32)
        np.divide(out, np.float32(gain), out=out)
    else:  # wide samples: subtract in float64 so large values keep their precision
        np.divide(digital - np.float64(baseline), gain, out=out, casting="same_kind")
    bad = digital == invalid
    if bad.any():
        out[bad] = np.nan


def _voltage_factor(unit: str | None) -> float | None:
    if unit is None:
        return 1.0
    return _VOLTAGE_UNITS.get(unit.strip().lower())


def _resampled_rows(
    segment: _Segment, target_spf: int, frame_rate: float, metadata: dict[str, Any]
) -> npt.NDArray[np.float32]:
    """The segment as one (signal, time) array at ``target_spf`` samples per frame."""
    if segment.matrix is not None and target_spf == 1:
        return segment.matrix
    length = segment.frames * target_spf
    out = np.empty((len(segment.signals), length), dtype=np.float32)
    resampled: dict[str, float] = metadata.setdefault("resampled_from_hz", {})
    for i, signal in enumerate(segment.signals):
        spf = segment.samples_per_frame[i]
        out[i] = _upsample(signal, spf, target_spf, length)
        if spf != target_spf:
            resampled[segment.names[i]] = frame_rate * spf
    if not resampled:
        metadata.pop("resampled_from_hz")
    return out


def _upsample(
    signal: npt.NDArray[np.float32], spf: int, target_spf: int, length: int
) -> npt.NDArray[np.float32]:
    if spf == target_spf:
        return signal
    if target_spf % spf == 0:
        return np.repeat(signal, target_spf // spf)[:length]
    source_t = np.arange(signal.shape[0], dtype=np.float64) / spf
    target_t = np.arange(length, dtype=np.float64) / target_spf
    return np.interp(target_t, source_t, signal).astype(np.float32)


# -- multi-segment records --------------------------------------------------------------------


def _read_multi(
    header: Any,
    directory: Path,
    frame_rate: float,
    limits: ReadLimits,
    metadata: dict[str, Any],
) -> tuple[list[str], list[str], npt.NDArray[np.float32], int, bool, set[str]]:
    """Read each segment on its own (verified, own gains), then lay them end to end."""
    import wfdb

    label = f"{header.record_name}.hea"
    seg_names = [str(n) for n in header.seg_name]
    seg_lens = [int(n) for n in header.seg_len]
    if any(n < 0 for n in seg_lens):
        raise InputError(f"{label}: a segment length is negative; the header is damaged.")
    n_sig = int(header.n_sig or 0)
    total = sum(seg_lens)
    if total * max(n_sig, 1) > limits.max_signal_samples:
        raise InputError(
            f"{label}: the record declares {total * max(n_sig, 1):,} samples, more than the "
            f"limit of {limits.max_signal_samples:,}; it was not read."
        )
    layout_names: list[str] | None = None
    layout_units: list[str] | None = None
    first = 0
    if header.layout == "variable" or (seg_lens and seg_lens[0] == 0 and seg_names[0] != "~"):
        layout_path = _safe_member(directory, seg_names[0] + ".hea", label, "segment header")
        _check_header_file(layout_path)
        layout = wfdb.rdheader(str(layout_path.with_suffix("")))
        layout_names = [str(n) for n in layout.sig_name]
        layout_units = [str(u) if u else "mV" for u in layout.units]
        first = 1
    segments: list[_Segment | None] = []
    for name, length in zip(seg_names[first:], seg_lens[first:], strict=True):
        if name == "~":
            segments.append(None)
            continue
        seg_path = _safe_member(directory, name + ".hea", label, "segment header")
        _check_header_file(seg_path)
        seg_header = wfdb.rdheader(str(seg_path.with_suffix("")))
        if seg_header.fs is not None and not math.isclose(float(seg_header.fs), frame_rate):
            raise InputError(
                f"{seg_path.name}: samples at {seg_header.fs} Hz, the record at {frame_rate:g} Hz."
            )
        segment = _read_segment(seg_path, seg_header, frame_rate, limits)
        if segment.frames != length:
            raise InputError(
                f"{seg_path.name}: holds {segment.frames:,} samples, the record header says "
                f"{length:,}."
            )
        segments.append(segment)
    real = [s for s in segments if s is not None]
    if not real:
        raise InputError(f"{label}: every segment of the record is empty.")
    names = layout_names if layout_names is not None else real[0].names
    units = layout_units if layout_units is not None else real[0].units
    target_spf = max(max(s.samples_per_frame) for s in real)
    out = np.full((len(names), total * target_spf), np.nan, dtype=np.float32)
    position = 0
    verified = True
    formats: set[str] = set()
    for part, length in zip(segments, seg_lens[first:], strict=True):
        if part is not None:
            verified &= part.checksum_verified
            formats |= part.formats
            width = part.frames * target_spf
            for i, name in enumerate(part.names):
                if name not in names:
                    continue
                row = names.index(name)
                upsampled = _upsample(part.signals[i], part.samples_per_frame[i], target_spf, width)
                out[row, position : position + width] = upsampled
        position += length * target_spf
    metadata["segments"] = len(segments)
    metadata["null_segments"] = sum(1 for s in segments if s is None)
    return names, units, out, target_spf, verified, formats


# -- time, comments, annotations --------------------------------------------------------------


def _start_time(header: Any, metadata: dict[str, Any]) -> datetime | None:
    base_time = header.base_time
    base_date = header.base_date
    if base_time is None:
        return None
    if base_date is None:
        metadata["start_time_of_day"] = base_time.isoformat()
        return None
    metadata["start_timezone"] = "unknown (naive local time from the WFDB header)"
    return datetime.combine(base_date, base_time)


_FIELD = re.compile(r"^([A-Za-z][^:]{0,60}?)\s*:\s*(.*)$")
_MITDB_AGE_SEX = re.compile(r"^(\d{1,3}|\?)\s+([MF?])(?:\s|$)")


def parse_header_comments(comments: list[str]) -> dict[str, Any]:
    """Age, sex, Dx SNOMED codes, other ``key: value`` fields and free text from comments."""
    fields: dict[str, str] = {}
    text: list[str] = []
    for raw in comments:
        line = raw.strip()
        if not line:
            continue
        match = _FIELD.match(line)
        if match:
            key, value = match.group(1).strip(), match.group(2).strip()
            fields[key] = f"{fields[key]}; {value}" if key in fields else value
        else:
            text.append(line)
    lowered = {key.lower(): value for key, value in fields.items()}
    age = _parse_age(lowered.get("age"))
    sex = _parse_sex(lowered.get("sex", lowered.get("gender")))
    if "age" not in lowered and "sex" not in lowered:
        for line in text:  # MIT-BIH style line: "69 M 1085 1629 x1" (age, sex, recorder ids)
            mitdb = _MITDB_AGE_SEX.match(line)
            if mitdb:
                age, sex = _parse_age(mitdb.group(1)), _parse_sex(mitdb.group(2))
                break
    dx = lowered.get("dx")
    codes = [c.strip() for c in dx.split(",") if c.strip()] if dx else []
    reserved = {"age", "sex", "gender", "dx"}
    return {
        "age": age,
        "sex": sex,
        "dx_snomed": codes,
        "header_fields": {k: v for k, v in fields.items() if k.lower() not in reserved},
        "header_text": text,
        "header_comments": [c for c in comments if c.strip()],
    }


def _parse_age(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number) or not 0 <= number < 150:
        return None
    return int(number)


def _parse_sex(value: str | None) -> str | None:
    if value is None:
        return None
    word = value.strip().lower()
    if word in {"m", "male", "man"}:
        return "male"
    if word in {"f", "female", "woman"}:
        return "female"
    if word in {"", "?", "nan", "unknown", "none", "n/a", "na"}:
        return None
    return value.strip()


def _annotation_files(header_path: Path, header: Any) -> list[str]:
    record = header_path.stem
    directory = header_path.parent
    signal_files = {str(f) for f in (getattr(header, "file_name", None) or [])}
    found: list[str] = []
    prefix = record + "."
    for path in directory.iterdir():
        name = path.name
        if not name.startswith(prefix) or name in signal_files or not path.is_file():
            continue
        extension = name[len(prefix) :]
        if not extension or "." in extension or extension.lower() in _NOT_ANNOTATIONS:
            continue
        found.append(extension)
    return sorted(found, key=lambda e: (e != "atr", e))


def _read_annotations(
    header_path: Path,
    header: Any,
    rate: float,
    length: int,
    metadata: dict[str, Any],
) -> tuple[EcgAnnotation, ...]:
    """Beats and rhythm episodes from annotation files next to the header, in output samples."""
    import wfdb

    record_base = str(header_path.with_suffix(""))
    frame_rate = float(header.fs or 250.0)
    result: list[EcgAnnotation] = []
    used: list[str] = []
    skipped: list[str] = []
    outside = 0
    for extension in _annotation_files(header_path, header):
        file_name = f"{header_path.stem}.{extension}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ann = wfdb.rdann(record_base, extension)
            samples = np.asarray(ann.sample, dtype=np.int64)
            symbols = [str(s) for s in ann.symbol]
            notes = [str(a) if a is not None else "" for a in (ann.aux_note or [""] * len(symbols))]
            if len(symbols) != samples.shape[0] or len(notes) != samples.shape[0]:
                raise ValueError("the annotation fields disagree in length")
        except Exception as exc:
            if extension.lower() in _KNOWN_ANNOTATORS:
                raise InputError(
                    f"{file_name}: the annotation file is damaged ({exc}); remove it or "
                    "replace it with an intact copy."
                ) from exc
            skipped.append(file_name)
            continue
        used.append(file_name)
        ann_rate = float(ann.fs) if ann.fs else frame_rate
        factor = rate / ann_rate if ann_rate > 0 else 1.0
        positions = np.rint(samples * factor).astype(np.int64) if factor != 1.0 else samples
        rhythm_index: list[int] = []
        for position, symbol, note in zip(positions.tolist(), symbols, notes, strict=True):
            if not 0 <= position < length:
                outside += 1
                continue
            note = note.replace("\x00", "").strip()
            if note == "None":  # wfdb writes "None" for an empty aux note in some files
                note = ""
            if symbol in _BEAT_SYMBOLS:
                result.append(
                    EcgAnnotation(sample=position, kind="beat", symbol=symbol, label=note)
                )
            elif symbol == "+" and note.startswith("("):
                rhythm_index.append(len(result))
                result.append(
                    EcgAnnotation(
                        sample=position, kind="rhythm", symbol=symbol, label=note[1:].strip()
                    )
                )
            else:
                result.append(
                    EcgAnnotation(sample=position, kind="note", symbol=symbol, label=note)
                )
        for n, index in enumerate(rhythm_index):
            end = result[rhythm_index[n + 1]].sample if n + 1 < len(rhythm_index) else length
            episode = result[index]
            result[index] = EcgAnnotation(
                sample=episode.sample,
                kind="rhythm",
                symbol=episode.symbol,
                label=episode.label,
                end_sample=end,
            )
    if used:
        metadata["annotation_files"] = used
    if skipped:
        metadata["annotation_files_skipped"] = skipped
    if outside:
        metadata["annotations_outside_record"] = outside
    result.sort(key=lambda a: a.sample)
    return tuple(result)
