"""DICOM ECG waveforms (12-lead, General, Ambulatory ECG Waveform Storage) -> EcgRecording.

Decoding goes through pydicom's waveform support (``pydicom.waveforms.multiplex_array``).
pydicom 3.0's ``Dataset.waveform_array`` applies *Channel Sensitivity*, the correction factor
and *Channel Baseline* but not the unit (its values are in whatever the Channel Sensitivity
Units Sequence says, often uV), and keeps padding samples as numbers. So this reader takes the
raw integers from pydicom and applies ``raw * sensitivity * correction + baseline``, then the
UCUM unit's factor to mV, itself, in float32, with *Waveform Padding Value* samples as NaN.

Of the multiplex groups it loads one: the first ORIGINAL group (derived median beats only when
nothing else exists) with the most channels, then the highest rate. The others are listed in
``metadata["other_waveform_groups"]``. Measurements the device stored in the Waveform
Annotation Sequence go to ``metadata["device_measurements"]`` as ``{name: (value, unit)}``,
free-text statements to ``metadata["device_statements"]`` and fiducial points (P onset, QRS
offset...) to ``metadata["device_fiducials"]``: their referenced group is often the median
beat, so they are not placed on the rhythm strip as annotations.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clinic_app.domain.errors import InputError
from clinic_app.domain.signals import EcgRecording
from clinic_app.io.dicom_files import open_dataset
from clinic_app.io.leads import normalise_lead_name
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits

#: SOP classes read here (PS3.4 Annex B): 12-lead, general and ambulatory ECG waveforms.
ECG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG Waveform Storage",
}
#: UCUM voltage units -> factor to millivolts.
_VOLTAGE_UNITS = {"mV": 1.0, "uV": 1e-3, "nV": 1e-6, "V": 1e3, "kV": 1e6}
_SAMPLE_TYPES = {
    (8, "SB"): np.int8,
    (8, "UB"): np.uint8,
    (16, "SS"): np.int16,
    (16, "US"): np.uint16,
    (32, "SL"): np.int32,
    (32, "UL"): np.uint32,
    (64, "SV"): np.int64,
    (64, "UV"): np.uint64,
}


def read_dicom_ecg(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> EcgRecording:
    """Read a DICOM ECG waveform file; every bad file -> one InputError naming it."""
    path = Path(path)
    label = path.name
    try:
        return _read(path, limits)
    except InputError:
        raise
    except MemoryError as exc:
        raise InputError(f"{label}: the waveform is too large to load in memory.") from exc
    except Exception as exc:  # the boundary: any pydicom/numpy failure is a bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{label}: not a readable DICOM ECG ({reason[:200]}).") from exc


def _read(path: Path, limits: ReadLimits) -> EcgRecording:
    from pydicom.errors import InvalidDicomError

    label = path.name
    if not path.is_file():
        raise InputError(f"file {label} is missing.")
    try:
        ds = open_dataset(path)
    except InvalidDicomError as exc:
        raise InputError(f"{label}: not a DICOM file ({exc}).") from exc
    _check_depth(ds, label, limits.max_sequence_depth)
    sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if sop_class not in ECG_SOP_CLASSES:
        name = _uid_name(sop_class)
        raise InputError(
            f"{label}: a DICOM {name} object, not an ECG waveform "
            "(12-lead, General or Ambulatory ECG Waveform Storage)."
        )
    groups = list(ds.get("WaveformSequence", None) or [])
    if not groups:
        raise InputError(f"{label}: the ECG holds no waveform (no Waveform Sequence).")
    index = _choose_group(groups, label)
    group = groups[index]
    channels, samples_n, rate = _group_shape(group, label)
    bits = int(group.get("WaveformBitsAllocated", 0) or 0)
    interpretation = str(group.get("WaveformSampleInterpretation", "") or "")
    if interpretation in {"MB", "AB"}:
        raise InputError(f"{label}: mu-law/A-law audio samples are not an ECG; not read.")
    if (bits, interpretation) not in _SAMPLE_TYPES:
        raise InputError(
            f"{label}: waveform samples of {bits} bits ({interpretation or 'no type'}) "
            "are not supported."
        )
    total = channels * samples_n
    if total > limits.max_signal_samples:
        raise InputError(
            f"{label}: the waveform declares {total:,} samples, more than the limit of "
            f"{limits.max_signal_samples:,}; it was not read."
        )
    expected = total * bits // 8
    data = group.get("WaveformData", None)
    have = 0 if data is None else len(data)
    if have < expected:
        raise InputError(f"{label}: truncated waveform data: {have:,} of {expected:,} bytes.")

    definitions = list(group.get("ChannelDefinitionSequence", None) or [])
    if len(definitions) != channels:
        raise InputError(
            f"{label}: {len(definitions)} channel definitions for {channels} channels; "
            "the file is damaged."
        )
    from pydicom.waveforms.numpy_handler import multiplex_array

    raw = multiplex_array(ds, index, as_raw=True)  # (time, channel), pydicom's decoding
    padding = _padding_value(group, _SAMPLE_TYPES[(bits, interpretation)])
    names: list[str] = []
    rows: list[npt.NDArray[np.float32]] = []
    source_units: list[str] = []
    others: list[dict[str, str]] = []
    for number, definition in enumerate(definitions):
        name = _channel_name(definition, number)
        unit, factor = _channel_unit(definition, label, name)
        if factor is None:
            others.append(
                {"name": name, "units": unit, "reason": f"not a voltage signal ({unit}); left out"}
            )
            continue
        sensitivity = _number(definition, "ChannelSensitivity", None, label, name)
        if sensitivity is None:
            raise InputError(
                f"{label}: channel {name} has no Channel Sensitivity, so its amplitude "
                "cannot be converted to millivolts."
            )
        correction = _number(definition, "ChannelSensitivityCorrectionFactor", 1.0, label, name)
        baseline = _number(definition, "ChannelBaseline", 0.0, label, name)
        assert correction is not None and baseline is not None
        column = raw[:, number]
        row = column.astype(np.float32)
        row *= np.float32(sensitivity * correction * factor)
        row += np.float32(baseline * factor)
        if padding is not None:
            row[column == padding] = np.nan
        names.append(normalise_lead_name(name))
        rows.append(row)
        source_units.append(unit)
    if not rows:
        raise InputError(f"{label}: the waveform has no voltage (ECG) channels.")
    metadata: dict[str, Any] = {
        "format": "DICOM ECG",
        "sop_class": ECG_SOP_CLASSES[sop_class],
        "multiplex_group": _describe_group(group, index),
        "source_units": source_units,
        "checksum_verified": False,  # DICOM waveforms carry no checksum
    }
    if others:
        metadata["other_signals"] = others
    other_groups = [_describe_group(g, i) for i, g in enumerate(groups) if i != index]
    if other_groups:
        metadata["other_waveform_groups"] = other_groups
    metadata.update(_filters(definitions))
    metadata.update(_device(ds))
    metadata.update(_waveform_annotations(ds))
    return EcgRecording(
        samples=np.stack(rows),
        sampling_rate_hz=rate,
        lead_names=tuple(names),
        start=_start(ds),
        metadata=metadata,
    )


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    if not uid:
        return "(no SOP class)"
    name = UID(uid).name
    return name if name and name != uid else uid


def _check_depth(ds: Any, label: str, limit: int) -> None:
    """Refuse datasets nested deeper than ``limit`` sequences (hostile files recurse)."""
    stack: list[tuple[Any, int]] = [(ds, 0)]
    while stack:
        dataset, depth = stack.pop()
        for element in dataset:
            if element.VR == "SQ":
                if depth + 1 > limit:
                    raise InputError(
                        f"{label}: sequences nested {depth + 1} deep, more than the limit "
                        f"of {limit}."
                    )
                stack.extend((item, depth + 1) for item in element.value)


def _group_shape(group: Any, label: str) -> tuple[int, int, float]:
    try:
        channels = int(group.NumberOfWaveformChannels)
        samples = int(group.NumberOfWaveformSamples)
        rate = float(group.SamplingFrequency)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(
            f"{label}: the waveform lacks its channel count, sample count or sampling frequency."
        ) from exc
    if channels <= 0 or samples <= 0:
        raise InputError(
            f"{label}: the waveform declares {channels} channels of {samples} samples."
        )
    if not (math.isfinite(rate) and 0 < rate <= 1e6):
        raise InputError(f"{label}: the sampling frequency {rate:g} Hz is not valid.")
    return channels, samples, rate


def _choose_group(groups: list[Any], label: str) -> int:
    """The diagnostic group: ORIGINAL before DERIVED, then most channels, highest rate, first."""

    def rank(index: int) -> tuple[int, int, float, int]:
        group = groups[index]
        original = str(group.get("WaveformOriginality", "")) == "ORIGINAL"
        median = "MEDIAN" in str(group.get("MultiplexGroupLabel", "")).upper()
        try:
            channels = int(group.get("NumberOfWaveformChannels", 0) or 0)
            rate = float(group.get("SamplingFrequency", 0) or 0)
        except (TypeError, ValueError):
            channels, rate = 0, 0.0
        return (
            int(original and not median),
            channels,
            rate if math.isfinite(rate) else 0.0,
            -index,
        )

    return max(range(len(groups)), key=rank)


def _describe_group(group: Any, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "label": str(group.get("MultiplexGroupLabel", "") or ""),
        "originality": str(group.get("WaveformOriginality", "") or ""),
        "channels": int(group.get("NumberOfWaveformChannels", 0) or 0),
        "samples": int(group.get("NumberOfWaveformSamples", 0) or 0),
        "sampling_rate_hz": float(group.get("SamplingFrequency", 0) or 0),
    }


def _channel_name(definition: Any, number: int) -> str:
    source = definition.get("ChannelSourceSequence", None)
    if source:
        item = source[0]
        for keyword in ("CodeMeaning", "CodeValue"):
            value = str(item.get(keyword, "") or "").strip()
            if value:
                return value
    label = str(definition.get("ChannelLabel", "") or "").strip()
    return label or f"channel {number + 1}"


def _channel_unit(definition: Any, label: str, name: str) -> tuple[str, float | None]:
    units = definition.get("ChannelSensitivityUnitsSequence", None)
    if not units:
        if "ChannelSensitivity" in definition:
            raise InputError(f"{label}: channel {name} has a sensitivity but no unit.")
        return "", 1.0  # no sensitivity either: refused below with a clear message
    code = str(units[0].get("CodeValue", "") or "").strip()
    return code, _VOLTAGE_UNITS.get(code)


def _number(
    definition: Any, keyword: str, default: float | None, label: str, name: str
) -> float | None:
    value = definition.get(keyword, None)
    if value is None or value == "":
        return default
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{label}: channel {name} has a {keyword} that is not a number.")
    return number


def _padding_value(group: Any, dtype: Any) -> int | None:
    value = group.get("WaveformPaddingValue", None)
    if value is None:
        return None
    raw = bytes(value) if not isinstance(value, int) else None
    if raw is None:
        return int(value)
    size = np.dtype(dtype).itemsize
    if len(raw) < size:
        return None
    return int(np.frombuffer(raw[:size], dtype=np.dtype(dtype).newbyteorder("<"))[0])


def _filters(definitions: list[Any]) -> dict[str, Any]:
    first = definitions[0]
    found = {
        "low_hz": first.get("FilterLowFrequency", None),
        "high_hz": first.get("FilterHighFrequency", None),
        "notch_hz": first.get("NotchFilterFrequency", None),
    }
    filters = {k: float(v) for k, v in found.items() if v not in (None, "")}
    return {"filters": filters} if filters else {}


def _device(ds: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for keyword, key in (("Manufacturer", "manufacturer"), ("ManufacturerModelName", "model")):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            result[key] = value
    age_text = str(ds.get("PatientAge", "") or "")
    result["age"] = int(age_text[:3]) if age_text[:3].isdigit() and age_text.endswith("Y") else None
    sex = str(ds.get("PatientSex", "") or "").upper()
    result["sex"] = {"M": "male", "F": "female"}.get(sex)
    return result


def _start(ds: Any) -> datetime | None:
    from pydicom.valuerep import DA, DT, TM

    try:
        value = ds.get("AcquisitionDateTime", None)
        if value:
            start: datetime | None = DT(str(value))
        elif ds.get("AcquisitionDate", None) and ds.get("AcquisitionTime", None):
            date, time = DA(str(ds.AcquisitionDate)), TM(str(ds.AcquisitionTime))
            start = datetime.combine(date, time)
        else:
            return None
    except (ValueError, TypeError, OverflowError):
        return None
    if start is None:
        return None
    start = datetime.combine(start.date(), start.timetz())  # a plain datetime, not pydicom's DT
    if start.tzinfo is None:
        offset = str(ds.get("TimezoneOffsetFromUTC", "") or "")
        if len(offset) == 5 and offset[0] in "+-" and offset[1:].isdigit():
            sign = 1 if offset[0] == "+" else -1
            delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
            start = start.replace(tzinfo=timezone(sign * delta))
    return start


def _waveform_annotations(ds: Any) -> dict[str, Any]:
    measurements: dict[str, tuple[float, str]] = {}
    statements: list[str] = []
    fiducials: list[dict[str, Any]] = []
    for item in ds.get("WaveformAnnotationSequence", None) or []:
        concept = item.get("ConceptNameCodeSequence", None)
        name = str(concept[0].get("CodeMeaning", "") or "").strip() if concept else ""
        text = str(item.get("UnformattedTextValue", "") or "").strip()
        if text:
            statements.append(text)
        numeric = item.get("NumericValue", None)
        if name and numeric not in (None, ""):
            units = item.get("MeasurementUnitsCodeSequence", None)
            unit = str(units[0].get("CodeValue", "") or "") if units else ""
            try:
                value = float(numeric if not isinstance(numeric, list) else numeric[0])
            except (TypeError, ValueError):
                continue
            if name not in measurements:
                measurements[name] = (value, unit)
        positions = item.get("ReferencedSamplePositions", None)
        if name and positions is not None:
            values = positions if isinstance(positions, list | tuple) else [positions]
            referenced = item.get("ReferencedWaveformChannels", None) or []
            fiducials.append(
                {
                    "name": name,
                    "samples": [int(v) for v in values],
                    "annotation_group": int(item.get("AnnotationGroupNumber", 0) or 0),
                    "multiplex_group": int(referenced[0]) if len(referenced) else None,
                }
            )
    result: dict[str, Any] = {}
    if measurements:
        result["device_measurements"] = measurements
    if statements:
        result["device_statements"] = statements
    if fiducials:
        result["device_fiducials"] = fiducials
    return result
