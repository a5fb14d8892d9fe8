"""The lake: where published step-1 partitions, their manifests, the step manifests and the
exports live. One setting, `NW_LAKE_URL`: unset (or a local path) is the data directory on this
machine's disk; `s3://bucket/prefix` is any S3-compatible bucket (endpoint and keys in
`NW_LAKE_S3_*`). The layout, names and manifests are the same in both.

Reads and plain writes go through fsspec (LocalFileSystem or s3fs). What makes a commit safe is
the two operations below, the only ones a commit uses to become visible:

- `create(path, data)`: the object appears whole, or the call fails with CommitConflict because
  it exists. S3: PutObject with `If-None-Match: *`. Local disk: under the lake's lock file, a
  check that nothing is there, then a temporary file renamed into place (a data file: a hard
  link, which refuses an existing name).
- `replace(path, data, version)`: compare and swap against the version the writer read before
  it began. S3: PutObject with `If-Match: <ETag>`. Local disk: under one lock file of the lake,
  the current content's sha256 is compared, then the temporary file renamed over it.

A second writer of the same commit therefore gets CommitConflict, never a silent overwrite.
Data objects are written once under names unique per attempt (`create` semantics too), so a
retry never overwrites what a reader may be reading.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    import fsspec

LAKE_URL_ENV = "NW_LAKE_URL"
S3_ENDPOINT_ENV = "NW_LAKE_S3_ENDPOINT_URL"
S3_REGION_ENV = "NW_LAKE_S3_REGION"
S3_KEY_ENV = "NW_LAKE_S3_ACCESS_KEY_ID"
S3_SECRET_ENV = "NW_LAKE_S3_SECRET_ACCESS_KEY"  # noqa: S105 - the variable's name, not a secret
SHA256_METADATA = "sha256"  # object metadata every data object carries on S3


class CommitConflict(RuntimeError):
    """Another writer created or replaced the object first."""


class LakeError(RuntimeError):
    """The lake cannot be reached, or refused an operation for another reason than a conflict."""


def _is_precondition_failure(err: OSError) -> bool:
    """A 412 from S3: s3fs raises FileExistsError when S3 names the If-None-Match condition,
    else OSError(EINVAL) caused by the ClientError (SeaweedFS does not name the condition)."""
    if isinstance(err, FileExistsError):
        return True
    cause = err.__cause__
    response = getattr(cause, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


@dataclass(frozen=True)
class Lake:
    """A local directory or an S3 bucket and prefix, with the commit operations."""

    url: str  # as configured: an absolute path or s3://bucket/prefix
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def local(cls, directory: Path) -> Lake:
        return cls(str(Path(directory)))

    @property
    def remote(self) -> bool:
        return self.url.startswith("s3://")

    @cached_property
    def fs(self) -> fsspec.AbstractFileSystem:
        import fsspec  # here: a process that never touches the lake does not load it

        if self.remote:
            # No listing cache: a commit must see what other writers did a moment ago.
            return fsspec.filesystem("s3", use_listings_cache=False, skip_instance_cache=True, **self.storage_options)
        return fsspec.filesystem("file")

    @cached_property
    def root(self) -> PurePosixPath:
        if self.remote:
            parsed = urlparse(self.url)
            return PurePosixPath(parsed.netloc) / parsed.path.strip("/")
        return PurePosixPath(Path(self.url).resolve())

    @property
    def bucket(self) -> str | None:
        return self.root.parts[0] if self.remote else None

    def where(self, path: PurePosixPath) -> str:
        """The path as a person (or a tool outside the project) names it."""
        return f"s3://{path}" if self.remote else str(path)

    def upath(self, path: PurePosixPath):
        """`path` with pathlib's API (universal_pathlib), for code that walks folders."""
        from upath import UPath

        return UPath(self.where(path), **self.storage_options) if self.remote else UPath(str(path))

    def path_of(self, where: str) -> PurePosixPath:
        """The inverse of `where`."""
        return PurePosixPath(where.removeprefix("s3://") if self.remote else where)

    # -- reads ------------------------------------------------------------------------------

    def _fail(self, what: str, path: PurePosixPath, err: Exception) -> LakeError:
        endpoint = self.storage_options.get("endpoint_url")
        at = f" at {endpoint}" if self.remote and endpoint else ""
        return LakeError(f"cannot {what} {self.where(path)}{at}: {err}")

    def exists(self, path: PurePosixPath) -> bool:
        try:
            return self.fs.exists(str(path))
        except OSError as err:
            raise self._fail("read", path, err) from err

    def read_bytes(self, path: PurePosixPath) -> bytes | None:
        """The object's bytes, or None when there is none."""
        try:
            return self.fs.cat_file(str(path))
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            return None
        except OSError as err:
            raise self._fail("read", path, err) from err

    def info(self, path: PurePosixPath) -> dict[str, Any] | None:
        try:
            return self.fs.info(str(path))
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._fail("read", path, err) from err

    def _head(self, path: PurePosixPath) -> dict[str, Any] | None:
        """An S3 object's HeadObject answer (ETag, metadata), or None when there is none."""
        try:
            return self.fs.call_s3("head_object", **self._bucket_key(path))
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._fail("read", path, err) from err

    def recorded_sha256(self, path: PurePosixPath) -> str | None:
        """The sha256 an S3 object carries in its metadata (None locally or when absent)."""
        head = self._head(path) if self.remote else None
        return None if head is None else head.get("Metadata", {}).get(SHA256_METADATA)

    def sha256(self, path: PurePosixPath) -> str:
        digest = hashlib.sha256()
        try:
            with self.fs.open(str(path), "rb", block_size=1 << 22) as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
        except FileNotFoundError:
            raise  # the caller says what a missing file means
        except OSError as err:
            raise self._fail("read", path, err) from err
        return digest.hexdigest()

    def open_input(self, path: PurePosixPath):
        return self.fs.open(str(path), "rb")

    def glob(self, pattern: PurePosixPath) -> list[PurePosixPath]:
        try:
            return sorted(PurePosixPath(found) for found in self.fs.glob(str(pattern)))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise self._fail("list", pattern, err) from err

    def folders(self, path: PurePosixPath) -> list[PurePosixPath]:
        """The folders directly under `path` (one listing; none when it does not exist)."""
        try:
            found = self.fs.ls(str(path), detail=True)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise self._fail("list", path, err) from err
        return sorted(PurePosixPath(item["name"]) for item in found if item["type"] == "directory")

    def version(self, path: PurePosixPath) -> str | None:
        """What `replace` compares: the ETag on S3, the content's sha256 locally; None if absent."""
        if self.remote:
            head = self._head(path)
            return None if head is None else head["ETag"]
        try:
            return hashlib.sha256(Path(str(path)).read_bytes()).hexdigest()
        except FileNotFoundError:
            return None

    # -- writes -----------------------------------------------------------------------------

    def _bucket_key(self, path: PurePosixPath) -> dict[str, str]:
        bucket, _, key = str(path).partition("/")
        return {"Bucket": bucket, "Key": key}

    def create(self, path: PurePosixPath, data: bytes) -> None:
        """Write `data` at `path` unless something is there: CommitConflict if it is."""
        self.replace(path, data, None)

    def replace(self, path: PurePosixPath, data: bytes, version: str | None) -> None:
        """Write `data` at `path` if the object there is still `version` (None: no object);
        CommitConflict if another writer got there first."""
        if self.remote:
            condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
            try:
                self.fs.call_s3("put_object", Body=data, **self._bucket_key(path), **condition)
            except FileNotFoundError:
                if version is None:
                    raise self._fail("write", path, FileNotFoundError("no such bucket")) from None
                raise CommitConflict(f"{self.where(path)} was removed by another writer") from None
            except OSError as err:
                # A retried PUT whose first try landed (its reply lost) is refused by its own
                # write: the same bytes there are this commit. (Manifests carry run id and time.)
                if _is_precondition_failure(err) and self.read_bytes(path) != data:
                    raise CommitConflict(f"{self.where(path)} was written by another writer first") from None
                if not _is_precondition_failure(err):
                    raise self._fail("write", path, err) from err
            return
        target = Path(str(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._local_commit_lock(), _temporary(target, data) as tmp:
            current = self.version(path)
            if current != version:
                state = "exists" if version is None else "changed" if current else "is gone"
                raise CommitConflict(f"{target} {state}: another writer committed first")
            os.replace(tmp, target)

    def put_file(self, local: Path, path: PurePosixPath, sha256: str) -> None:
        """Write a finished local file under a name never used before (a data object)."""
        if self.remote:
            try:
                self.fs.put_file(str(local), str(path), mode="create", Metadata={SHA256_METADATA: sha256})
            except OSError as err:
                if not _is_precondition_failure(err):
                    raise self._fail("write", path, err) from err
                if self.recorded_sha256(path) != sha256:  # not this attempt's own retried write
                    raise CommitConflict(f"{self.where(path)} exists: data objects are written once") from None
            return
        target = Path(str(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(local, target)  # refuses an existing name; no copy on one file system
        except FileExistsError:
            raise CommitConflict(f"{target} exists: data objects are written once") from None
        except OSError:
            with open(local, "rb") as handle:
                self.create(path, handle.read())

    def write_bytes(self, path: PurePosixPath, data: bytes) -> None:
        """Replace whatever is at `path` whole (exports: the newest render wins)."""
        if self.remote:
            try:
                self.fs.pipe_file(str(path), data)
            except OSError as err:
                raise self._fail("write", path, err) from err
            return
        from northwind_elt.core.files import atomic_write_bytes

        atomic_write_bytes(Path(str(path)), data)

    def delete(self, path: PurePosixPath) -> None:
        try:
            self.fs.rm_file(str(path))
        except FileNotFoundError:
            pass
        except OSError as err:
            raise self._fail("delete", path, err) from err

    @contextmanager
    def _local_commit_lock(self) -> Iterator[None]:
        """One lock per local lake for the compare-and-swap (held for a stat, a read and a rename)."""
        folder = Path(str(self.root)) / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "lake-commits.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _temporary(target: Path, data: bytes) -> Iterator[str]:
    """A complete, synced file beside `target` (removed unless it was renamed into place)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:200]}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        yield tmp
    finally:
        Path(tmp).unlink(missing_ok=True)


def from_settings(data_dir: Path) -> Lake:
    """The lake `NW_LAKE_URL` names (the data directory when unset). One object per process and
    settings: an S3 client (its session, connections) costs a fraction of a second to make."""
    names = (LAKE_URL_ENV, S3_ENDPOINT_ENV, S3_REGION_ENV, S3_KEY_ENV, S3_SECRET_ENV)
    return _lake_for(str(data_dir), tuple(os.environ.get(name) for name in names))


def s3_options(values: tuple[str | None, ...] | None = None) -> dict[str, Any]:
    """fsspec/s3fs options from NW_LAKE_S3_* (endpoint, region, keys; unset ones left out)."""
    if values is None:
        values = tuple(os.environ.get(name) for name in (S3_ENDPOINT_ENV, S3_REGION_ENV, S3_KEY_ENV, S3_SECRET_ENV))
    endpoint, region, key, secret = values
    options: dict[str, Any] = {"client_kwargs": {"region_name": region or "us-east-1"}}
    if endpoint:
        options["endpoint_url"] = endpoint
    if key:
        options["key"] = key
    if secret:
        options["secret"] = secret
    return options


@functools.lru_cache(maxsize=8)
def _lake_for(data_dir: str, values: tuple[str | None, ...]) -> Lake:
    url = (values[0] or "").strip()
    if not url:
        return Lake.local(Path(data_dir))
    if url.startswith("s3://"):
        if not urlparse(url).netloc:
            raise ValueError(f"{LAKE_URL_ENV}={url!r} names no bucket; write s3://bucket/prefix")
        return Lake(url.rstrip("/"), s3_options(values[1:]))
    parsed = urlparse(url)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"{LAKE_URL_ENV}={url!r}: only a local path, file:// or s3:// is supported")
    local = Path(parsed.path if parsed.scheme == "file" else url)
    if not local.is_absolute():
        raise ValueError(f"{LAKE_URL_ENV}={url!r} is not an absolute path")
    return Lake.local(local)
