"""PS3.15 Annex E Basic Profile de-identification of real DICOM files with planted markers.

Every attribute of Table E.1-1 is set to a unique marker (at the top level, in a sequence item
and in an item nested two levels deep), together with private elements, overlay and curve
groups and file meta AE titles; the written file is de-identified and no marker may survive
anywhere in the output bytes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from clinic_app.domain.errors import ConfigError, InputError
from clinic_app.io.deid.annex_e import (
    BASIC_PROFILE,
    BASIC_PROFILE_MASKED_ROWS,
    BASIC_PROFILE_ROWS,
    DICOM_EDITION,
    basic_profile_action,
)
from clinic_app.io.deid.dicom import (
    DEIDENTIFICATION_METHOD,
    VL_WHOLE_SLIDE_MICROSCOPY,
    DicomDeidentifier,
    deidentify_file,
)

SECRET = b"clinicfusion-test-secret-0123456789"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
NUMBER_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"}
KEPT_SEQUENCE = 0x00081032  # Procedure Code Sequence: not in Table E.1-1, so it is kept
NESTED_SEQUENCE = 0x00082218  # Anatomic Region Sequence: not in the table either


def _testfile(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


@dataclass
class Markers:
    """Every planted value: byte strings that must not appear, numbers that must not remain."""

    serial: int = 0
    text: list[bytes] = field(default_factory=list)
    numbers: dict[int, set[int]] = field(default_factory=dict)
    uids: list[str] = field(default_factory=list)

    def next(self) -> int:
        self.serial += 1
        return self.serial

    def word(self) -> str:
        marker = f"PHIMARK{self.next():04d}"
        self.text.append(marker.encode())
        return marker

    def uid(self) -> str:
        value = f"1.2.826.0.1.3680043.10.1009.{self.next()}"
        self.text.append(value.encode())
        self.uids.append(value)
        return value


def _vr_for(tag: int, name: str) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:  # newer than pydicom's dictionary: plant it all the same
        return "SQ" if name.endswith("Sequence") else "LO"
    return vr.split(" or ")[0]


def _marker_value(vr: str, tag: int, code: str, m: Markers) -> object:
    n = m.next()
    if vr in TEXT_VRS:
        return m.word()
    if vr == "UR":
        value = f"http://phimark{n:04d}.example/"
        m.text.append(value.encode())
        return value
    if vr == "AS":
        value = f"{100 + n % 900:03d}W"
        m.text.append(value.encode())
        return value
    if vr == "DA":
        value = (dt.date(1950, 1, 1) + dt.timedelta(days=n)).strftime("%Y%m%d")
        m.text.append(value.encode())
        return value
    if vr == "DT":
        day = (dt.date(1980, 1, 1) + dt.timedelta(days=n)).strftime("%Y%m%d")
        value = f"{day}101112.{n:06d}"
        m.text.append(value.encode())
        return value
    if vr == "TM":
        value = f"1011{n % 60:02d}.{n:06d}"
        m.text.append(value.encode())
        return value
    if vr in ("DS", "IS"):
        value = f"98765{n:04d}"
        m.text.append(value.encode())
        return value
    if vr == "UI":
        return m.uid()
    if vr in BINARY_VRS:
        marker = m.word().encode()
        return marker + b"\x00" * (16 - len(marker))
    if vr in NUMBER_VRS:
        value = 40000 + n % 20000
        m.numbers.setdefault(tag, set()).add(value)
        return value
    if vr == "AT":
        return 0x00100010
    if vr == "SQ":
        item = Dataset()
        if code == "X/Z/U*":  # kept with its UIDs replaced: plant UIDs only
            item.ReferencedSOPClassUID = CT_IMAGE
            item.ReferencedSOPInstanceUID = m.uid()
        else:  # emptied or removed: anything inside must go
            item.CodeValue = m.word()
            item.CodeMeaning = m.word()
        return Sequence([item])
    raise AssertionError(f"no marker for VR {vr}")


def _plant_table(ds: Dataset, m: Markers) -> None:
    """Set every attribute of Table E.1-1 (but command and file meta groups) to a marker."""
    for tag, code, name in BASIC_PROFILE_ROWS:
        if tag >> 16 in (0x0000, 0x0002):
            continue
        vr = _vr_for(tag, name)
        ds.add(DataElement(tag, vr, _marker_value(vr, tag, code, m)))


def _plant_private(ds: Dataset, m: Markers) -> None:
    block = ds.private_block(0x0009, "PHIMARK CREATOR", create=True)
    block.add_new(0x01, "LO", m.word())
    block.add_new(0x02, "UN", m.word().encode() + b"\x00")
    inner = Dataset()
    inner.add(DataElement(0x00100010, "PN", m.word()))
    block.add_new(0x03, "SQ", Sequence([inner]))


def _plant_everything(ds: Dataset, m: Markers) -> None:
    _plant_table(ds, m)
    _plant_private(ds, m)
    level1 = Dataset()
    _plant_table(level1, m)
    _plant_private(level1, m)
    level2 = Dataset()
    _plant_table(level2, m)
    _plant_private(level2, m)
    level1.add(DataElement(NESTED_SEQUENCE, "SQ", Sequence([level2])))
    ds.add(DataElement(KEPT_SEQUENCE, "SQ", Sequence([level1])))
    # Overlay and curve groups (Table E.1-1: 60xx,3000 / 60xx,4000 / 50xx,xxxx are X).
    for group in (0x6000, 0x6002):
        ds.add(DataElement((group << 16) | 0x0010, "US", 8))
        ds.add(DataElement((group << 16) | 0x0011, "US", 8))
        ds.add(DataElement((group << 16) | 0x0022, "LO", m.word()))
        ds.add(DataElement((group << 16) | 0x1500, "LO", m.word()))
        ds.add(DataElement((group << 16) | 0x3000, "OW", m.word().encode() + b"\x00" * 5))
        ds.add(DataElement((group << 16) | 0x4000, "LT", m.word()))
    ds.add(DataElement(0x50000022, "LO", m.word()))
    ds.add(DataElement(0x50003000, "OB", m.word().encode() + b"\x00"))
    ds.file_meta.SourceApplicationEntityTitle = m.word()


def _walk(ds: Dataset) -> Iterator[DataElement]:
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)


def _instance_uids(ds: Dataset) -> set[str]:
    """UID values that name instances (not classes, syntaxes or well-known frames)."""
    from pydicom._uid_dict import UID_dictionary

    found: set[str] = set()
    for elem in _walk(ds):
        if elem.VR == "UI" and elem.value:
            values = elem.value if isinstance(elem.value, list) else [elem.value]
            found |= {str(v) for v in values if str(v) not in UID_dictionary}
    return found


def _planted_file(tmp_path: Path, name: str, m: Markers, **edit: object) -> Path:
    ds = pydicom.dcmread(_testfile(name))
    _plant_everything(ds, m)
    for keyword, value in edit.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / f"planted-{name}"
    ds.save_as(path, enforce_file_format=True)
    return path


# -- the table ------------------------------------------------------------------------------


def test_table_covers_all_of_table_e1_1_for_the_named_edition() -> None:
    assert DICOM_EDITION == "2026c"
    assert len(BASIC_PROFILE_ROWS) == 652
    assert len(BASIC_PROFILE) == 652  # no tag twice
    assert len(BASIC_PROFILE_MASKED_ROWS) == 3
    assert {code for _, code, _ in BASIC_PROFILE_ROWS} == {
        "D",
        "Z",
        "X",
        "U",
        "Z/D",
        "X/Z",
        "X/D",
        "X/Z/D",
        "X/Z/U*",
    }


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        (0x00100010, "Z"),  # Patient's Name (we then write the pseudonym)
        (0x00100020, "Z/D"),  # Patient ID (Z until 2024a, Z/D since)
        (0x0020000D, "U"),  # Study Instance UID
        (0x00080018, "U"),  # SOP Instance UID
        (0x00080050, "Z"),  # Accession Number
        (0x00080080, "X/Z/D"),  # Institution Name
        (0x00080090, "Z"),  # Referring Physician's Name
        (0x00080020, "Z"),  # Study Date
        (0x00100030, "Z"),  # Patient's Birth Date
        (0x00181000, "X/Z/D"),  # Device Serial Number
        (0x0008002A, "X/Z/D"),  # Acquisition DateTime
        (0x00081140, "X/Z/U*"),  # Referenced Image Sequence
        (0x00081155, "U"),  # Referenced SOP Instance UID
        (0x00081030, "X"),  # Study Description
        (0x00101040, "X"),  # Patient's Address
        (0x00020003, "U"),  # Media Storage SOP Instance UID
        (0x60003000, "X"),  # Overlay Data (60xx,3000)
        (0x601E4000, "X"),  # Overlay Comments (60xx,4000)
        (0x50F01234, "X"),  # Curve Data (50xx,xxxx)
        (0x00080016, None),  # SOP Class UID is not in the table
        (0x54000100, None),  # Waveform Sequence is not in the table
    ],
)
def test_well_known_rows(tag: int, code: str | None) -> None:
    assert basic_profile_action(tag) == code


# -- planted markers ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:VR lookup failed")  # implicit VR: newer tags read as UN
@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "waveform_ecg.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",  # Secondary Capture, JPEG baseline
        "rtplan.dcm",  # implicit VR, many sequences
    ],
)
def test_no_planted_marker_survives_anywhere_in_the_output_bytes(tmp_path: Path, name: str) -> None:
    m = Markers()
    src = _planted_file(tmp_path, name, m)
    planted = pydicom.dcmread(src)
    planted_uids = _instance_uids(planted)
    assert len(m.text) > 3 * 600  # the whole table at three levels, not a sample
    planted_bytes = src.read_bytes()
    assert [marker for marker in m.text if marker not in planted_bytes] == []

    dst = tmp_path / "out.dcm"
    result = deidentify_file(src, dst, DicomDeidentifier(SECRET), refuse_burned_in=False)

    data = dst.read_bytes()
    survivors = [marker.decode() for marker in m.text if marker in data]
    assert survivors == []
    out = pydicom.dcmread(dst)
    for elem in _walk(out):
        assert not elem.tag.is_private, elem
        assert elem.tag.group & 0xFF00 not in (0x5000, 0x6000), elem
        assert int(elem.tag) not in m.numbers or elem.value not in m.numbers[int(elem.tag)]
    # Every instance UID changed, into valid 2.25 UIDs, the same way in meta and dataset.
    new_uids = _instance_uids(out)
    assert planted_uids.isdisjoint(new_uids)
    assert all(re.fullmatch(r"2\.25\.(0|[1-9]\d*)", u) and len(u) <= 64 for u in new_uids)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SOPInstanceUID == DicomDeidentifier(SECRET).map_uid(planted.SOPInstanceUID)
    assert out.SOPClassUID == planted.SOPClassUID
    assert out.file_meta.TransferSyntaxUID == planted.file_meta.TransferSyntaxUID
    assert "SourceApplicationEntityTitle" not in out.file_meta
    # Marked as de-identified, with the pseudonym in Patient ID and Patient's Name.
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethod == DEIDENTIFICATION_METHOD
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100"]
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert out.PatientID == result.patient_pseudonym == str(out.PatientName)
    assert re.fullmatch(r"CF-[A-Z2-7]{16}", result.patient_pseudonym)
    # The action log names attributes, never their values.
    log = repr(result.actions)
    assert "PatientName" in log and "(0009,1001)" in log
    assert not any(marker.decode() in log for marker in m.text)
    # The kept sequence and its nested item survive (with their contents cleaned).
    nested = out[KEPT_SEQUENCE].value[0][NESTED_SEQUENCE].value[0]
    assert "PatientName" in nested and nested.PatientName == ""


def _same_pixels(before: Dataset, after: Dataset) -> None:
    if "PixelData" in before:
        assert after.PixelData == before.PixelData
        np.testing.assert_array_equal(after.pixel_array, before.pixel_array)
    else:
        assert after.WaveformSequence[0].WaveformData == before.WaveformSequence[0].WaveformData
        np.testing.assert_array_equal(after.waveform_array(0), before.waveform_array(0))


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "waveform_ecg.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPEG2000.dcm",
        "SC_rgb_rle.dcm",
        "image_dfl.dcm",  # deflated explicit VR little endian
        "MR_small_bigendian.dcm",
    ],
)
def test_pixel_and_waveform_data_are_unchanged_and_still_decode(tmp_path: Path, name: str) -> None:
    src = _testfile(name)
    before = pydicom.dcmread(src)
    dst = tmp_path / "out.dcm"
    deidentify_file(src, dst, DicomDeidentifier(SECRET), refuse_burned_in=False, patient_key="P1")
    after = pydicom.dcmread(dst)
    assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    _same_pixels(before, after)


def test_whole_slide_instance_keeps_its_tiles_and_loses_specimen_identifiers(
    tmp_path: Path,
) -> None:
    """A VL Whole Slide Microscopy instance built on pydicom's real H&E tile (JPEG)."""
    ds = pydicom.dcmread(_testfile("SC_jpeg_no_color_transform.dcm"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = VL_WHOLE_SLIDE_MICROSCOPY
    ds.Modality = "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.PatientID = "PHIMARK-WSI-PATIENT"
    ds.ContainerIdentifier = "PHIMARK-SLIDE-S24-1234"
    ds.AcquisitionDateTime = "20240229101112"
    ds.DimensionOrganizationUID = "1.2.826.0.1.3680043.10.1009.777"
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = ds.Columns, ds.Rows
    specimen = Dataset()
    specimen.SpecimenIdentifier = "PHIMARK-SPECIMEN-S24-1234-A1"
    specimen.SpecimenUID = "1.2.826.0.1.3680043.10.1009.778"
    specimen.SpecimenShortDescription = "PHIMARK-DESCRIPTION"
    ds.SpecimenDescriptionSequence = Sequence([specimen])
    src = tmp_path / "wsi.dcm"
    ds.save_as(src, enforce_file_format=True)
    dst = tmp_path / "out.dcm"
    result = deidentify_file(src, dst, DicomDeidentifier(SECRET))
    assert result.burned_in_annotation is False  # absent flag on a slide tile counts as NO
    data = dst.read_bytes()
    assert b"PHIMARK" not in data and b"20240229" not in data and b"1009.77" not in data
    out = pydicom.dcmread(dst)
    item = out.SpecimenDescriptionSequence[0]
    assert item.SpecimenIdentifier == "ANONYMIZED"  # D
    assert item.SpecimenUID == DicomDeidentifier(SECRET).map_uid(specimen.SpecimenUID)
    assert "SpecimenShortDescription" not in item  # X
    assert out.AcquisitionDateTime == "19000101000000"  # Type 1 in WSI: a dummy, not empty
    _same_pixels(pydicom.dcmread(src), out)


# -- consistency across files and sessions --------------------------------------------------


def test_references_between_files_follow_the_new_uids_and_one_patient_one_pseudonym(
    tmp_path: Path,
) -> None:
    m = Markers()
    ct = _planted_file(tmp_path, "CT_small.dcm", m, PatientID="PHIMARK-SAME-PATIENT")
    ct_uid = pydicom.dcmread(ct).SOPInstanceUID
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE
    item.ReferencedSOPInstanceUID = ct_uid
    mr = _planted_file(
        tmp_path,
        "MR_small.dcm",
        m,
        PatientID="PHIMARK-SAME-PATIENT",
        ReferencedImageSequence=Sequence([item]),
    )
    ct_out, mr_out = tmp_path / "ct.dcm", tmp_path / "mr.dcm"
    # Two deidentifier instances with one secret: as two sessions of the app.
    ct_result = deidentify_file(ct, ct_out, DicomDeidentifier(SECRET))
    mr_result = deidentify_file(mr, mr_out, DicomDeidentifier(SECRET))

    new_ct = pydicom.dcmread(ct_out)
    new_mr = pydicom.dcmread(mr_out)
    reference = new_mr.ReferencedImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == new_ct.SOPInstanceUID != ct_uid
    assert reference.ReferencedSOPClassUID == CT_IMAGE
    assert ct_result.patient_pseudonym == mr_result.patient_pseudonym == new_mr.PatientID
    assert b"PHIMARK-SAME-PATIENT" not in ct_out.read_bytes() + mr_out.read_bytes()


def test_pseudonyms_and_uids_depend_on_the_secret_and_the_patient() -> None:
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    first = DicomDeidentifier(SECRET).deidentify(ds)
    again = DicomDeidentifier(SECRET).deidentify(ds)
    other_secret = DicomDeidentifier(b"another-secret-of-32-bytes-long!").deidentify(ds)
    other_patient = DicomDeidentifier(SECRET).deidentify(ds, patient_key="someone else")
    assert first.patient_pseudonym == again.patient_pseudonym
    assert first.dataset.StudyInstanceUID == again.dataset.StudyInstanceUID
    assert other_secret.patient_pseudonym != first.patient_pseudonym
    assert other_secret.dataset.StudyInstanceUID != first.dataset.StudyInstanceUID
    assert other_patient.patient_pseudonym != first.patient_pseudonym
    assert ds.PatientID == "1CT1"  # the input dataset is left as it was
    assert UID(first.dataset.StudyInstanceUID).is_valid


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        DicomDeidentifier(b"short")


def test_a_file_without_patient_id_needs_a_patient_key() -> None:
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    ds.PatientID = ""
    with pytest.raises(InputError, match="no Patient ID"):
        DicomDeidentifier(SECRET).deidentify(ds)
    result = DicomDeidentifier(SECRET).deidentify(ds, patient_key="MRN-42")
    assert result.patient_pseudonym == DicomDeidentifier(SECRET).pseudonym("MRN-42")


# -- dates ----------------------------------------------------------------------------------


def _shifted(value: str, days: int) -> str:
    day = dt.datetime.strptime(value[:8], "%Y%m%d").date() + dt.timedelta(days=days)
    return day.strftime("%Y%m%d") + value[8:]


def test_default_profile_removes_or_replaces_dates() -> None:
    ds = pydicom.dcmread(_testfile("waveform_ecg.dcm"))
    out = DicomDeidentifier(SECRET).deidentify(ds).dataset
    assert out["StudyDate"].is_empty  # Z
    assert out.AcquisitionDateTime == "19000101000000"  # X/Z/D -> dummy (Type 1 in ECG)
    assert ds.AcquisitionDateTime not in str(out)


def test_modified_dates_option_shifts_every_date_by_the_same_days() -> None:
    ds = pydicom.dcmread(_testfile("waveform_ecg.dcm"))
    ds.DateOfSecondaryCapture = "20020101"  # a date Table E.1-1 does not list
    deid = DicomDeidentifier(SECRET)
    days = deid.date_shift_for("642341")
    assert days == deid.date_shift_for("642341") and -3679 <= days <= -30
    result = deid.deidentify(ds, shift_days=days)
    out = result.dataset
    assert result.date_shift_days == days
    assert out.AcquisitionDateTime == _shifted(ds.AcquisitionDateTime, days)
    assert out.StudyDate == _shifted(ds.StudyDate, days)
    assert out.ContentDate == _shifted(ds.ContentDate, days)
    assert out.DateOfSecondaryCapture == _shifted("20020101", days)
    assert out.ContentTime == ds.ContentTime  # whole days leave the time of day
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]
    assert out["PatientBirthDate"].is_empty  # no date option covers the birth date


def test_full_dates_option_keeps_dates() -> None:
    ds = pydicom.dcmread(_testfile("waveform_ecg.dcm"))
    out = DicomDeidentifier(SECRET, keep_dates=True).deidentify(ds).dataset
    assert out.AcquisitionDateTime == ds.AcquisitionDateTime
    assert out.StudyDate == ds.StudyDate
    assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100", "113106"]
    with pytest.raises(ValueError, match="pick one"):
        DicomDeidentifier(SECRET, keep_dates=True).deidentify(ds, shift_days=-3)


# -- burned-in annotation -------------------------------------------------------------------


def test_secondary_capture_without_the_flag_is_refused_unless_overridden(
    tmp_path: Path,
) -> None:
    src = _testfile("SC_rgb_jpeg_dcmtk.dcm")
    with pytest.raises(InputError, match="burned-in annotation") as info:
        deidentify_file(src, tmp_path / "out.dcm", DicomDeidentifier(SECRET))
    assert "SC_rgb_jpeg_dcmtk.dcm" in str(info.value)
    assert "pixel cleaning" in str(info.value)
    assert not (tmp_path / "out.dcm").exists()
    result = deidentify_file(
        src, tmp_path / "out.dcm", DicomDeidentifier(SECRET), refuse_burned_in=False
    )
    assert result.burned_in_annotation is True


def test_the_burned_in_flag_decides_when_present() -> None:
    deid = DicomDeidentifier(SECRET)
    ct = pydicom.dcmread(_testfile("CT_small.dcm"))
    assert deid.deidentify(ct).burned_in_annotation is False
    ct.BurnedInAnnotation = "YES"
    with pytest.raises(InputError, match="declares burned-in annotation"):
        deid.deidentify(ct)
    sc = pydicom.dcmread(_testfile("SC_rgb_jpeg_dcmtk.dcm"))
    sc.BurnedInAnnotation = "NO"
    assert deid.deidentify(sc).burned_in_annotation is False


def test_whole_slide_tiles_without_the_flag_pass_but_label_images_do_not() -> None:
    deid = DicomDeidentifier(SECRET)
    wsi = pydicom.dcmread(_testfile("CT_small.dcm"))
    wsi.SOPClassUID = VL_WHOLE_SLIDE_MICROSCOPY
    wsi.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    assert deid.deidentify(wsi).burned_in_annotation is False
    wsi.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
    with pytest.raises(InputError, match="slide label"):
        deid.deidentify(wsi)


def test_sequences_nested_too_deep_are_refused() -> None:
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    inner = ds
    for _ in range(20):
        item = Dataset()
        inner.ProcedureCodeSequence = Sequence([item])
        inner = item
    with pytest.raises(InputError, match="deeper than 12 levels"):
        DicomDeidentifier(SECRET).deidentify(ds)


def test_a_file_that_is_not_dicom_gives_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("Patient: John Smith\n")
    with pytest.raises(InputError, match=r"notes\.txt is not a DICOM file"):
        deidentify_file(bad, tmp_path / "out.dcm", DicomDeidentifier(SECRET))
