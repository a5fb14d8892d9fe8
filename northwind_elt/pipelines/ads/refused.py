"""Refused API responses, kept in the bucket under refused/ so they can be inspected and replayed.

    refused/<day>/<stem>.json           the API's body exactly as received, refused by tap-ads-api
                                        (not JSON, not an array, a record off the API's contract)
    refused/<day>/<stem>.jsonl          the records as received, one per line, refused by
                                        ads verify-backup (not 100 records, a line without ad_id)
    refused/<day>/<stem>.reason.json    why, and the command that replays it (written after the body)
    refused/<day>/<stem>.replayed.json  once a replay of it is inserted: the run and its backup

<stem> is the run id; a later refused response of the same run id (a retry that called the
API again) gets `<run id>-2`, `-3`, ... Every object is created with a conditional put, so
nothing here is ever overwritten. A replay (`nw ads replay <key>`) feeds the body to
tap-ads-api instead of calling the API (`response_file`), as run <stem> of <day>, through the
same checks, backup and insert as any load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from northwind_elt.pipelines.ads import s3

PREFIX = "refused/"
BY_TAP = "tap-ads-api"
BY_VERIFY = "ads verify-backup"
_KEY = re.compile(r"refused/(\d{4}-\d{2}-\d{2})/([A-Za-z0-9_-][A-Za-z0-9._-]*?)(\.jsonl|\.json)")
_CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/x-ndjson"}


def replay_command(key: str) -> str:
    return f"nw ads replay {key}"


@dataclass(frozen=True)
class RefusedKey:
    day: dt.date
    stem: str
    extension: str  # ".json" (the body from the API) or ".jsonl" (the records, one per line)

    @property
    def body(self) -> str:
        return f"{PREFIX}{self.day.isoformat()}/{self.stem}{self.extension}"

    @property
    def reason(self) -> str:
        return f"{PREFIX}{self.day.isoformat()}/{self.stem}.reason.json"

    @property
    def replayed(self) -> str:
        return f"{PREFIX}{self.day.isoformat()}/{self.stem}.replayed.json"

    @classmethod
    def parse(cls, key: str) -> RefusedKey:
        """A kept response's key (as `nw ads status` lists it); ValueError saying the form."""
        text = key.strip()
        if text.startswith("s3://"):
            text = text.split("/", 3)[3] if text.count("/") >= 3 else ""
        found = _KEY.fullmatch(text)
        if not found or found.group(2).endswith((".reason", ".replayed")):
            raise ValueError(f"{key!r} is not a refused response's key: refused/<YYYY-MM-DD>/<run id>.json or .jsonl")
        try:
            day = dt.date.fromisoformat(found.group(1))
        except ValueError:
            raise ValueError(f"{key!r} names no valid day") from None
        return cls(day, found.group(2), found.group(3))


@dataclass(frozen=True)
class Refusal:
    """The reason object beside a kept response."""

    key: str
    run_id: str
    day: str
    refused_by: str
    reason: str
    bytes: int
    sha256: str
    refused_at: str
    replay: str

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Refusal:
        missing = [name for name in cls.__dataclass_fields__ if name not in value]
        if missing:
            raise ValueError(f"a refusal without {', '.join(missing)}")
        return cls(**{name: value[name] for name in cls.__dataclass_fields__})


def keep(
    bucket: s3.Bucket, day: dt.date, run_id: str, body: bytes, extension: str, refused_by: str, reason: str
) -> tuple[RefusedKey, bool]:
    """Keep a refused response: (where it is, whether that very body was kept there already)."""
    attempt = 0
    while True:
        attempt += 1
        where = RefusedKey(day, run_id if attempt == 1 else f"{run_id}-{attempt}", extension)
        existing = bucket.get(where.body)
        if existing is not None and existing != body:
            continue
        if existing is None:
            if bucket.exists(where.reason):  # this stem holds the run's response of the other kind
                continue
            if not bucket.put_new(where.body, body, _CONTENT_TYPES[extension]):
                continue  # created since the check: by another hand, so another stem
        refusal = Refusal(
            key=where.body,
            run_id=run_id,
            day=day.isoformat(),
            refused_by=refused_by,
            reason=reason,
            bytes=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
            refused_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            replay=replay_command(where.body),
        )
        bucket.put_new(where.reason, refusal.to_bytes(), "application/json")  # no-op when kept before
        return where, existing is not None


def as_response(body: bytes, extension: str) -> bytes:
    """What tap-ads-api reads in a replay: a .json body as it is; a .jsonl one's records as a
    JSON array, each record's text unchanged."""
    if extension == ".json":
        return body
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"[" + b",".join(lines) + b"]"


def kept_line(cfg_where: str, where: RefusedKey, already: bool) -> str:
    """What a failed run says about its kept response."""
    verb = "was kept already as" if already else "is kept as"
    return (
        f"The response {verb} {cfg_where} (why: {where.reason}).\n"
        f"Once the cause is fixed, replay it (no API call): {replay_command(where.body)}"
    )
