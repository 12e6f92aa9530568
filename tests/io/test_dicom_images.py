"""DICOM pixel decoding: every file shipped with pydicom and pydicom-data, photometric
conversions checked against reference decodes, window/level, and hardening against bad files.

The corpus is enumerated from the installed packages only (pydicom's ``test_files`` folder and
the pydicom-data wheel); ``get_testdata_files`` is not used because it also tries to download
the files pydicom lists online, and the tests never touch the network.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.data.data_manager import external_data_sources
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filereader import read_file_meta_info
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEGLossless,
    JPEGLosslessSV1,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from clinic_app.domain.errors import InputError
from clinic_app.domain.pathology import WindowLevel
from clinic_app.io.dicom_images import (
    DicomImage,
    apply_window,
    read_dicom_image,
    to_display_rgb,
    window_from_range,
)
from clinic_app.io.limits import ReadLimits

PYDICOM_FILES = Path(pydicom.data.DATA_ROOT) / "test_files"


def _corpus() -> dict[str, Path]:
    """Test id -> path for every file pydicom and the pydicom-data wheel ship (local only)."""
    files = {
        str(p.relative_to(PYDICOM_FILES)): p
        for p in sorted(PYDICOM_FILES.rglob("*"))
        if p.is_file() and p.suffix != ".py"
    }
    source = external_data_sources().get("pydicom-data")
    if source is not None:
        for found in sorted(source.get_paths("**/*", 0)):
            files[f"pydicom-data/{Path(found).name}"] = Path(found)
    return files


CORPUS = _corpus()
BY_NAME = {path.name: path for path in CORPUS.values()}

#: Files that are broken on purpose (or from the field): each must give a clear InputError.
EXPECTED_MALFORMED = {
    "MR_truncated.dcm": "truncated pixel data: 8,130 of 8,192 bytes",
    "JPEG2000-embedded-sequence-delimiter.dcm": "could not be decoded",  # corrupt J2K stream
    "badVR.dcm": "Number of Frames (0028,0008) is not a whole number ('1A')",
    "meta_missing_tsyntax.dcm": "missing Rows (0028,0010)",  # Pixel Data without image module
    "nested_priv_SQ.dcm": "missing Rows (0028,0010)",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "no Pixel Data",  # ends before Pixel Data
}
NO_IMAGE_REASONS = ("has no image (no Pixel Data element)", "is not a DICOM file")


def _has_pixel_data(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, defer_size=1024)
    except Exception:
        return False
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _declared_shape(path: Path) -> tuple[int, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True, defer_size=1024)
    frames = int(ds.get("NumberOfFrames") or 1)
    shape: tuple[int, ...] = (int(ds.Rows), int(ds.Columns))
    if int(ds.SamplesPerPixel) == 3 or ds.PhotometricInterpretation == "PALETTE COLOR":
        shape += (3,)
    return (frames, *shape) if frames > 1 else shape


@pytest.mark.parametrize("file_id", sorted(CORPUS))
def test_every_corpus_file_decodes_or_fails_clearly(file_id: str) -> None:
    path = CORPUS[file_id]
    if path.name in EXPECTED_MALFORMED:
        with pytest.raises(InputError) as caught:
            read_dicom_image(path)
        assert caught.value.message.startswith(path.name)
        assert EXPECTED_MALFORMED[path.name] in caught.value.message
        return
    if not _has_pixel_data(path):
        with pytest.raises(InputError) as caught:
            read_dicom_image(path)
        assert any(reason in caught.value.message for reason in NO_IMAGE_REASONS)
        return
    image = read_dicom_image(path)  # a file that should decode must decode (plugins present)
    assert image.pixels.shape == _declared_shape(path)
    if image.grayscale:
        assert image.pixels.dtype == np.float32
        assert np.isfinite(image.pixels).all()
        assert image.window is not None and image.window.width >= 1
    else:
        assert image.pixels.dtype == np.uint8
    display = to_display_rgb(image)
    assert display.dtype == np.uint8
    assert display.shape == (image.rows, image.columns, 3)


REQUIRED_SYNTAXES = {
    "Implicit VR Little Endian",
    "Explicit VR Little Endian",
    "Explicit VR Big Endian",
    "Deflated Explicit VR Little Endian",
    "RLE Lossless",
    "JPEG Baseline (Process 1)",
    "JPEG Extended (Process 2 and 4)",
    "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
    "JPEG-LS Lossless Image Compression",
    "JPEG-LS Lossy (Near-Lossless) Image Compression",
    "JPEG 2000 Image Compression (Lossless Only)",
    "JPEG 2000 Image Compression",
}


def test_corpus_holds_decodable_files_of_every_common_transfer_syntax() -> None:
    seen: set[str] = set()
    for path in CORPUS.values():
        if path.name in EXPECTED_MALFORMED or not _has_pixel_data(path):
            continue
        try:
            seen.add(str(read_file_meta_info(path).TransferSyntaxUID.name))
        except Exception:
            continue
    # JPEG Lossless Process 14 with predictors other than 1 and HTJ2K are not in the corpus:
    # the tests below write such files with imagecodecs.
    assert seen >= REQUIRED_SYNTAXES, REQUIRED_SYNTAXES - seen


def test_pydicom_data_wheel_is_installed_locally() -> None:
    source = external_data_sources().get("pydicom-data")
    assert source is not None, "pydicom-data (a pinned dependency) is not installed"
    paths = [Path(p) for p in source.get_paths("**/*", 0)]
    assert len(paths) >= 60
    assert all(p.is_file() for p in paths)
    assert sum(1 for file_id in CORPUS if file_id.startswith("pydicom-data/")) == len(paths)


# -------------------------------------------------------------------------------- photometric


def _pixels(name: str) -> np.ndarray:
    return read_dicom_image(BY_NAME[name]).pixels.astype(np.float64)


@pytest.mark.parametrize(
    ("name", "max_mean_abs_diff"),
    [
        ("SC_rgb_expb.dcm", 0.0),  # big endian
        ("SC_rgb_rle.dcm", 0.0),
        ("SC_rgb_16bit.dcm", 0.0),  # 16-bit RGB scaled to 8 bits
        ("SC_rgb_32bit.dcm", 0.0),
        ("SC_rgb_jpeg_gdcm.dcm", 0.0),  # JPEG lossless
        ("SC_rgb_gdcm_KY.dcm", 0.0),  # JPEG 2000 lossless
        ("SC_ybr_full_uncompressed.dcm", 1.0),  # YBR_FULL, converted to RGB
        ("SC_ybr_full_422_uncompressed.dcm", 1.0),  # YBR_FULL_422 subsampled
        ("SC_rgb_dcmtk_+eb+cr.dcm", 1.0),  # JPEG baseline stored as RGB
        ("SC_rgb_dcmtk_+eb+cy+s4.dcm", 1.0),  # JPEG baseline YBR_FULL
        ("SC_rgb_dcmtk_+eb+cy+s2.dcm", 1.0),  # JPEG baseline YBR_FULL_422
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", 3.5),  # lower quality
        ("SC_rgb_jpeg_lossy_gdcm.dcm", 3.5),
        ("SC_rgb_jls_lossy_line.dcm", 1.0),  # JPEG-LS near-lossless
    ],
)
def test_colour_siblings_agree_with_the_rgb_original(name: str, max_mean_abs_diff: float) -> None:
    reference = _pixels("SC_rgb.dcm")
    decoded = _pixels(name)
    assert decoded.shape == reference.shape
    assert np.abs(decoded - reference).mean() <= max_mean_abs_diff
    # The ten colour bands of the test pattern survive (red, green, blue, greys...).
    for row in range(5, 100, 10):
        assert np.abs(decoded[row, 50] - reference[row, 50]).max() <= 16


@pytest.mark.parametrize(
    ("compressed", "decoded_by_dcmtk"),
    [
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_ebcynp_dcmd.dcm"),
        ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_ebcyn1_dcmd.dcm"),
        ("SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_dcmtk_ebcys2_dcmd.dcm"),
        ("SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_dcmtk_ebcr_dcmd.dcm"),
        ("SC_rgb_jpeg.dcm", "SC_rgb_jpeg_dcmd.dcm"),
    ],
)
def test_jpeg_colour_matches_the_reference_decoder(compressed: str, decoded_by_dcmtk: str) -> None:
    assert np.abs(_pixels(compressed) - _pixels(decoded_by_dcmtk)).max() <= 1


def test_jpeg2000_colour_matches_uncompressed() -> None:
    reference = _pixels("US1_UNCR.dcm")
    assert np.array_equal(_pixels("US1_J2KR.dcm"), reference)  # YBR_RCT, lossless
    assert np.abs(_pixels("US1_J2KI.dcm") - reference).mean() < 3.0  # YBR_ICT, lossy


def test_twelve_bit_jpeg_extended_decodes_through_imagecodecs() -> None:
    fixed = read_dicom_image(BY_NAME["JPGExtended.dcm"])
    assert fixed.transfer_syntax == "JPEG Extended (Process 2 and 4)"
    assert fixed.pixels.shape == (1024, 256)
    assert fixed.pixels[420, 140] == 244  # pydicom's reference value for this file
    # JPEG-lossy.dcm holds the same codestream with out-of-range SOS fields (NEMA NM1_JPLY).
    lossy = read_dicom_image(BY_NAME["JPEG-lossy.dcm"])
    assert np.abs(lossy.pixels - fixed.pixels).max() <= 1


def test_grayscale_siblings_agree_across_syntaxes() -> None:
    reference = _pixels("MR_small.dcm")
    for name in (
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ):
        assert np.array_equal(_pixels(name), reference), name
    assert np.array_equal(_pixels("JPEG2000.dcm"), _pixels("JPEG2000_UNC.dcm"))


def test_palette_colour_matches_pydicom_lut() -> None:
    path = BY_NAME["examples_palette.dcm"]
    ds = pydicom.dcmread(path)
    expected = apply_color_lut(ds.pixel_array, ds)
    if expected.dtype != np.uint8:
        expected = np.rint(expected / 257.0).astype(np.uint8)
    image = read_dicom_image(path)
    assert not image.grayscale and image.window is None
    assert np.array_equal(image.pixels, expected)
    assert len(np.unique(image.pixels.reshape(-1, 3), axis=0)) > 10


def test_palette_file_without_preamble_is_read_with_inferred_syntax() -> None:
    image = read_dicom_image(BY_NAME["OT-PAL-8-face.dcm"])
    assert image.transfer_syntax == "Implicit VR Little Endian"
    assert image.pixels.shape == (480, 640, 3)
    assert image.pixels.std() > 10


def _write(
    path: Path,
    array: np.ndarray,
    photometric: str,
    *,
    bits_stored: int | None = None,
    **attributes: object,
) -> Path:
    """A real DICOM file written with pydicom (secondary capture)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.set_pixel_data(array, photometric, bits_stored or array.dtype.itemsize * 8)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome1_is_shown_inverted(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 256, dtype=np.uint16) * 16, (8, 1))
    mono1 = read_dicom_image(_write(tmp_path / "m1.dcm", ramp, "MONOCHROME1", bits_stored=12))
    mono2 = read_dicom_image(_write(tmp_path / "m2.dcm", ramp, "MONOCHROME2", bits_stored=12))
    assert mono1.invert and not mono2.invert
    assert np.array_equal(mono1.pixels, mono2.pixels)  # values kept, only the display inverts
    shown1, shown2 = to_display_rgb(mono1), to_display_rgb(mono2)
    assert shown1[0, 0, 0] == 255 and shown1[0, -1, 0] == 0  # lowest value is white
    assert shown2[0, 0, 0] == 0 and shown2[0, -1, 0] == 255
    assert np.array_equal(shown1, 255 - shown2)


def test_real_monochrome1_radiograph_displays_inverted() -> None:
    image = read_dicom_image(BY_NAME["RG1_UNCI.dcm"])
    assert image.photometric == "MONOCHROME1" and image.invert
    shown = to_display_rgb(image)[..., 0]
    darkest_value = image.pixels <= np.percentile(image.pixels, 1)
    brightest_value = image.pixels >= np.percentile(image.pixels, 99)
    assert shown[darkest_value].mean() > shown[brightest_value].mean()


def test_rescale_slope_and_intercept_are_applied() -> None:
    path = BY_NAME["CT_small.dcm"]
    ds = pydicom.dcmread(path)
    image = read_dicom_image(path)
    assert np.allclose(image.pixels, apply_modality_lut(ds.pixel_array, ds))
    assert image.pixels.min() < 0  # Hounsfield units (intercept -1024)


def test_window_comes_from_the_file_else_from_the_data(tmp_path: Path) -> None:
    assert read_dicom_image(BY_NAME["MR_small.dcm"]).window == WindowLevel(600.0, 1600.0)
    values = np.array([[100, 200], [300, 400]], dtype=np.uint16)
    image = read_dicom_image(_write(tmp_path / "nowin.dcm", values, "MONOCHROME2"))
    assert image.window is not None
    shown = to_display_rgb(image)[..., 0]
    assert shown[0, 0] == 0 and shown[1, 1] == 255
    explicit = to_display_rgb(image, window=WindowLevel(center=250.5, width=1.0))
    assert explicit[..., 0].tolist() == [[0, 0], [255, 255]]


def test_apply_window_follows_the_dicom_linear_function_at_its_edges() -> None:
    window = WindowLevel(center=40.0, width=400.0)  # edges at -160 and 239
    values = np.array([-1000.0, -160.0, -159.0, 39.5, 238.0, 239.0, 239.5, 3000.0])
    expected = [
        0,  # below the window
        0,  # x <= c - 0.5 - (w-1)/2
        round(((-159.0 - 39.5) / 399.0 + 0.5) * 255),
        128,  # centre: 127.5 rounds half to even
        round(((238.0 - 39.5) / 399.0 + 0.5) * 255),
        255,  # top of the linear segment: ((239 - 39.5)/399 + 0.5) * 255 == 255
        255,  # x > c - 0.5 + (w-1)/2
        255,
    ]
    assert apply_window(values, window).tolist() == expected
    assert apply_window(values, window, invert=True).tolist() == [255 - v for v in expected]
    narrow = WindowLevel(center=10.0, width=1.0)  # threshold at c - 0.5
    assert apply_window(np.array([9.0, 9.5, 9.6, 11.0]), narrow).tolist() == [0, 0, 255, 255]
    assert apply_window(np.array([np.nan, 1.0]), WindowLevel(0.5, 2.0)).tolist()[0] == 0


def test_window_from_range_maps_min_to_black_and_max_to_white() -> None:
    values = np.array([-1024.0, 0.0, 3071.0], dtype=np.float32)
    assert apply_window(values, window_from_range(values)).tolist()[::2] == [0, 255]


def test_bits_allocated_one_and_thirty_two() -> None:
    binary = read_dicom_image(BY_NAME["liver_1frame.dcm"])
    assert set(np.unique(binary.pixels).tolist()) <= {0.0, 1.0}
    assert to_display_rgb(binary).max() == 255
    dose = read_dicom_image(BY_NAME["rtdose.dcm"])
    assert dose.frames == 15 and dose.pixels.shape == (15, 10, 10)
    ds = pydicom.dcmread(BY_NAME["rtdose.dcm"])
    assert np.allclose(dose.pixels, ds.pixel_array.astype(np.float32))


def _write_encapsulated(path: Path, values: np.ndarray, syntax: str, frame: bytes) -> Path:
    """A 12-bit grayscale DICOM file around one compressed frame made by a real encoder."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


TWELVE_BIT = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 7) % 4096


def test_htj2k_decodes(tmp_path: Path) -> None:
    imagecodecs = pytest.importorskip("imagecodecs")
    frame = imagecodecs.htj2k_encode(TWELVE_BIT)  # OpenJPH
    image = read_dicom_image(
        _write_encapsulated(tmp_path / "h.dcm", TWELVE_BIT, HTJ2KLossless, frame)
    )
    assert image.transfer_syntax == "High-Throughput JPEG 2000 Image Compression (Lossless Only)"
    assert np.array_equal(image.pixels, TWELVE_BIT.astype(np.float32))


@pytest.mark.parametrize("predictor", [5, 7])
def test_jpeg_lossless_process_14_decodes(tmp_path: Path, predictor: int) -> None:
    imagecodecs = pytest.importorskip("imagecodecs")
    frame = imagecodecs.jpeg8_encode(  # libjpeg-turbo lossless (SOF3)
        TWELVE_BIT, lossless=True, predictor=predictor, bitspersample=12
    )
    path = _write_encapsulated(tmp_path / "l.dcm", TWELVE_BIT, JPEGLossless, frame)
    image = read_dicom_image(path)
    assert image.transfer_syntax == "JPEG Lossless, Non-Hierarchical (Process 14)"
    assert np.array_equal(image.pixels, TWELVE_BIT.astype(np.float32))


def test_one_frame_of_a_multi_frame_file() -> None:
    path = BY_NAME["SC_rgb_2frame.dcm"]
    both = read_dicom_image(path)
    second = read_dicom_image(path, frame=1)
    assert both.frames == second.frames == 2
    assert both.pixels.shape == (2, 100, 100, 3) and second.pixels.shape == (100, 100, 3)
    assert np.array_equal(second.pixels, both.pixels[1])
    assert np.array_equal(to_display_rgb(both, frame=1), second.pixels)
    with pytest.raises(InputError, match="frame 3 does not exist"):
        read_dicom_image(path, frame=2)
    with pytest.raises(InputError, match="frame 2 does not exist"):
        to_display_rgb(second, frame=1)


def test_result_is_picklable_for_the_sandbox() -> None:
    image = read_dicom_image(BY_NAME["CT_small.dcm"])
    copy = pickle.loads(pickle.dumps(image))
    assert isinstance(copy, DicomImage)
    assert np.array_equal(copy.pixels, image.pixels) and copy.window == image.window


def test_metadata_is_small_and_not_identifying() -> None:
    path = BY_NAME["CT_small.dcm"]
    ds = pydicom.dcmread(path)
    image = read_dicom_image(path)
    assert image.modality == "CT"
    assert image.sop_class == "CT Image Storage"
    assert image.metadata["Modality"] == "CT"
    identifying = {"PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyTime"}
    assert not identifying & set(image.metadata)
    assert not any(str(ds.PatientName) in value for value in image.metadata.values())
    assert not any(str(ds.PatientID) in value for value in image.metadata.values())


def test_microns_per_pixel_from_pixel_spacing(tmp_path: Path) -> None:
    values = np.zeros((4, 4), dtype=np.uint8)
    path = _write(tmp_path / "px.dcm", values, "MONOCHROME2", PixelSpacing=[0.0005, 0.00025])
    assert read_dicom_image(path).microns_per_pixel == pytest.approx((0.25, 0.5))


# -------------------------------------------------------------------------------- hardening


def test_truncated_pixel_data_is_reported_with_byte_counts(tmp_path: Path) -> None:
    path = _write(tmp_path / "cut.dcm", np.ones((64, 64), dtype=np.uint16), "MONOCHROME2")
    data = path.read_bytes()
    path.write_bytes(data[:-62])
    with pytest.raises(InputError) as caught:
        read_dicom_image(path)
    assert caught.value.message == "cut.dcm: truncated pixel data: 8,130 of 8,192 bytes."


def test_truncated_large_pixel_data_is_caught_before_it_is_read(tmp_path: Path) -> None:
    # Over the deferred-read threshold: the check measures the file, not a loaded value.
    path = _write(tmp_path / "big.dcm", np.ones((1536, 1536), dtype=np.uint16), "MONOCHROME2")
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(InputError, match=r"truncated pixel data: 4,717,592 of 4,718,592 bytes"):
        read_dicom_image(path)


def test_pixel_and_frame_limits_are_checked_before_decoding() -> None:
    path = BY_NAME["SC_rgb_2frame.dcm"]
    with pytest.raises(InputError, match=r"60,000 pixel samples .* limit of 50,000"):
        read_dicom_image(path, ReadLimits(max_decoded_pixels=50_000))
    with pytest.raises(InputError, match="2 frames, more than the limit of 1"):
        read_dicom_image(path, ReadLimits(max_frames=1))
    assert read_dicom_image(path, ReadLimits(max_decoded_pixels=30_000), frame=0).frames == 2


def test_deeply_nested_sequences_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "deep.dcm", np.zeros((2, 2), dtype=np.uint8), "MONOCHROME2")
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.CodeValue = "X"
    for _ in range(5):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    ds.ContentSequence = item.ContentSequence
    ds.save_as(path, enforce_file_format=True)
    assert read_dicom_image(path).pixels.shape == (2, 2)
    with pytest.raises(InputError, match="nested more than 3 levels deep"):
        read_dicom_image(path, ReadLimits(max_sequence_depth=3))


def test_unknown_transfer_syntax_names_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "odd.dcm", np.zeros((2, 2), dtype=np.uint8), "MONOCHROME2")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(InputError, match=r"odd.dcm uses transfer syntax 'MPEG2 .*cannot decode"):
        read_dicom_image(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello, this is a note\n" * 20, "is not a DICOM file"),
        (b"", "is not a DICOM file"),
        (b"\x00" * 128 + b"DICM" + b"\xff" * 64, "has no image"),
    ],
)
def test_non_dicom_bytes_give_one_clear_error(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "thing.dcm"
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as caught:
        read_dicom_image(path)
    assert caught.value.message.startswith("thing.dcm")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_dicom_image(tmp_path / "absent.dcm")


def test_signed_jpeg_lossless_is_sign_extended(tmp_path: Path) -> None:
    imagecodecs = pytest.importorskip("imagecodecs")
    signed = (TWELVE_BIT.astype(np.int16) - 2048).astype(np.int16)
    patterns = (signed.astype(np.int32) & 0xFFF).astype(np.uint16)  # 12-bit two's complement
    frame = imagecodecs.jpeg8_encode(patterns, lossless=True, predictor=1, bitspersample=12)
    path = _write_encapsulated(tmp_path / "s.dcm", patterns, JPEGLosslessSV1, frame)
    ds = pydicom.dcmread(path)
    ds.PixelRepresentation = 1
    ds.save_as(path, enforce_file_format=True)
    image = read_dicom_image(path)
    assert image.pixels.min() == -2048
    assert np.array_equal(image.pixels, signed.astype(np.float32))
