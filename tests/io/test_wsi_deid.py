"""De-identified slide copies: no label or macro, no identifying metadata, the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from clinic_app.domain.errors import InputError
from clinic_app.io.deid.wsi import (
    copy_dicom_wsi_without_labels,
    deidentified_slide_copy,
    svs_safe_description,
)
from clinic_app.io.slides import open_slide
from tests.io.test_slides import tissue_like_image, write_dicom_wsi, write_pyramid_tiff

IDENTIFYING = (
    b"SS1234",
    b"Smith_John",
    b"01/02/24",
    b"10:11:12",
    b"jdoe",
    b"PT-998877",
    b"Dr Who",
    b"scanner-pc-7",
    b"case 4711",
    b"2024:01:02 10:11:12",
    b"ScanSoft 9.1 SN 5555",
)


def write_fake_svs(path: Path, image: np.ndarray) -> None:
    """An Aperio-style TIFF: JPEG-tiled baseline, thumbnail, label and macro, vendor text."""
    height, width = image.shape[:2]
    header = (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        "(128x128) JPEG/RGB Q=70"
    )
    fields = (
        "|AppMag = 40|MPP = 0.2520|ScanScope ID = SS1234|Filename = Smith_John|Date = 01/02/24"
        "|Time = 10:11:12|User = jdoe|Barcode = PT-998877"
    )
    identifying = [
        (315, "s", 0, "Dr Who", True),  # Artist
        (316, "s", 0, "scanner-pc-7", True),  # HostComputer
        (269, "s", 0, "case 4711", True),  # DocumentName
    ]
    with tifffile.TiffWriter(path) as writer:
        writer.write(
            image,
            tile=(128, 128),
            compression="jpeg",
            photometric="rgb",
            description=header + fields,
            datetime="2024:01:02 10:11:12",
            software="ScanSoft 9.1 SN 5555",
            metadata=None,
            extratags=identifying,
        )
        writer.write(
            image[::4, ::4],
            compression="jpeg",
            photometric="rgb",
            rowsperstrip=16,
            description=f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> "
            f"{width // 4}x{height // 4} - " + fields,
            metadata=None,
        )
        writer.write(
            np.full((100, 200, 3), 20, np.uint8),
            description="Aperio Image Library v12.0.15\nlabel 200x100",
            subfiletype=1,
            photometric="rgb",
            metadata=None,
        )
        writer.write(
            np.full((100, 300, 3), 60, np.uint8),
            description="Aperio Image Library v12.0.15\nmacro 300x100",
            subfiletype=9,
            photometric="rgb",
            metadata=None,
        )


def _raw_tiles(path: Path) -> list[bytes]:
    with tifffile.TiffFile(path) as tif, path.open("rb") as handle:
        page = tif.series[0].levels[0].keyframe
        tiles = []
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            handle.seek(offset)
            tiles.append(handle.read(count))
        return tiles


def test_svs_copy_drops_label_macro_and_identifying_text(tmp_path: Path) -> None:
    image = tissue_like_image(384, 512)
    source = tmp_path / "Smith_John.svs"
    write_fake_svs(source, image)
    original = open_slide(source)
    assert set(original.info.associated_images) == {"label", "macro", "thumbnail"}
    copy = deidentified_slide_copy(source, tmp_path / "out")
    assert copy.name == "slide.svs"
    data = copy.read_bytes()
    assert [value for value in IDENTIFYING if value in data] == []
    assert [value for value in IDENTIFYING if value in source.read_bytes()] == list(IDENTIFYING)
    result = open_slide(copy)
    try:
        assert result.info.kind == "svs"
        assert result.info.associated_images == ("thumbnail",)
        assert result.info.microns_per_pixel == pytest.approx((0.252, 0.252))
        assert result.info.objective_power == 40
        for args in ((0, 0, 0, 512, 384), (0, 100, 50, 200, 300)):
            assert np.array_equal(result.read_region(*args), original.read_region(*args))
        assert np.array_equal(
            result.associated_image("thumbnail"), original.associated_image("thumbnail")
        )
        with pytest.raises(InputError):
            result.associated_image("label")
    finally:
        result.close()
        original.close()
    assert _raw_tiles(copy) == _raw_tiles(source)  # compressed tiles copied, not re-encoded
    with tifffile.TiffFile(copy) as tif:
        assert len(tif.pages) == 2
        for page in tif.pages:
            assert {"Artist", "HostComputer", "DocumentName", "DateTime", "Software"}.isdisjoint(
                page.tags.keys()
            )


def test_generic_pyramid_copy_is_bit_for_bit(tmp_path: Path) -> None:
    image = tissue_like_image(300, 420)
    source = tmp_path / "pyramid.tif"
    write_pyramid_tiff(source, image)
    copy = deidentified_slide_copy(source, tmp_path / "out")
    assert copy.name == "slide.tiff"
    original, result = open_slide(source), open_slide(copy)
    assert result.info.levels == original.info.levels
    assert result.info.microns_per_pixel == pytest.approx(original.info.microns_per_pixel)
    for level, size in enumerate(original.info.levels):
        region = (level, 0, 0, size.width, size.height)
        assert np.array_equal(result.read_region(*region), original.read_region(*region))
    assert _raw_tiles(copy) == _raw_tiles(source)


def test_description_allow_list() -> None:
    text = svs_safe_description(
        "Aperio Image Library v11.2.1 \r\n46000x32914 [42673,5576 2220x2967] (240x240) "
        "JPEG/RGB Q=30|AppMag = 20|ScanScope ID = CPAPERIOCS|Filename = CMU-1|MPP = 0.4990"
        "|User = b414003d|Date = 12/29/09|Barcode = 12345"
    )
    assert text == (
        "Aperio Image Library v11.2.1\r\n46000x32914 [42673,5576 2220x2967] (240x240) "
        "JPEG/RGB Q=30|AppMag = 20|MPP = 0.4990"
    )
    assert svs_safe_description("Aperio Patient Jane Doe|MPP = 0.5").startswith(
        "Aperio Image Library (de-identified)|MPP"
    )


def test_non_slide_inputs_are_refused(tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("hello")
    with pytest.raises(InputError, match=r"note\.txt: not a TIFF or SVS slide"):
        deidentified_slide_copy(note, tmp_path / "out")
    paths = write_dicom_wsi(tmp_path / "wsi", tissue_like_image(150, 200))
    with pytest.raises(InputError, match="copy_dicom_wsi_without_labels"):
        deidentified_slide_copy(paths[0], tmp_path / "out")


def test_dicom_wsi_copy_leaves_out_label_and_overview(tmp_path: Path) -> None:
    image = tissue_like_image(150, 200, seed=5)
    write_dicom_wsi(tmp_path / "wsi", image)
    (tmp_path / "wsi" / "README.txt").write_text("scanner export")
    result = copy_dicom_wsi_without_labels(tmp_path / "wsi", tmp_path / "out")
    assert sorted(p.name for p in result.dropped) == ["label.dcm", "overview.dcm"]
    assert sorted(p.name for p in result.copied) == ["level0.dcm", "level1.dcm"]
    assert [p.name for p in result.ignored] == ["README.txt"]
    assert sorted(p.name for p in result.folder.iterdir()) == [
        "instance-0001.dcm",
        "instance-0002.dcm",
    ]
    slide = open_slide(result.folder)
    try:
        assert slide.info.associated_images == ()
        assert np.array_equal(slide.read_region(0, 0, 0, 200, 150), image)
    finally:
        slide.close()


@pytest.mark.data
def test_real_svs_copy(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "pathology" / "slides" / "cmu-1-small-region.svs"
    with tifffile.TiffFile(source) as tif:
        description = tif.pages[0].description
    for value in ("CPAPERIOCS", "CMU-1", "12/29/09", "09:59:15", "b414003d-95c6", "1004486"):
        assert value in description
    copy = deidentified_slide_copy(source, tmp_path)
    data = copy.read_bytes()
    for value in (b"CPAPERIOCS", b"CMU-1", b"12/29/09", b"09:59:15", b"b414003d-95c6", b"1004486"):
        assert value not in data
    original, result = open_slide(source), open_slide(copy)
    try:
        assert result.info.associated_images == ("thumbnail",)
        assert result.info.microns_per_pixel == original.info.microns_per_pixel
        assert result.info.objective_power == 20
        rng = np.random.default_rng(0)
        for _ in range(10):
            x, y = int(rng.integers(0, 2000)), int(rng.integers(0, 2700))
            assert np.array_equal(
                result.read_region(0, x, y, 300, 300), original.read_region(0, x, y, 300, 300)
            )
        assert np.array_equal(result.thumbnail(512), original.thumbnail(512))
    finally:
        original.close()
        result.close()
    assert _raw_tiles(copy) == _raw_tiles(source)
