"""WFDB reader: every format round-trips in mV, damaged files are refused, real records load.

Records are written with wfdb's own writer (``wfdb.wrsamp``) where it supports the format;
formats it can read but not write (8, 61, 160, 310, 311) are packed here by the WFDB format
specification with a plain-text header, and read back through ``read_wfdb`` (i.e. wfdb).
"""

from __future__ import annotations

import itertools
import math
import pickle
import shutil
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import wfdb

from clinic_app.domain.errors import InputError
from clinic_app.domain.signals import STANDARD_LEADS
from clinic_app.io.ecg_wfdb import parse_header_comments, read_wfdb
from clinic_app.io.leads import normalise_lead_name
from clinic_app.io.limits import ReadLimits

RNG = np.random.default_rng(20260301)


def _physical(
    digital: npt.NDArray[np.int64], gain: float, baseline: int
) -> npt.NDArray[np.float64]:
    return (digital.astype(np.float64) - baseline) / gain


def _write(
    directory: Path,
    name: str = "rec",
    fmt: str = "16",
    n: int = 1000,
    units: tuple[str, ...] | None = None,
    sig_name: tuple[str, ...] = ("I", "V1"),
    bounds: tuple[int, int] = (-2000, 2000),
    **header: object,
) -> tuple[Path, npt.NDArray[np.int64]]:
    digital = RNG.integers(bounds[0], bounds[1], size=(n, len(sig_name))).astype(np.int64)
    wfdb.wrsamp(
        name,
        fs=500,
        units=list(units) if units is not None else ["mV"] * len(sig_name),
        sig_name=list(sig_name),
        d_signal=digital,
        fmt=[fmt] * len(sig_name),
        adc_gain=[200.0] * len(sig_name),
        baseline=[7] * len(sig_name),
        write_dir=str(directory),
        **header,
    )
    return directory / f"{name}.hea", digital


# -- every format, by wfdb's writer and by the specification ----------------------------------


@pytest.mark.parametrize(
    ("fmt", "bounds"),
    [
        ("16", (-32000, 32000)),
        ("212", (-2000, 2000)),
        ("24", (-8_000_000, 8_000_000)),
        ("32", (-(2**30), 2**30)),
        ("80", (-127, 127)),
        ("508", (-127, 127)),
        ("516", (-32000, 32000)),
        ("524", (-8_000_000, 8_000_000)),
    ],
)
def test_wrsamp_formats_round_trip_in_millivolts(
    tmp_path: Path, fmt: str, bounds: tuple[int, int]
) -> None:
    header, digital = _write(tmp_path, fmt=fmt, n=1001, bounds=bounds)
    recording = read_wfdb(header)
    expected = _physical(digital, 200.0, 7).T
    assert recording.samples.dtype == np.float32
    assert recording.samples.shape == (2, 1001)
    assert recording.sampling_rate_hz == 500.0
    assert recording.lead_names == ("I", "V1")
    np.testing.assert_allclose(recording.samples, expected, rtol=1e-6, atol=1e-6)
    assert recording.metadata["checksum_verified"] is True
    assert recording.metadata["signal_formats"] == [fmt]


def _pack(fmt: str, flat: npt.NDArray[np.int64], init: npt.NDArray[np.int64]) -> bytes:
    """Encode interleaved digital samples in a WFDB format (test-side, from the spec)."""
    if fmt == "61":
        return flat.astype(">i2").tobytes()
    if fmt == "160":
        return (flat + 32768).astype("<u2").tobytes()
    if fmt == "8":
        channels = init.shape[0]
        frames = flat.reshape(-1, channels)
        previous = np.vstack([init[None, :], frames[:-1]])
        return (frames - previous).astype(np.int8).tobytes()
    values = (flat & 0x3FF).astype(np.uint32)
    n = values.shape[0]
    padded = np.zeros(-(-n // 3) * 3, dtype=np.uint32)
    padded[:n] = values
    s0, s1, s2 = padded[0::3], padded[1::3], padded[2::3]
    if fmt == "311":
        words = s0 | (s1 << 10) | (s2 << 20)
        data = words.astype("<u4").tobytes()
        size = (n // 3) * 4 + {0: 0, 1: 2, 2: 3}[n % 3]
    else:  # 310: two 16-bit words per three samples
        w1 = (s0 << 1) | ((s2 & 0x1F) << 11)
        w2 = (s1 << 1) | (((s2 >> 5) & 0x1F) << 11)
        data = np.column_stack([w1, w2]).astype("<u2").tobytes()
        size = (n // 3) * 4 + {0: 0, 1: 2, 2: 4}[n % 3]
    return bytes(data[:size])


@pytest.mark.parametrize(
    ("fmt", "bounds", "n"),
    [
        ("61", (-32000, 32000), 1000),
        ("160", (-32000, 32000), 1000),
        ("8", (-60, 60), 1000),
        ("310", (-511, 512), 1000),  # 2 x 1000 = 2000 samples: a partial last block
        ("310", (-511, 512), 1001),
        ("311", (-511, 512), 1000),
        ("311", (-511, 512), 1001),
    ],
)
def test_spec_packed_formats_round_trip(
    tmp_path: Path, fmt: str, bounds: tuple[int, int], n: int
) -> None:
    if fmt == "8":  # differences must fit a byte: a random walk
        digital = np.cumsum(RNG.integers(-60, 60, size=(n, 2)), axis=0).astype(np.int64)
    else:
        digital = RNG.integers(bounds[0], bounds[1], size=(n, 2)).astype(np.int64)
    init = digital[0]
    (tmp_path / "spec.dat").write_bytes(_pack(fmt, digital.reshape(-1), init))
    checksums = digital.sum(axis=0) % 65536
    lines = [f"spec 2 250 {n}"]
    for ch, lead in enumerate(("ii", "AVR")):
        lines.append(f"spec.dat {fmt} 100(3)/mV 10 0 {init[ch]} {checksums[ch]} 0 {lead}")
    (tmp_path / "spec.hea").write_text("\n".join(lines) + "\n")
    recording = read_wfdb(tmp_path / "spec.hea")
    assert recording.lead_names == ("II", "aVR")
    np.testing.assert_allclose(recording.samples, _physical(digital, 100.0, 3).T, atol=1e-5)
    assert recording.metadata["checksum_verified"] is True


def test_units_are_converted_to_millivolts(tmp_path: Path) -> None:
    header, digital = _write(tmp_path, units=("uV", "V"), sig_name=("I", "II"))
    recording = read_wfdb(header)
    np.testing.assert_allclose(
        recording.samples[0], _physical(digital[:, 0], 200, 7) / 1000, rtol=1e-6
    )
    np.testing.assert_allclose(
        recording.samples[1], _physical(digital[:, 1], 200, 7) * 1000, rtol=1e-6
    )
    assert recording.units == "mV"
    assert recording.metadata["source_units"] == ["uV", "V"]


def test_non_voltage_channels_are_left_out_and_listed(tmp_path: Path) -> None:
    header, digital = _write(tmp_path, units=("mV", "mmHg", "NU"), sig_name=("II", "ABP", "PLETH"))
    recording = read_wfdb(header)
    assert recording.lead_names == ("II",)
    np.testing.assert_allclose(recording.samples[0], _physical(digital[:, 0], 200, 7), rtol=1e-6)
    others = recording.metadata["other_signals"]
    assert [(o["name"], o["units"]) for o in others] == [("ABP", "mmHg"), ("PLETH", "NU")]


def test_a_record_without_voltage_signals_is_refused(tmp_path: Path) -> None:
    header, _ = _write(tmp_path, units=("mmHg",), sig_name=("ABP",))
    with pytest.raises(InputError, match=r"no voltage \(ECG\) signals.*ABP \(mmHg\)"):
        read_wfdb(header)


def test_invalid_samples_become_nan(tmp_path: Path) -> None:
    digital = RNG.integers(-100, 100, size=(50, 1)).astype(np.int64)
    digital[10, 0] = -32768  # WFDB's "invalid sample" value for format 16
    wfdb.wrsamp(
        "gap",
        fs=100,
        units=["mV"],
        sig_name=["I"],
        d_signal=digital,
        fmt=["16"],
        adc_gain=[100.0],
        baseline=[0],
        write_dir=str(tmp_path),
    )
    recording = read_wfdb(tmp_path / "gap.hea")
    assert math.isnan(recording.samples[0, 10])
    assert np.isfinite(np.delete(recording.samples[0], 10)).all()


def test_multi_frequency_record_is_brought_to_the_highest_rate(tmp_path: Path) -> None:
    fast = RNG.integers(-500, 500, size=400).astype(np.int64)  # 2 samples per frame
    slow = RNG.integers(-500, 500, size=200).astype(np.int64)  # 1 sample per frame
    record = wfdb.Record(
        record_name="multi",
        n_sig=2,
        fs=250,
        sig_len=200,
        file_name=["multi.dat", "multi.dat"],
        fmt=["16", "16"],
        samps_per_frame=[2, 1],
        adc_gain=[100.0, 50.0],
        baseline=[0, 0],
        units=["mV", "mV"],
        sig_name=["V2", "II"],
        e_d_signal=[fast, slow],
        checksum=[0, 0],
        init_value=[int(fast[0]), int(slow[0])],
        adc_res=[16, 16],
        adc_zero=[0, 0],
        block_size=[0, 0],
    )
    record.wrsamp(expanded=True, write_dir=str(tmp_path))
    recording = read_wfdb(tmp_path / "multi.hea")
    assert recording.sampling_rate_hz == 500.0
    assert recording.samples.shape == (2, 400)
    np.testing.assert_allclose(recording.samples[0], fast / 100.0, rtol=1e-6)
    np.testing.assert_allclose(recording.samples[1], np.repeat(slow, 2) / 50.0, rtol=1e-6)
    assert recording.metadata["resampled_from_hz"] == {"II": 250.0}
    copy = pickle.loads(pickle.dumps(recording))  # results cross the sandbox's process boundary
    np.testing.assert_array_equal(copy.samples, recording.samples)
    assert recording.metadata["checksum_verified"] is True


def _segment(
    name: str, names: list[str], n: int, gain: float
) -> tuple[wfdb.Record, npt.NDArray[np.int64]]:
    digital = RNG.integers(-1000, 1000, size=(n, len(names))).astype(np.int64)
    record = wfdb.Record(
        record_name=name, n_sig=len(names), fs=200, sig_len=n,
        file_name=[f"{name}.dat"] * len(names), fmt=["16"] * len(names),
        adc_gain=[gain] * len(names), baseline=[0] * len(names), units=["mV"] * len(names),
        sig_name=names, d_signal=digital, adc_res=[16] * len(names),
        adc_zero=[0] * len(names), block_size=[0] * len(names),
        init_value=[int(v) for v in digital[0]], checksum=[0] * len(names),
    )  # fmt: skip
    return record, digital


def test_fixed_layout_multi_segment_record_with_a_null_segment(tmp_path: Path) -> None:
    first, d1 = _segment("seg_1", ["I", "II"], 300, 100.0)
    second, d2 = _segment("seg_2", ["I", "II"], 200, 400.0)  # another gain: converted per segment
    master = wfdb.MultiRecord(
        record_name="multiseg", n_sig=2, fs=200, sig_len=600, layout="fixed",
        seg_name=["seg_1", "~", "seg_2"], seg_len=[300, 100, 200], segments=[first, None, second],
    )  # fmt: skip
    master.wrheader(write_dir=str(tmp_path))
    for segment in (first, second):
        segment.wrsamp(write_dir=str(tmp_path))
    recording = read_wfdb(tmp_path / "multiseg.hea")
    assert recording.samples.shape == (2, 600)
    np.testing.assert_allclose(recording.samples[:, :300], d1.T / 100.0, rtol=1e-6)
    assert np.isnan(recording.samples[:, 300:400]).all()
    np.testing.assert_allclose(recording.samples[:, 400:], d2.T / 400.0, rtol=1e-6)
    assert recording.metadata["segments"] == 3
    assert recording.metadata["null_segments"] == 1
    assert recording.metadata["checksum_verified"] is True
    # each segment is checked on its own: damage in the second one is found
    data = bytearray((tmp_path / "seg_2.dat").read_bytes())
    data[100] ^= 0x40
    (tmp_path / "seg_2.dat").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"seg_2\.dat: signal \d \((I|II)\) fails its checksum"):
        read_wfdb(tmp_path / "multiseg.hea")


def test_variable_layout_fills_signals_a_segment_lacks_with_nan(tmp_path: Path) -> None:
    layout = wfdb.Record(
        record_name="var_layout", n_sig=2, fs=200, sig_len=0, file_name=["~", "~"],
        fmt=["16", "16"], adc_gain=[100.0, 100.0], baseline=[0, 0], units=["mV", "mV"],
        sig_name=["II", "V5"], adc_res=[16, 16], adc_zero=[0, 0], block_size=[0, 0],
    )  # fmt: skip
    only_ii, d1 = _segment("var_1", ["II"], 100, 100.0)
    both, d2 = _segment("var_2", ["V5", "II"], 150, 100.0)
    (tmp_path / "var_layout.hea").write_text(
        "var_layout 2 200 0\n~ 16 100(0)/mV 16 0 0 0 0 II\n~ 16 100(0)/mV 16 0 0 0 0 V5\n"
    )
    (tmp_path / "var.hea").write_text("var/3 2 200 250\nvar_layout 0\nvar_1 100\nvar_2 150\n")
    del layout
    for segment in (only_ii, both):
        segment.wrsamp(write_dir=str(tmp_path))
    recording = read_wfdb(tmp_path / "var.hea")
    assert recording.lead_names == ("II", "V5")
    np.testing.assert_allclose(recording.samples[0, :100], d1[:, 0] / 100.0, rtol=1e-6)
    assert np.isnan(recording.samples[1, :100]).all()
    np.testing.assert_allclose(recording.samples[0, 100:], d2[:, 1] / 100.0, rtol=1e-6)
    np.testing.assert_allclose(recording.samples[1, 100:], d2[:, 0] / 100.0, rtol=1e-6)


# -- comments, start time, annotations --------------------------------------------------------


def test_header_comments_are_parsed() -> None:
    parsed = parse_header_comments(
        ["Age: NaN", "Sex: Female", "Dx: 164889003, 59118001", "Rx: Unknown",
         "Recorded at the ward", "  "]
    )  # fmt: skip
    assert parsed["age"] is None
    assert parsed["sex"] == "female"
    assert parsed["dx_snomed"] == ["164889003", "59118001"]
    assert parsed["header_fields"] == {"Rx": "Unknown"}
    assert parsed["header_text"] == ["Recorded at the ward"]
    mitdb = parse_header_comments(["unnecessary comment", "69 M 1085 1629 x1", "Aldomet, Inderal"])
    assert (mitdb["age"], mitdb["sex"]) == (69, "male")


def test_comments_start_and_dates_from_the_header(tmp_path: Path) -> None:
    header, _ = _write(
        tmp_path, comments=["Age: 63", "Sex: M", "Dx: 426783006"],
        base_time=time(8, 30, 5), base_date=date(2020, 2, 29),
    )  # fmt: skip
    recording = read_wfdb(header)
    assert recording.start == datetime(2020, 2, 29, 8, 30, 5)
    assert recording.start.tzinfo is None
    assert "unknown" in recording.metadata["start_timezone"]
    assert (recording.metadata["age"], recording.metadata["sex"]) == (63, "male")
    assert recording.metadata["dx_snomed"] == ["426783006"]
    header, _ = _write(tmp_path, name="timeonly", base_time=time(19, 46, 25, 757000))
    recording = read_wfdb(header)
    assert recording.start is None
    assert recording.metadata["start_time_of_day"] == "19:46:25.757000"


def test_beats_and_rhythm_episodes_from_annotation_files(tmp_path: Path) -> None:
    header, _ = _write(tmp_path, n=2000)
    wfdb.wrann(
        "rec", "atr", sample=np.array([0, 100, 400, 700, 1200, 1500]),
        symbol=["+", "N", "V", "+", "N", "+"], aux_note=["(N", "", "", "(AFIB", "", "(N"],
        fs=500, write_dir=str(tmp_path),
    )  # fmt: skip
    wfdb.wrann("rec", "qrs", sample=np.array([101, 401]), symbol=["N", "N"],
               write_dir=str(tmp_path))  # fmt: skip
    recording = read_wfdb(header)
    rhythm = [
        (a.sample, a.label, a.end_sample) for a in recording.annotations if a.kind == "rhythm"
    ]
    assert rhythm == [(0, "N", 700), (700, "AFIB", 1500), (1500, "N", 2000)]
    beats = [(a.sample, a.symbol) for a in recording.annotations if a.kind == "beat"]
    assert beats == [(100, "N"), (101, "N"), (400, "V"), (401, "N"), (1200, "N")]
    assert recording.metadata["annotation_files"] == ["rec.atr", "rec.qrs"]


def test_a_damaged_annotation_file_is_refused(tmp_path: Path) -> None:
    header, _ = _write(tmp_path)
    (tmp_path / "rec.atr").write_bytes(b"\xff\xff" * 3 + b"\x00")
    with pytest.raises(InputError, match=r"rec\.atr: the annotation file is damaged"):
        read_wfdb(header)


# -- damaged and hostile files ----------------------------------------------------------------


def test_a_flipped_byte_fails_the_checksum(tmp_path: Path) -> None:
    header, _ = _write(tmp_path, sig_name=("I", "II", "III", "V1"), n=500)
    data = bytearray((tmp_path / "rec.dat").read_bytes())
    data[8 * 200 + 6] ^= 0x10  # frame 200, signal 4 (V1), low byte
    (tmp_path / "rec.dat").write_bytes(bytes(data))
    with pytest.raises(InputError) as caught:
        read_wfdb(header)
    message = str(caught.value)
    assert message.startswith("rec.dat: signal 4 (V1) fails its checksum (header ")
    assert message.endswith("the file is damaged or does not belong to this header.")


def test_a_changed_first_sample_is_caught(tmp_path: Path) -> None:
    header, digital = _write(tmp_path, n=100)
    text = header.read_text().replace(f" {digital[0, 0]} ", f" {digital[0, 0] + 1} ", 1)
    header.write_text(text)
    with pytest.raises(InputError, match=r"signal 1 \(I\) starts at"):
        read_wfdb(header)


def test_a_truncated_signal_file_is_refused(tmp_path: Path) -> None:
    header, _ = _write(tmp_path, n=7500, sig_name=("I",))
    data = (tmp_path / "rec.dat").read_bytes()
    (tmp_path / "rec.dat").write_bytes(data[: 4000 * 2])
    with pytest.raises(InputError, match=r"rec\.dat: truncated: 4,000 of 7,500 samples"):
        read_wfdb(header)


def test_a_212_file_short_by_one_byte_is_truncated(tmp_path: Path) -> None:
    header, _ = _write(tmp_path, fmt="212", n=999, sig_name=("I",))  # odd: a 2-byte last block
    data = (tmp_path / "rec.dat").read_bytes()
    assert len(data) == 1499
    (tmp_path / "rec.dat").write_bytes(data[:-1])
    with pytest.raises(InputError, match=r"truncated: 998 of 999 samples"):
        read_wfdb(header)


def test_a_missing_signal_file_is_named(tmp_path: Path) -> None:
    header, _ = _write(tmp_path, name="12726")
    (tmp_path / "12726.dat").unlink()
    with pytest.raises(InputError, match=r"^signal file 12726\.dat is missing"):
        read_wfdb(header)


def test_a_record_over_the_sample_limit_is_refused_before_reading(tmp_path: Path) -> None:
    header, _ = _write(tmp_path, n=1000)
    (tmp_path / "rec.dat").unlink()  # never opened: the header alone is refused
    with pytest.raises(InputError, match=r"declares 2,000 samples, more than the limit of 1,999"):
        read_wfdb(header, ReadLimits(max_signal_samples=1999))


def test_header_without_checksums_loads_unverified(tmp_path: Path) -> None:
    header, digital = _write(tmp_path, n=300)
    lines = header.read_text().splitlines()
    stripped = [lines[0]] + [
        " ".join(line.split()[:3]) + " " + line.split()[-1] for line in lines[1:3]
    ]
    header.write_text("\n".join(stripped) + "\n")
    recording = read_wfdb(header)
    assert recording.metadata["checksum_verified"] is False
    np.testing.assert_allclose(recording.samples, _physical(digital, 200, 7).T, rtol=1e-6)


def test_signal_file_names_cannot_leave_the_folder(tmp_path: Path) -> None:
    (tmp_path / "evil.hea").write_text("evil 1 100 10\n. 16 200 16 0 0 0 0 I\n")
    with pytest.raises(InputError, match=r"not a plain file name"):
        read_wfdb(tmp_path / "evil.hea")


@pytest.mark.parametrize(
    "text",
    ["", "not a header at all\n", "rec 2 abc 10\n", "rec 1 100 10\nrec.dat 999 200 16 0 0 0 0 I\n",
     "rec 1 -5 10\nrec.dat 16 200 16 0 0 0 0 I\n", "\x00\xff garbage\n"],
)  # fmt: skip
def test_malformed_headers_give_one_input_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "rec.hea").write_text(text, encoding="latin-1")
    (tmp_path / "rec.dat").write_bytes(b"\x00" * 20)
    with pytest.raises(InputError, match=r"rec\.hea|rec\.dat"):
        read_wfdb(tmp_path / "rec.hea")


def test_a_missing_header_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"WFDB header nothing\.hea is missing"):
        read_wfdb(tmp_path / "nothing.hea")


# -- lead names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("i", "I"), ("lead I", "I"), ("Lead I (Einthoven)", "I"), ("MDC_ECG_LEAD_I", "I"),
        ("AVR", "aVR"), ("avr", "aVR"), ("Lead aVR", "aVR"), ("MDC_ECG_LEAD_AVR", "aVR"),
        ("v1", "V1"), ("Lead V6", "V6"), ("III", "III"), (" ii ", "II"),
        ("MLII", "MLII"), ("V", "V"), ("vx", "vx"), ("-aVR", "-aVR"), ("PLETH", "PLETH"),
        ("Lead III (Einthoven)", "III"), ("aVF (Goldberger)", "aVF"),
    ],
)  # fmt: skip
def test_lead_names_are_normalised(given: str, expected: str) -> None:
    assert normalise_lead_name(given) == expected


# -- real records -----------------------------------------------------------------------------


def _ecg(shared_data: Path) -> Path:
    folder = shared_data / "ecg"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


@pytest.mark.data
def test_every_real_record_loads_verified(shared_data: Path) -> None:
    headers = sorted(_ecg(shared_data).glob("*/*.hea"))
    assert len(headers) >= 40
    for header in headers:
        recording = read_wfdb(header)  # every shared record is intact: none may fail
        assert recording.metadata["checksum_verified"] is True, header.name
        assert recording.samples.dtype == np.float32
        finite = recording.samples[np.isfinite(recording.samples)]
        assert 0.05 < float(np.abs(finite).max()) < 50.0, header.name  # plausible mV


@pytest.mark.data
def test_cinc2021_records_are_twelve_standard_leads(shared_data: Path) -> None:
    headers = sorted((_ecg(shared_data) / "cinc2021").glob("*.hea"))
    assert len(headers) == 30
    for header in headers:
        recording = read_wfdb(header)
        assert recording.lead_names == STANDARD_LEADS
        assert recording.sampling_rate_hz == 500.0
        assert recording.duration_s == 10.0
        assert isinstance(recording.metadata["age"], int)
        assert recording.metadata["sex"] in {"male", "female"}
        assert recording.metadata["dx_snomed"]
        assert all(code.isdigit() for code in recording.metadata["dx_snomed"])
    e07503 = read_wfdb(_ecg(shared_data) / "cinc2021" / "E07503.hea")
    assert e07503.metadata["dx_snomed"] == ["253352002", "427084000"]
    assert (e07503.metadata["age"], e07503.metadata["sex"]) == (77, "female")
    assert e07503.metadata["header_fields"]["Rx"] == "Unknown"


@pytest.mark.data
def test_cpsc2021_rhythm_episodes(shared_data: Path) -> None:
    folder = _ecg(shared_data) / "cpsc2021"
    recording = read_wfdb(folder / "data_101_8.hea")
    assert recording.lead_names == ("I", "II")
    assert recording.sampling_rate_hz == 200.0
    episodes = [
        (a.label, a.sample, a.end_sample) for a in recording.annotations if a.kind == "rhythm"
    ]
    assert [e[0] for e in episodes] == ["AFIB", "N", "AFIB", "N"]
    for (_, _, end), (_, start, _) in itertools.pairwise(episodes):
        assert end == start
    assert episodes[-1][2] == recording.samples.shape[1]
    assert sum(1 for a in recording.annotations if a.kind == "beat") > 200
    no_af = read_wfdb(folder / "data_21_7.hea")
    assert not any(a.label == "AFIB" for a in no_af.annotations)
    assert no_af.metadata["header_text"] == ["non atrial fibrillation"]


@pytest.mark.data
def test_mitdb_100_and_its_variants(shared_data: Path) -> None:
    folder = _ecg(shared_data) / "wfdb-samples"
    record = read_wfdb(folder / "100.hea")
    assert record.lead_names == ("MLII", "V5")
    assert record.sampling_rate_hz == 360.0
    assert record.samples.shape == (2, 650_000)
    assert record.metadata["signal_formats"] == ["212"]
    assert (record.metadata["age"], record.metadata["sex"]) == (69, "male")
    beats = [a for a in record.annotations if a.kind == "beat"]
    assert len(beats) == 2273
    assert {a.symbol for a in beats} == {"N", "A", "V"}
    reference = wfdb.rdrecord(str(folder / "100")).p_signal.T
    np.testing.assert_allclose(record.samples, reference, rtol=1e-6)
    no_len = read_wfdb(folder / "100-no-len.hea")
    assert no_len.samples.shape == (2, 650_000)
    assert no_len.metadata["length_inferred_from_file"] is True
    assert no_len.metadata["checksum_verified"] is True
    three = read_wfdb(folder / "100_3chan.hea")
    assert three.lead_names == ("I", "II", "III")
    assert three.samples.shape == (3, 999)


@pytest.mark.data
def test_ptb_mimic_and_challenge_2015_records(shared_data: Path) -> None:
    folder = _ecg(shared_data) / "wfdb-samples"
    ptb = read_wfdb(folder / "s0010_re.hea")
    assert ptb.lead_names == (*STANDARD_LEADS, "vx", "vy", "vz")
    assert ptb.sampling_rate_hz == 1000.0 and ptb.duration_s == 38.4
    assert (ptb.metadata["age"], ptb.metadata["sex"]) == (81, "female")
    assert ptb.metadata["header_fields"]["ECG date"] == "01/10/1990"
    mimic = read_wfdb(folder / "3000003_0003.hea")
    assert mimic.lead_names == ("II", "V")
    assert mimic.sampling_rate_hz == 125.0 and mimic.samples.shape == (2, 1028)
    assert mimic.metadata["signal_formats"] == ["80"]
    assert mimic.start is None and mimic.metadata["start_time_of_day"] == "19:46:25.757000"
    alarm = read_wfdb(folder / "a103l.hea")
    assert alarm.lead_names == ("II", "V")
    assert alarm.duration_s == 330.0
    assert alarm.metadata["other_signals"][0]["name"] == "PLETH"
    assert alarm.metadata["header_text"] == ["Asystole", "False alarm"]


@pytest.mark.data
def test_damaged_copies_of_real_records(shared_data: Path, tmp_path: Path) -> None:
    source = _ecg(shared_data) / "wfdb-samples"
    for name in ("100_3chan.hea", "100_3chan.dat"):
        shutil.copy(source / name, tmp_path / name)
    data = bytearray((tmp_path / "100_3chan.dat").read_bytes())
    data[3000] ^= 0x01
    (tmp_path / "100_3chan.dat").write_bytes(bytes(data))
    with pytest.raises(
        InputError, match=r"100_3chan\.dat: signal \d \((I|II|III)\) fails its checksum"
    ):
        read_wfdb(tmp_path / "100_3chan.hea")
    (tmp_path / "100_3chan.dat").write_bytes(bytes(data[:2000]))
    with pytest.raises(InputError, match=r"truncated: 444 of 999 samples"):
        read_wfdb(tmp_path / "100_3chan.hea")
    cinc = _ecg(shared_data) / "cinc2021"
    for name in ("E07503.hea", "E07503.mat"):
        shutil.copy(cinc / name, tmp_path / name)
    mat = bytearray((tmp_path / "E07503.mat").read_bytes())
    mat[24 + 2 * 12 * 1000] ^= 0x08
    (tmp_path / "E07503.mat").write_bytes(bytes(mat))
    with pytest.raises(InputError, match=r"E07503\.mat: signal 1 \(I\) fails its checksum"):
        read_wfdb(tmp_path / "E07503.hea")
