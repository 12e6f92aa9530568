"""Measured ECG features on real recordings (the labels come from the records themselves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.ecg_features import ECG_FEATURE_NAMES, measure_ecg

TACHYCARDIA, BRADYCARDIA = "427084000", "426177001"


def test_dicom_ecg_in_normal_sinus_rhythm() -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    group = dataset.WaveformSequence[0]
    samples = dataset.waveform_array(0).T / 1000.0  # microvolts -> mV
    measured = measure_ecg(samples, float(group.SamplingFrequency))
    assert measured.heart_rate_bpm is not None and 55 <= measured.heart_rate_bpm <= 100
    assert measured.rr_cv is not None and measured.rr_cv < 0.1  # regular rhythm
    assert measured.qrs_ms is not None and 40 <= measured.qrs_ms <= 120
    assert measured.qtc_bazett_ms is not None and 320 <= measured.qtc_bazett_ms <= 470
    values, present = measured.feature_vector()
    assert values.shape == present.shape == (len(ECG_FEATURE_NAMES),)
    assert present.all() and np.isfinite(values).all()


def test_flat_or_short_signals_measure_nothing() -> None:
    assert measure_ecg(np.zeros((12, 5000)), 500).heart_rate_bpm is None
    assert measure_ecg(np.zeros((1, 100)), 500).beat_count == 0


@pytest.mark.data
def test_heart_rate_agrees_with_the_rhythm_labels(shared_data: Path) -> None:
    wfdb = pytest.importorskip("wfdb")
    folder = shared_data / "ecg" / "cinc2021"
    headers = sorted(folder.glob("*.hea"))
    if not headers:
        pytest.skip(f"no CinC 2021 records in {folder}")
    checked = 0
    for header in headers:
        record = wfdb.rdrecord(str(header.with_suffix("")))
        codes = next(c for c in record.comments if c.startswith("Dx")).split(":")[1]
        codes = {code.strip() for code in codes.split(",")}
        rate = measure_ecg(record.p_signal.T, record.fs).heart_rate_bpm
        assert rate is not None, record.record_name
        if TACHYCARDIA in codes:
            assert rate > 100, (record.record_name, rate)
            checked += 1
        if BRADYCARDIA in codes:
            assert rate < 60, (record.record_name, rate)
            checked += 1
    assert checked >= 5
