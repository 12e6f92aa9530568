"""DICOM ECG reader on pydicom's real 12-lead ECG and on copies edited with pydicom."""

from __future__ import annotations

import pickle
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from clinic_app.domain.errors import InputError
from clinic_app.domain.signals import STANDARD_LEADS
from clinic_app.io.ecg_dicom import read_dicom_ecg
from clinic_app.io.limits import ReadLimits


def _source() -> Path:
    path = get_testdata_file("waveform_ecg.dcm")
    assert path is not None
    return Path(path)


def _edited(tmp_path: Path, edit: object) -> Path:
    ds = pydicom.dcmread(_source())
    edit(ds)  # type: ignore[operator]
    out = tmp_path / "edited.dcm"
    ds.save_as(out)
    return out


def test_pydicom_ecg_is_twelve_standard_leads_at_1000_hz_in_millivolts() -> None:
    recording = read_dicom_ecg(_source())
    assert recording.lead_names == STANDARD_LEADS
    assert recording.sampling_rate_hz == 1000.0
    assert recording.samples.shape == (12, 10_000)
    assert recording.duration_s == 10.0
    assert recording.samples.dtype == np.float32
    peak = np.abs(recording.samples).max(axis=1)
    assert 0.5 < peak[1] < 2.0  # lead II R waves, a normal ECG: about 1 mV
    assert (peak < 3.0).all()
    assert recording.start == datetime(2013, 1, 25, 10, 59, 19)
    assert type(recording.start) is datetime  # a plain datetime (picklable), not pydicom's DT
    assert pickle.loads(pickle.dumps(recording)).metadata == recording.metadata
    meta = recording.metadata
    assert meta["sop_class"] == "12-lead ECG Waveform Storage"
    assert meta["multiplex_group"]["label"] == "RHYTHM"
    assert meta["other_waveform_groups"][0]["label"] == "MEDIAN BEAT"
    assert meta["device_measurements"]["QRS Duration"] == (75.0, "ms")
    assert meta["device_measurements"]["RR Interval"] == (982.0, "ms")
    assert meta["device_measurements"]["QRS Axis"] == (52.0, "deg")
    assert meta["device_statements"] == ["RITMO SINUSALE", "ECG NORMALE"]
    assert meta["source_units"] == ["uV"] * 12
    assert any(f["name"] == "QRS Onset" for f in meta["device_fiducials"])


def test_values_match_pydicom_waveform_array_scaled_from_microvolts() -> None:
    ds = pydicom.dcmread(_source())
    expected = ds.waveform_array(0).T / 1000.0  # pydicom: sensitivity applied, unit uV kept
    np.testing.assert_allclose(read_dicom_ecg(_source()).samples, expected, rtol=1e-6)


def test_unit_correction_factor_and_baseline_are_honoured(tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        for channel in ds.WaveformSequence[0].ChannelDefinitionSequence:
            channel.ChannelSensitivity = "0.00125"
            channel.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
            channel.ChannelSensitivityCorrectionFactor = "2"
            channel.ChannelBaseline = "0.5"

    original = read_dicom_ecg(_source()).samples
    edited = read_dicom_ecg(_edited(tmp_path, edit)).samples
    np.testing.assert_allclose(edited, original * 2 + 0.5, rtol=1e-5, atol=1e-6)


def test_padding_samples_become_nan(tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        group = ds.WaveformSequence[0]
        raw = bytearray(group.WaveformData)
        raw[0:2] = (-32768).to_bytes(2, "little", signed=True)  # lead I, first sample
        group.WaveformData = bytes(raw)
        group.add_new(0x5400100A, "OW", (-32768).to_bytes(2, "little", signed=True))

    recording = read_dicom_ecg(_edited(tmp_path, edit))
    assert np.isnan(recording.samples[0, 0])
    assert np.isfinite(recording.samples[1:, 0]).all()


def test_non_voltage_channels_are_left_out(tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        channel = ds.WaveformSequence[0].ChannelDefinitionSequence[11]
        channel.ChannelSensitivityUnitsSequence[0].CodeValue = "mm[Hg]"

    recording = read_dicom_ecg(_edited(tmp_path, edit))
    assert recording.lead_names == STANDARD_LEADS[:11]
    assert recording.metadata["other_signals"][0]["units"] == "mm[Hg]"


def test_truncated_waveform_data_is_refused_before_decoding(tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        ds.WaveformSequence[0].WaveformData = ds.WaveformSequence[0].WaveformData[:-100]

    with pytest.raises(
        InputError, match=r"edited\.dcm: truncated waveform data: 239,900 of 240,000 bytes"
    ):
        read_dicom_ecg(_edited(tmp_path, edit))


def test_inflated_sample_count_is_refused(tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        ds.WaveformSequence[0].NumberOfWaveformSamples = 4_000_000_000

    with pytest.raises(InputError, match=r"more than the limit"):
        read_dicom_ecg(_edited(tmp_path, edit))
    with pytest.raises(InputError, match=r"declares 120,000 samples, more than the limit of 1,000"):
        read_dicom_ecg(_source(), ReadLimits(max_signal_samples=1000))


def test_another_sop_class_is_refused_by_name() -> None:
    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    with pytest.raises(
        InputError, match=r"CT_small\.dcm: a DICOM CT Image Storage object, not an ECG"
    ):
        read_dicom_ecg(Path(ct))


def test_missing_sensitivity_and_audio_samples_are_refused(tmp_path: Path) -> None:
    def no_sensitivity(ds: Dataset) -> None:
        channel = ds.WaveformSequence[0].ChannelDefinitionSequence[0]
        del channel.ChannelSensitivity
        del channel.ChannelSensitivityUnitsSequence

    with pytest.raises(
        InputError, match=r"channel Lead I \(Einthoven\) has no Channel Sensitivity"
    ):
        read_dicom_ecg(_edited(tmp_path, no_sensitivity))

    def mu_law(ds: Dataset) -> None:
        ds.WaveformSequence[0].WaveformSampleInterpretation = "MB"
        ds.WaveformSequence[0].WaveformBitsAllocated = 8

    with pytest.raises(InputError, match=r"mu-law/A-law"):
        read_dicom_ecg(_edited(tmp_path, mu_law))


def test_no_waveform_and_not_dicom_and_missing(tmp_path: Path) -> None:
    def drop(ds: Dataset) -> None:
        ds.WaveformSequence = Sequence()

    with pytest.raises(InputError, match=r"holds no waveform"):
        read_dicom_ecg(_edited(tmp_path, drop))
    text = tmp_path / "ecg.dcm"
    text.write_bytes(b"this is not DICOM at all" * 10)
    with pytest.raises(InputError, match=r"ecg\.dcm: not a"):
        read_dicom_ecg(text)
    with pytest.raises(InputError, match=r"file absent\.dcm is missing"):
        read_dicom_ecg(tmp_path / "absent.dcm")


def test_truncated_file_gives_one_input_error(tmp_path: Path) -> None:
    data = _source().read_bytes()
    for size in (100, 2000, len(data) // 2):  # cuts inside the header and the waveform
        cut = tmp_path / f"cut{size}.dcm"
        cut.write_bytes(data[:size])
        with pytest.raises(InputError, match=rf"cut{size}\.dcm"):
            read_dicom_ecg(cut)
