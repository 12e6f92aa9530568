"""Multi-file inputs stored as one file: a WFDB record or a DICOM whole slide in a plain zip.

The case store keeps one content-addressed file per input, but a WFDB record is a header plus
signal and annotation files, and a DICOM whole-slide image is a folder of instances. Both are
kept as an uncompressed zip with a recognisable suffix; reading one unpacks it into a private
temporary folder. Member names are checked, so a crafted archive cannot write outside it.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clinic_app.domain.errors import InputError

WFDB_ARCHIVE_SUFFIX = ".wfdb.zip"
DICOM_WSI_ARCHIVE_SUFFIX = ".dcmwsi.zip"
WFDB_RECORD_NAME = "record"
_MAX_MEMBERS = 10_000


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith((WFDB_ARCHIVE_SUFFIX, DICOM_WSI_ARCHIVE_SUFFIX))


@contextmanager
def private_folder() -> Iterator[Path]:
    """A temporary folder only this user can read, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="clinicfusion-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def extracted_archive(archive: Path) -> Iterator[Path]:
    """The path to read inside an archive: the record's header, or the folder of instances."""
    with private_folder() as folder:
        try:
            with zipfile.ZipFile(archive) as bundle:
                members = bundle.infolist()
                if len(members) > _MAX_MEMBERS:
                    raise InputError(f"{archive.name} holds too many files ({len(members):,}).")
                for member in members:
                    name = member.filename
                    if "/" in name or "\\" in name or name.startswith(".") or not name:
                        raise InputError(f"{archive.name} holds an unexpected file name.")
                    if member.compress_type != zipfile.ZIP_STORED:
                        raise InputError(f"{archive.name} is not an archive ClinicFusion wrote.")
                bundle.extractall(folder)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputError(f"{archive.name} is a damaged archive ({exc}).") from exc
        if archive.name.lower().endswith(WFDB_ARCHIVE_SUFFIX):
            header = folder / f"{WFDB_RECORD_NAME}.hea"
            if not header.is_file():
                raise InputError(f"{archive.name} has no {WFDB_RECORD_NAME}.hea header.")
            yield header
        else:
            yield folder
