"""Is every object the ads database records still in the bucket, as it was written?

Some objects hold the only copy of their data (store.RecordedObject.only_copy): an archive
(its rows were deleted from api_ad_data), a backup not inserted (verified and waiting, or
whose insert failed or is held) and a refused response not replayed. The backups that were
inserted are checked too: each is the response as the API sent it.

Cheap: one listing per top-level prefix (backup/, archive/, refused/) gives every object's
size; only the only copies get a HEAD, for the sha256 their writer put in their metadata,
and are downloaded and hashed only when they carry none. A backup not inserted also needs its
manifest (no load inserts a backup without one), so that is looked for in the same listing.

`nw ads status` (and `nw status`) print `Report.lines()`; `nw ads up` refuses to create an
empty bucket in place of one the database records objects in (commands.setup).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from northwind_elt.core import text
from northwind_elt.core.manifests import iso_utc
from northwind_elt.pipelines.ads import config, records, s3
from northwind_elt.pipelines.ads.config import AdsSettings
from northwind_elt.pipelines.ads.store import ARCHIVE, BACKUP, REFUSED, RecordedObject

ACCEPT_LOSS_FLAG = "--accept-lost-objects"
ACCEPT_LOSS_COMMAND = f"nw ads up {ACCEPT_LOSS_FLAG}"
MISSING = "is missing"
# HEADs at once: the only copies are checked in parallel (a remote S3 answers each in tens of ms).
_HEADS_AT_ONCE = 8
_KIND_NAMES = {
    ARCHIVE: ("archive", "archives"),
    BACKUP: ("backup", "backups"),
    REFUSED: ("refused response", "refused responses"),
}


@dataclass(frozen=True)
class Problem:
    """A recorded object the bucket no longer holds as written."""

    recorded: RecordedObject
    what: str  # "is missing", "has 10 bytes (12 were written)", ...

    def line(self, cfg: AdsSettings) -> str:
        return f"LOST: s3://{cfg.bucket}/{self.recorded.key} ({holds(self.recorded)}) {self.what} at {cfg.endpoint}"


@dataclass
class Report:
    recorded: list[RecordedObject]
    problems: list[Problem] = field(default_factory=list)
    bucket_missing: bool = False
    not_checked: str | None = None  # why the bucket could not be checked

    @property
    def lost(self) -> bool:
        return bool(self.problems)

    def lines(self, cfg: AdsSettings) -> list[str]:
        """What `nw ads status` and `nw status` print (indented by 2): one line when all is well,
        a LOST line per object and how to recover when not."""
        if self.not_checked:
            return [f"  S3 objects: not checked: {self.not_checked}"]
        if not self.recorded:
            return [f"  S3 objects: none recorded yet in s3://{cfg.bucket}"]
        total = len(self.recorded)
        if not self.problems:
            every = "the one" if total == 1 else f"all {text.number(total)}"
            return [
                f"  S3 objects: {every} the ads database records ({counted(self.recorded)}) "
                f"{'is' if total == 1 else 'are'} in "
                f"s3://{cfg.bucket} at {cfg.endpoint}, as written"
            ]
        lost = [problem.recorded for problem in self.problems]
        only = sum(1 for o in lost if o.only_copy)
        if self.bucket_missing:
            head = (
                f"  LOST: the bucket s3://{cfg.bucket} does not exist at {cfg.endpoint}; the ads database records "
                f"{text.plural(total, 'object')} in it ({counted(self.recorded)})"
            )
        else:
            head = (
                f"  LOST: {_part_of(len(lost), total)} the ads database records in "
                f"s3://{cfg.bucket} at {cfg.endpoint} {'is' if len(lost) == 1 else 'are'} missing or changed "
                f"({counted(lost)})"
            )
        head += f", {only} of them the only copy of their data:" if only else ":"
        return [head, *(f"  {p.line(cfg)}" for p in self.problems), f"  Fix: {recovery(cfg)}"]


def counted(objects: list[RecordedObject]) -> str:
    """'1 archive, 3 backups, 1 refused response'."""
    kinds = Counter(o.kind for o in objects)
    return ", ".join(text.plural(kinds[kind], *_KIND_NAMES[kind]) for kind in (ARCHIVE, BACKUP, REFUSED) if kinds[kind])


def holds(o: RecordedObject) -> str:
    """What the object holds, for the line that says it is lost."""
    if o.kind == ARCHIVE:
        shown = f", shown before {iso_utc(o.cutoff)}" if o.cutoff else ""
        return f"the only copy of {_count(o.rows, 'archived row')}{shown}; archive of {o.day}, run {o.run_id}"
    if o.kind == REFUSED:
        if o.replayed_as:
            return f"the refused response of run {o.run_id} of {o.day}, replayed as {o.replayed_as}"
        return f"the only copy of the refused response of run {o.run_id} of {o.day}, not replayed"
    if o.inserted:
        quarantined = f", {o.quarantined} of them quarantined" if o.quarantined else ""
        return f"the backup of run {o.run_id} of {o.day}: {_count(o.rows, 'line')} as received, inserted{quarantined}"
    state = "verified, not inserted"
    if o.failures >= records.MAX_INSERT_FAILURES:
        state += f", held after {o.failures} failed inserts"
    elif o.failures:
        state += f", {_count(o.failures, 'failed insert')}"
    return f"the only copy of run {o.run_id}'s {_count(o.rows, 'record')} of {o.day}: {state}"


def _count(number: int | None, word: str) -> str:
    return f"{word}s" if number is None else text.plural(number, word)


def _part_of(part: int, total: int) -> str:
    """'2 of the 6 objects', 'the one object'."""
    return "the one object" if total == 1 else f"{text.number(part)} of the {text.plural(total, 'object')}"


def recovery(cfg: AdsSettings) -> str:
    """How to get the objects back, or accept their loss."""
    embedded = config.local_port(cfg.s3_endpoint_url) is not None
    where = (
        f"put back the embedded S3 server's data directory ({cfg.s3_data_dir}, ADS_S3_DATA_DIR) or point "
        "ADS_S3_DATA_DIR at the copy that holds them, or point "
        if embedded
        else "point "
    )
    return (
        f"restore the objects: {where}ADS_S3_ENDPOINT_URL / ADS_S3_BUCKET at where they are (then nw ads up). "
        f"What cannot be restored is lost: {ACCEPT_LOSS_COMMAND} creates an empty bucket, "
        "and nw ads status keeps listing what was lost"
    )


def problems_of(
    recorded: list[RecordedObject], sizes: dict[str, int] | None, sha256_of: Callable[[str], str | None]
) -> list[Problem]:
    """The recorded objects the bucket does not hold as written. `sizes`: every object in the
    bucket under the recorded ones' prefixes and its size (None: the bucket does not exist);
    `sha256_of(key)`: the object's sha256 (called for the only copies the listing found intact)."""
    if sizes is None:
        return [Problem(o, MISSING) for o in recorded]
    problems, to_hash = [], []
    for o in recorded:
        size = sizes.get(o.key)
        if size is None:
            problems.append(Problem(o, MISSING))
        elif o.bytes is not None and size != o.bytes:
            problems.append(Problem(o, f"has {size:,} bytes ({o.bytes:,} were written)"))
        elif o.kind == BACKUP and not o.inserted and config.manifest_of(o.key) not in sizes:
            problems.append(Problem(o, f"has lost its manifest {config.manifest_of(o.key)}: no load can insert it"))
        elif o.only_copy and o.sha256:
            to_hash.append(o)
    with ThreadPoolExecutor(max_workers=_HEADS_AT_ONCE) as pool:
        for o, found in zip(to_hash, pool.map(lambda o: sha256_of(o.key), to_hash), strict=True):
            if found is None:
                problems.append(Problem(o, MISSING))
            elif found != o.sha256:
                problems.append(Problem(o, f"has sha256 {found} ({o.sha256} was written)"))
    order = {o.key: n for n, o in enumerate(recorded)}
    return sorted(problems, key=lambda p: order[p.recorded.key])


def check(cfg: AdsSettings, recorded: list[RecordedObject]) -> Report:
    """The recorded objects against the bucket (see the module's doc)."""
    if not recorded:
        return Report(recorded)
    bucket = s3.Bucket(cfg)
    try:
        if not bucket.bucket_exists():
            return Report(recorded, problems_of(recorded, None, bucket.sha256_of), bucket_missing=True)
        sizes: dict[str, int] = {}
        for prefix in sorted({o.key.split("/", 1)[0] + "/" for o in recorded}):
            sizes.update(bucket.sizes(prefix))
        return Report(recorded, problems_of(recorded, sizes, bucket.sha256_of))
    except s3.S3Error as err:
        return Report(
            recorded, not_checked=f"{str(err).splitlines()[0]} ({text.plural(len(recorded), 'object')} recorded)"
        )
