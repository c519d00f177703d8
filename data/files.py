"""Reading raw bytes from a dataset file, gzipped or not, with errors that name the file."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from data.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
REDOWNLOAD = "download it again (or restore it from the package that installed it)"


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is a gzip stream (sniffed, whatever its name)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from error
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        # EOFError: the stream stops early (a partial download); OSError/zlib.error: damaged bytes.
        raise DataError(f"{path} is not a valid gzip file ({error}): it is truncated or corrupted; "
                        f"{REDOWNLOAD}") from error
