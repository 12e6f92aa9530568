"""Open DICOM files so that a damaged length field cannot make pydicom allocate gigabytes.

pydicom reads a value by asking the file for ``length`` bytes, and Python allocates a buffer
of that size before reading: a corrupted 4-byte length of 0xFFFFFF7F asks for 4 GiB from a
300 KB file. ``open_dataset`` hands pydicom a file object that never reads past the end of the
file, so such a value ends in a short read, which pydicom reports and we turn into "damaged".
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from clinic_app.domain.errors import InputError


class BoundedFile(io.RawIOBase):
    """A read-only file whose ``read(n)`` never asks for more than the bytes that remain."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._raw = path.open("rb", buffering=0)  # closed by close()
        self._size = os.fstat(self._raw.fileno()).st_size
        self.name = str(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(0, self._size - self._raw.tell())
        if size is None or size < 0 or size > remaining:
            size = remaining
        chunks = []
        while size > 0:
            chunk = self._raw.read(size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_dataset(path: Path, **options: Any) -> Any:
    """``pydicom.dcmread(path, **options)`` read through a ``BoundedFile``; the values are read
    eagerly (no deferred reads), so the file is closed on return."""
    import pydicom

    if not path.is_file():
        raise InputError(f"{path.name} does not exist or is not a regular file.")
    options.pop("defer_size", None)
    with BoundedFile(path) as handle:
        dataset = pydicom.dcmread(handle, **options)
    dataset.filename = str(path)
    return dataset
