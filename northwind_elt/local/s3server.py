"""The project's embedded S3-compatible server: npm `s3rver` 3.7.1, objects stored on disk.

Why: the archive job deletes the Postgres rows it has archived, so the S3 copy is then the
only copy and must survive a restart of the server (and of the machine). Measured here
(Debian 12, node v20, boto3 1.44.5): s3rver keeps every object as plain files under its data
directory (`<dir>/<bucket>/<key>._S3rver_object` plus metadata and md5), a restart on the
same directory serves them again byte-equal, and boto3 works against it unchanged
(create/head bucket, put/get/head/delete object, ListObjectsV2 with a prefix, 0-byte
objects, multipart uploads). MIT licence, ~900k downloads a
month, depends only on node (already on the machine; the npm registry is reachable).

Install (the project runs it, see `install()`):

    npm install --prefix <project>/.s3server s3rver@3.7.1

Credentials: s3rver checks SigV4 signatures against one built-in account, access key
`S3RVER`, secret `S3RVER` (`ACCESS_KEY`/`SECRET_KEY` here); other keys get
InvalidAccessKeyId. Any region name is accepted (use us-east-1).

Rejected:

- moto[server]==5.2.5: works, but keeps state in memory only. 5.2.5 has no snapshot or
  restore of state; its only related feature, the request recorder
  (`/moto-api/recorder/*`), appends every request, bodies included, to one file and
  replays them all at start: unbounded growth, slow restarts, not a store.
- MinIO: no Debian package of the server; the `minio` PyPI package is the client.
- LocalStack (`localstack-core`): installs, but cannot start without Docker here.
- `@20minutes/s3rver` 5.0.0 (maintained fork of s3rver): requires node >= 24; node 20 here.
- PyPI `fake-s3` 1.0.2 and `alocals3` 0.3.0: single-author alpha ports (Quart / FastAPI +
  SQLAlchemy) with partial S3 coverage and almost no users; not worth the risk for the
  archive's only copy.

Real S3 needs none of this: the pipeline takes endpoint, region and keys from its settings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

PACKAGE = "s3rver"
VERSION = "3.7.1"
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"  # noqa: S105 - s3rver's fixed, public test credential
PROJECT = Path(__file__).resolve().parents[2]


class S3ServerError(RuntimeError):
    pass


def default_prefix() -> Path:
    """Where s3rver is installed: $ADS_S3SERVER_PREFIX, else <project>/.s3server."""
    return Path(os.environ.get("ADS_S3SERVER_PREFIX") or PROJECT / ".s3server")


def _installed_version(prefix: Path) -> str | None:
    manifest = prefix / "node_modules" / PACKAGE / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def install_command(prefix: Path) -> list[str]:
    return ["npm", "install", "--prefix", str(prefix), f"{PACKAGE}@{VERSION}"]


def install(prefix: Path | None = None) -> Path:
    """Install s3rver@3.7.1 under `prefix` unless that exact version is there; return its entry script."""
    prefix = Path(prefix) if prefix is not None else default_prefix()
    if _installed_version(prefix) != VERSION:
        if shutil.which("npm") is None:
            raise S3ServerError(f"npm is not installed; it is needed to run: {' '.join(install_command(prefix))}")
        prefix.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(install_command(prefix), capture_output=True, text=True, check=False)
        if done.returncode != 0 or _installed_version(prefix) != VERSION:
            raise S3ServerError(
                f"{' '.join(install_command(prefix))} failed (status {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
    return _entry_script(prefix)


def _entry_script(prefix: Path) -> Path:
    return prefix / "node_modules" / PACKAGE / "bin" / "s3rver.js"


def command(data_dir: Path, port: int, prefix: Path | None = None) -> list[str]:
    """The command line that serves `data_dir` on 127.0.0.1:port (install() first)."""
    script = _entry_script(Path(prefix) if prefix is not None else default_prefix())
    if not script.is_file():
        raise S3ServerError(f"s3rver is not installed ({script} missing); run northwind_elt.local.s3server.install()")
    node = shutil.which("node")
    if node is None:
        raise S3ServerError("node is not installed; s3rver needs it")
    return [node, str(script), "--directory", str(data_dir), "--address", "127.0.0.1", "--port", str(port), "--silent"]
