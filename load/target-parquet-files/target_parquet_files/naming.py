"""Stream/table names to file names, and back, without ever leaving the output folder."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

SUFFIX = ".parquet"
MAX_FILE_NAME_BYTES = 200
"""Longest accepted final file name; leaves room for the temporary name under the usual 255-byte limit."""


class InvalidStreamNameError(ValueError):
    """A stream whose table name cannot become a file name."""


def file_stem(name: str) -> str:
    """Percent-encode a table name into a file stem: no separators, no leading dot.

    Every byte outside ``[A-Za-z0-9_.~-]`` is encoded (``/`` included), and a leading ``.``
    becomes ``%2E`` so no table yields a hidden, ``.`` or ``..`` name.
    """
    encoded = quote(name, safe="")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded


def table_name(stem: str) -> str:
    """The inverse of :func:`file_stem`."""
    return unquote(stem)


def file_name(name: str, *, stream: str | None = None) -> str:
    """The final file name for a table, refusing names that cannot be stored safely."""
    label = stream if stream is not None else name
    if not name:
        msg = f"Stream {label!r} gives an empty table name; cannot name its Parquet file"
        raise InvalidStreamNameError(msg)
    result = file_stem(name) + SUFFIX
    if len(result.encode()) > MAX_FILE_NAME_BYTES:
        msg = f"Stream {label!r} gives a file name longer than {MAX_FILE_NAME_BYTES} bytes once encoded"
        raise InvalidStreamNameError(msg)
    return result


def output_path(output_dir: str | Path, name: str, *, stream: str | None = None) -> Path:
    """Where a table's file goes: always directly inside ``output_dir``."""
    folder = Path(output_dir)
    path = folder / file_name(name, stream=stream)
    if path.resolve().parent != folder.resolve():
        msg = f"Stream {stream or name!r} would write outside {folder}: {path}"
        raise InvalidStreamNameError(msg)
    return path
