"""Stream/table names to file names, and back, without ever leaving the output folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote, unquote

SUFFIX = ".parquet"
NAME_MAX = 255
"""Bytes in one file name (ext4, xfs, btrfs, tmpfs...): every name the target writes stays within it."""
MAX_STEM_BYTES = 200
"""Longest file stem. Longer encodings are shortened (see `file_stem`); northwind-elt's
`core.day.MAX_NAME_BYTES` is the same number, so both name a table's file alike."""
MAX_FILE_NAME_BYTES = MAX_STEM_BYTES + len(SUFFIX)
"""Longest final file name."""
# The longest name written around a final name: ".{final}.{pid}-{id(sink)}.tmp.merged"
# (a pid has at most 7 digits, an id at most 20).
LONGEST_AROUND_FINAL = len(".") + len(".") + 7 + len("-") + 20 + len(".tmp") + len(".merged")
assert MAX_FILE_NAME_BYTES + LONGEST_AROUND_FINAL <= NAME_MAX
HASH_MARK = "%~"
"""Marks a shortened stem: percent-encoding never writes '%' without two hex digits after it."""


class InvalidStreamNameError(ValueError):
    """A stream whose table name cannot become a file name."""


def _fitted(encoded: str, name: str) -> str:
    """`encoded` if it has at most MAX_STEM_BYTES bytes; else its longest head (never cut inside a
    %XX escape) followed by HASH_MARK and 16 hex digits of the SHA-256 of the table name, so two
    names never share a file."""
    if len(encoded.encode()) <= MAX_STEM_BYTES:
        return encoded
    suffix = HASH_MARK + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = encoded[: MAX_STEM_BYTES - len(suffix)]  # percent-encoded text is ASCII
    escape = head.rfind("%")
    if escape != -1 and escape > len(head) - 3:
        head = head[:escape]
    return head + suffix


def file_stem(name: str) -> str:
    """Percent-encode a table name into a file stem: no separators, no leading dot, at most
    MAX_STEM_BYTES bytes.

    Every byte outside ``[A-Za-z0-9_.~-]`` is encoded (``/`` included), and a leading ``.``
    becomes ``%2E`` so no table yields a hidden, ``.`` or ``..`` name. An encoding longer than
    MAX_STEM_BYTES is shortened with a hash of the name (`_fitted`); the table's real name
    travels in the stream, not in the file name.
    """
    encoded = quote(name, safe="")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return _fitted(encoded, name)


def table_name(stem: str) -> str:
    """The inverse of :func:`file_stem`, for a stem that was not shortened (no HASH_MARK)."""
    return unquote(stem)


def file_name(name: str, *, stream: str | None = None) -> str:
    """The final file name for a table; only an empty name is refused."""
    label = stream if stream is not None else name
    if not name:
        msg = f"Stream {label!r} gives an empty table name; cannot name its Parquet file"
        raise InvalidStreamNameError(msg)
    return file_stem(name) + SUFFIX


def check_fits(path: Path, *, stream: str) -> Path:
    """The whole file name, not a part of it, within NAME_MAX bytes, or an error naming the stream."""
    if len(path.name.encode()) > NAME_MAX:
        msg = f"Stream {stream!r}: file name {path.name!r} passes {NAME_MAX} bytes"
        raise InvalidStreamNameError(msg)
    return path


def output_path(output_dir: str | Path, name: str, *, stream: str | None = None) -> Path:
    """Where a table's file goes: always directly inside ``output_dir``."""
    folder = Path(output_dir)
    path = folder / file_name(name, stream=stream)
    if path.resolve().parent != folder.resolve():
        msg = f"Stream {stream or name!r} would write outside {folder}: {path}"
        raise InvalidStreamNameError(msg)
    return path
