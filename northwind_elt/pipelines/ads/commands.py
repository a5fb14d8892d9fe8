"""`nw ads ...`: the ads pipeline's commands; their usage is the package's docstring
(northwind_elt/pipelines/ads/__init__.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg

from northwind_elt.core import ledger, settings, text
from northwind_elt.core.day import DAY_ENV, DayLayout, pinned_day
from northwind_elt.core.errors import CommandError, ConfigError, PipelineError
from northwind_elt.core.manifests import ArchiveManifest, BackupManifest, iso_utc, verified_now
from northwind_elt.pipelines.ads import config, integrity, records, refused, s3, store
from northwind_elt.pipelines.ads.config import PG, RUN_ID_ENV, AdsSettings, BackupKeys
from northwind_elt.pipelines.ads.pipeline import ADS
from northwind_elt.protocol import meltano
from northwind_elt.protocol.attempts import Attempt, attempt, succeeded_since

PIPELINE = ADS.name
LOAD, ARCHIVE = "ads-load", "ads-archive"
INSERT_JOB = "ads-insert"  # the second half of ads-load: a verified backup -> Postgres
API_NOT_CALLED = "the API was not called, nothing was written"
# The tap-ads-api settings the entry point sets per run (Meltano reads TAP_ADS_API_<SETTING>).
TAP_REFUSED_PATH_ENV = "TAP_ADS_API_REFUSED_PATH"
TAP_RESPONSE_FILE_ENV = "TAP_ADS_API_RESPONSE_FILE"
TAP_REASON_SUFFIX = ".reason.json"  # tap_ads_api.tap.REASON_SUFFIX (the plugin is not importable here)
# Set while a kept response is replayed: its key (a refusal again keeps nothing new).
REPLAY_OF_ENV = "ADS_REPLAY_OF"


class AdsError(CommandError):
    """An ads step failed; the message ends with the command to run next (if any)."""

    def __init__(self, step: str, day: dt.date | None, cause: str, fix: str | None = None, rerun: str | None = None):
        super().__init__(f"ads {step}", day, cause, fix, rerun)


def load_rerun(day: dt.date, run_id: str | None = None) -> str:
    return f"nw ads load --date {day.isoformat()}" + (f" --run-id {run_id}" if run_id else "")


def load_attempt(keys: BackupKeys, started: dt.datetime | None) -> Attempt:
    """The ledger's record of a load: its unit is the run ("YYYY-MM-DD/<run id>")."""
    return Attempt(ADS, LOAD, ledger.run_key(keys.day, keys.run_id), started)


def _need_pg(why: str) -> None:
    settings.require(settings.pg_variables(PG), why)
    settings.pg_conn(PG)


@contextmanager
def _db(step: str, day: dt.date | None, consequence: str, rerun: str | None) -> Iterator[psycopg.Connection]:
    try:
        conn = store.connect(settings.pg_conn(PG).conninfo())
    except psycopg.OperationalError as err:
        reason = str(err).strip().splitlines()[-1].strip()
        raise AdsError(
            step,
            day,
            f"cannot reach {settings.describe_conn(PG)}: {reason}; {consequence}",
            "start the database (nw ads up, or nw db up) or fix ADS_PG_* in .env",
            rerun,
        ) from None
    with conn:
        yield conn


# --- set-up ---------------------------------------------------------------------------


def setup(accept_lost_objects: bool | None = None) -> list[str]:
    """Create the bucket and the tables (idempotent); the servers must answer.

    A bucket that does not exist is created only when the ads database records no object in
    it, or when the loss is accepted (`accept_lost_objects`, default: `nw ads up`'s flag):
    an empty bucket in place of the one that held the archives would hide their loss.
    """
    cfg = config.load()
    _need_pg("the ads pipeline's tables live there")
    accept = config.lost_objects_accepted() if accept_lost_objects is None else accept_lost_objects
    lines = []
    bucket = s3.Bucket(cfg)
    try:
        exists = bucket.bucket_exists()
    except s3.S3Error as err:
        raise AdsError("up", None, str(err), "start the S3 server or fix ADS_S3_* in .env", "nw ads up") from None
    created = False
    if not exists:
        consequence = "the bucket was not created: whether the ads database records objects in it is unknown"
        with _db("up", None, consequence, "nw ads up") as conn:
            recorded = store.recorded_objects(conn)
        if recorded and not accept:
            raise lost_bucket_error(cfg, recorded)
        try:
            created = bucket.create()
        except s3.S3Error as err:
            raise AdsError("up", None, str(err), "start the S3 server or fix ADS_S3_* in .env", "nw ads up") from None
        if recorded:
            lines.append(
                f"WARNING: the {text.plural(len(recorded), 'object')} the ads database records in s3://{cfg.bucket} "
                f"({integrity.counted(recorded)}) {'is' if len(recorded) == 1 else 'are'} lost "
                f"({integrity.ACCEPT_LOSS_FLAG}); nw ads status lists {'it' if len(recorded) == 1 else 'them'}"
            )
    lines.insert(0, f"bucket {cfg.bucket} {'created' if created else 'exists'} ({cfg.where()})")
    with _db("up", None, "the tables were not created", "nw ads up") as conn:
        store.ensure_schema(conn)
    lines.append(f"tables ready in {settings.describe_conn(PG)}")
    return lines


def lost_bucket_error(cfg: AdsSettings, recorded: list[store.RecordedObject]) -> AdsError:
    """`nw ads up` refuses to create an empty bucket where the database records objects."""
    only = [o for o in recorded if o.only_copy]
    shown = [f"  s3://{cfg.bucket}/{o.key} ({integrity.holds(o)})" for o in recorded[:_LOST_SHOWN]]
    if len(recorded) > _LOST_SHOWN:
        shown.append(f"  ... and {text.number(len(recorded) - _LOST_SHOWN)} more (nw ads status lists every one)")
    cause = (
        f"the bucket s3://{cfg.bucket} does not exist at {cfg.endpoint}, but {settings.describe_conn(PG)} "
        f"records {text.plural(len(recorded), 'object')} in it ({integrity.counted(recorded)}; "
        f"{text.number(len(only))} of them the only copy of their data). An empty bucket in its place would hide "
        "their loss: it was not created. Missing:\n" + "\n".join(shown)
    )
    return AdsError("up", None, cause, integrity.recovery(cfg), "nw ads up")


_LOST_SHOWN = 20  # `nw ads up` names this many lost objects; nw ads status names all


# --- the load --------------------------------------------------------------------------


def _pinned_run(step: str) -> tuple[dt.date, BackupKeys]:
    day = pinned_day(f"ads {step}")
    run_id = os.environ.get(RUN_ID_ENV)
    if not run_id:
        raise ConfigError(
            f"ads {step} started without a run id: {RUN_ID_ENV} is not set",
            f"run the load through its entry point: nw ads load --date {day.isoformat()}",
            f"ads {step}",
        )
    return day, BackupKeys(day, config.run_id_from(run_id))


def begin_load() -> str:
    """First task of ads-load: never overwrite a verified backup with another API response."""
    day, keys = _pinned_run("begin-load")
    cfg = config.load()
    try:
        bucket = s3.Bucket(cfg)
        verified = bucket.exists(keys.manifest)
        leftover = not verified and bucket.exists(keys.object)  # written, then the run died before its manifest
    except s3.S3Error as err:
        raise AdsError("load", day, f"{err}; {API_NOT_CALLED}", None, load_rerun(day)) from None
    if verified:
        raise AdsError(
            "load",
            day,
            f"run {keys.run_id} already has a verified backup {cfg.where(keys.object)}; "
            "calling the API again would replace it with a different response",
            "insert that backup instead (no API call)",
            load_rerun(day, keys.run_id),
        )
    note = " (an unverified object of an earlier attempt will be replaced)" if leftover else ""
    return f"ads begin-load: run {keys.run_id} for {day}: backup to {cfg.where(keys.object)}{note}"


def verify_backup() -> str:
    """The object the target wrote: as written (sha256), the API's 100 JSON records. Only then is it
    written under backup/ (read back), then its manifest, and the incoming object removed."""
    day, keys = _pinned_run("verify-backup")
    cfg = config.load()
    rerun = load_rerun(day)
    bucket = s3.Bucket(cfg)
    try:
        body = bucket.get(keys.incoming)
        written = bucket.metadata(keys.incoming).get("sha256") if body is not None else None
    except s3.S3Error as err:
        raise AdsError("load", day, f"{err}; nothing was inserted", None, rerun) from None
    if body is None:
        cause = f"the response {cfg.where(keys.incoming)} is missing; nothing was inserted"
        raise AdsError("load", day, cause, None, rerun)
    sha256 = hashlib.sha256(body).hexdigest()
    if written != sha256:
        raise AdsError(
            "load",
            day,
            f"{cfg.where(keys.incoming)} has sha256 {sha256}, the target wrote {written}; nothing was inserted",
            None,
            rerun,
        )
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    ids = set()
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError as err:
            _refuse(cfg, keys, body, f"{keys.incoming} line {number} is not JSON ({err})")
        if not isinstance(record, dict) or not isinstance(record.get("ad_id"), str):
            _refuse(cfg, keys, body, f"{keys.incoming} line {number} has no ad_id")
        ids.add(record["ad_id"])
    if len(lines) != config.RECORDS_PER_RESPONSE:
        _refuse(
            cfg,
            keys,
            body,
            f"the response {cfg.where(keys.incoming)} holds {text.plural(len(lines), 'record')}; the API's contract is "
            f"{text.number(config.RECORDS_PER_RESPONSE)} per call",
        )
    manifest = BackupManifest(
        key=keys.object,
        run_id=keys.run_id,
        day=day,
        rows=len(lines),
        distinct_ad_ids=len(ids),
        bytes=len(body),
        sha256=sha256,
        verified_at=verified_now(),
    )
    try:
        _write_backup(bucket, keys, body, manifest)
    except s3.ObjectExists as err:
        cause = f"{err}; this response is not backed up, nothing of it was inserted"
        raise AdsError("load", day, cause, None, rerun) from None
    except s3.S3Error as err:
        raise AdsError("load", day, f"{err}; the backup is not verified, nothing was inserted", None, rerun) from None
    _drop_incoming(cfg, keys)  # the entry point removes it too, should this fail
    recorded = (keys.object, store.BACKUP, day, keys.run_id, len(lines), len(body), sha256)
    unrecorded = _record(lambda conn: store.record_object(conn, *recorded))
    return (
        f"ads verify-backup: {cfg.where(keys.object)}: {text.plural(len(lines), 'line')}, "
        f"{text.plural(len(body), 'byte')}, sha256 {sha256}; "
        "manifest written"
        + (f"; not recorded in the ads database yet ({unrecorded}): its insert records it" if unrecorded else "")
    )


def _write_backup(bucket: s3.Bucket, keys: BackupKeys, body: bytes, manifest: BackupManifest) -> None:
    """The backup object, then its manifest (last: the backup counts from then on), each created
    once with a conditional put. An identical object or manifest an earlier attempt of this run
    wrote is kept; anything else under these keys is never overwritten (S3Error)."""
    try:
        bucket.put_once(keys.object, body, "application/x-ndjson")
    except s3.ObjectExists:
        if bucket.exists(keys.manifest):
            raise
        # Another response of this run, with no manifest: an earlier attempt died before verifying
        # it (begin-load said so). No reader uses an object without its manifest, so it goes; a
        # second refusal means another writer of this run id is at work.
        bucket.delete(keys.object)
        bucket.put_once(keys.object, body, "application/x-ndjson")
    if bucket.put_new(keys.manifest, manifest.to_bytes(), "application/json"):
        return
    found = bucket.get_json(keys.manifest) or {}
    if (found.get("key"), found.get("sha256")) != (keys.object, manifest.sha256):
        raise s3.ObjectExists(
            f"{bucket.cfg.where(keys.manifest)} was written meanwhile for other content (sha256 "
            f"{found.get('sha256')}, this response's is {manifest.sha256}): another load of run {keys.run_id} "
            "is at work; it was not overwritten"
        )


def _record(write: Callable[[psycopg.Connection], None]) -> str | None:
    """Record what was written in the ads database, if it can be reached: None, or why not.
    For the tasks that need no database otherwise (what they wrote to S3 stands either way)."""
    try:
        with store.connect(settings.pg_conn(PG).conninfo()) as conn:
            store.ensure_schema(conn)
            with conn.transaction():
                write(conn)
    except psycopg.Error as err:
        return f"cannot reach {settings.describe_conn(PG)}: {str(err).strip().splitlines()[-1].strip()}"
    except PipelineError as err:
        return err.cause.splitlines()[0]
    return None


def _refuse(cfg: AdsSettings, keys: BackupKeys, body: bytes, cause: str) -> NoReturn:
    """verify-backup refuses the response: it is kept under refused/ (never overwritten), the
    incoming object removed, nothing inserted. A replay refused again stays where it was kept."""
    day, rerun = keys.day, load_rerun(keys.day)
    replay_of = os.environ.get(REPLAY_OF_ENV)
    if replay_of:
        raise AdsError("load", day, f"{cause}; refused again, it stays kept as {replay_of}; nothing was inserted")
    try:
        where, already = refused.keep(s3.Bucket(cfg), day, keys.run_id, body, ".jsonl", refused.BY_VERIFY, cause)
    except s3.S3Error as err:
        cause = f"{cause}; nothing was inserted, and the response could not be kept: {err}"
        raise AdsError("load", day, cause, None, rerun) from None
    _record_refused(keys, where, body)
    _drop_incoming(cfg, keys)
    kept = "was kept already as" if already else "is kept as"
    raise AdsError(
        "load",
        day,
        f"{cause}; nothing was inserted; the response {kept} {cfg.where(where.body)} (why: {where.reason})",
        f"once the cause is fixed, replay it (no API call): {refused.replay_command(where.body)}",
        rerun,
    )


def commit() -> str:
    """Last task of ads-load / ads-insert: the landed backup lines -> api_ad_data, one transaction."""
    day, keys = _pinned_run("commit")
    cfg = config.load()
    _need_pg("the commit writes api_ad_data")
    rerun = load_rerun(day, keys.run_id)
    try:
        found = s3.Bucket(cfg).get_json(keys.manifest)
    except s3.S3Error as err:
        raise AdsError("load", day, f"{err}; nothing was inserted", None, rerun) from None
    if found is None:
        raise AdsError(
            "load",
            day,
            f"{cfg.where(keys.manifest)} is missing: the backup is not verified; nothing was inserted",
            None,
            load_rerun(day),
        )
    try:
        manifest = BackupManifest.from_json(found)
    except (ValueError, TypeError) as err:
        cause = f"{cfg.where(keys.manifest)} is {err}; the backup is not verified, nothing was inserted"
        raise AdsError("load", day, cause, None, load_rerun(day)) from None
    bucket = s3.Bucket(cfg)

    def raw_lines() -> list[str]:
        """The backup's lines as S3 holds them, for the quarantine (only read when a line goes there)."""
        body = bucket.get(keys.object)
        if body is None or hashlib.sha256(body).hexdigest() != manifest.sha256:
            raise store.StoreError(f"{cfg.where(keys.object)} no longer matches its manifest; nothing was inserted")
        lines = body.decode("utf-8", errors="replace").split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines

    with _db("load", day, f"the verified backup {keys.object} is not inserted yet", rerun) as conn:
        try:
            done = store.commit_backup(
                conn,
                keys.object,
                keys.run_id,
                day,
                manifest.rows,
                manifest.sha256,
                raw_lines,
                size=manifest.bytes or None,  # 0: a manifest that does not say
            )
        except (store.StoreError, s3.S3Error) as err:
            raise AdsError("load", day, str(err), None, rerun) from None
        except psycopg.Error as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
            cause = f"{type(err).__name__}: {reason} (inserting {keys.object}); rolled back, nothing was inserted"
            raise AdsError("load", day, cause, None, rerun) from None
    # The commit records the success (it alone knows the rows); the entry point waits for it.
    load_attempt(keys, None).succeeded(done.summary(), rows=done.inserted)
    return "\n".join(f"ads commit: {line}" for line in [done.summary(), *done.details()])


@dataclass(frozen=True)
class Pending:
    """A verified backup that no commit has inserted yet, and its failed inserts so far."""

    keys: BackupKeys
    failures: int = 0
    last_error: str = ""

    @property
    def held(self) -> bool:
        return self.failures >= records.MAX_INSERT_FAILURES

    def held_note(self) -> str:
        last = self.last_error.strip().split("\n", 1)[0]
        return (
            f"held: its insert failed {self.failures} times (last: {last}); no load retries it by itself. "
            f"Fix the cause, then: {load_rerun(self.keys.day, self.keys.run_id)}"
        )


def pending(cfg: AdsSettings, days: list[dt.date]) -> list[Pending]:
    """The verified backups of these days that no commit has inserted yet, oldest first."""
    bucket = s3.Bucket(cfg)
    manifests = {
        day: [k for k in bucket.keys(BackupKeys(day, "x").prefix) if k.endswith(".manifest.json")] for day in days
    }
    with _db("load", None, "nothing was inserted", None) as conn:
        committed = store.committed_keys(conn, days)
        found = []
        for day, keys in manifests.items():
            for key in keys:
                backup = BackupKeys(day, key.rsplit("/", 1)[1].removesuffix(".manifest.json"))
                if backup.object not in committed:
                    found.append(backup)
        failures = store.insert_failures(conn, [backup.object for backup in found])
    return [Pending(backup, *failures.get(backup.object, (0, ""))) for backup in found]


@dataclass(frozen=True)
class Replay:
    """A kept refused response fed to the tap instead of an API call."""

    key: str  # refused/<day>/<stem>.json(l)
    response: Path  # its body as tap-ads-api reads it


def load(day: dt.date, given_run_id: str | None = None, replay: Replay | None = None) -> int:
    """The entry point: one API call per run, backed up and verified before anything is inserted.

    Then the verified backups of this day and the day before that were never inserted (a run
    that failed after its backup, whose retries ran out) are inserted too, without the API;
    one whose insert failed records.MAX_INSERT_FAILURES times is held and named instead.
    """
    cfg = config.load()
    _need_pg("the load inserts into api_ad_data")
    run_id = config.run_id_from(given_run_id) if given_run_id else config.new_run_id()
    keys = BackupKeys(day, run_id)
    os.environ[DAY_ENV] = day.isoformat()
    # One load of a day at a time, and one run of the job's plugins whatever the day.
    lock = f"run-{PIPELINE}-{LOAD}"
    try:
        with meltano.Signals() as signals, meltano.holding(signals, LOAD, DayLayout.for_day(day), lock):
            code = _load(cfg, keys, given_run_id, signals, replay)
    except meltano.Interrupted as stop:
        return 128 + stop.signum
    if code == 0:
        print(f"==> done: ads load for {day} (run {run_id})")
    return code


def replay(key: str, given_run_id: str | None = None) -> int:
    """`nw ads replay KEY`: a kept refused response, as run <stem> of its day (or --run-id), through
    the load's checks, backup and insert; no API call."""
    try:
        where = refused.RefusedKey.parse(key)
    except ValueError as err:
        raise ConfigError(str(err), "pass a key that nw ads status lists as refused", "ads replay") from None
    cfg = config.load()
    _need_pg("the replay inserts into api_ad_data")
    day, rerun = where.day, refused.replay_command(where.body)
    run_id = config.run_id_from(given_run_id or where.stem)
    bucket = s3.Bucket(cfg)
    try:
        body = bucket.get(where.body)
        found = bucket.get_json(where.reason)
    except s3.S3Error as err:
        raise AdsError("replay", day, f"{err}; nothing was replayed", None, rerun) from None
    if body is None:
        raise AdsError("replay", day, f"{cfg.where(where.body)} does not exist; nothing was replayed", None, None)
    if found is not None:
        try:
            kept = refused.Refusal.from_json(found)
        except (ValueError, TypeError) as err:
            raise AdsError("replay", day, f"{cfg.where(where.reason)} is {err}; nothing was replayed") from None
        sha256 = hashlib.sha256(body).hexdigest()
        if kept.sha256 != sha256:
            cause = (
                f"{cfg.where(where.body)} has sha256 {sha256}, but {kept.sha256} was kept ({where.reason}): "
                "it changed since; nothing was replayed"
            )
            raise AdsError("replay", day, cause)
    with tempfile.TemporaryDirectory(prefix="nw-ads-replay-") as scratch:
        response = Path(scratch) / "response.json"
        response.write_bytes(refused.as_response(body, where.extension))
        code = load(day, run_id, Replay(where.body, response))
    if code == 0:
        backup = BackupKeys(day, run_id).object
        marker = {"key": where.body, "run_id": run_id, "backup": backup, "replayed_at": verified_now()}
        try:
            bucket.put_new(where.replayed, (json.dumps(marker, indent=2) + "\n").encode(), "application/json")
        except s3.S3Error as err:
            print(f"(the replay is not marked in {where.replayed}: {err})", file=sys.stderr)
        unrecorded = _record(lambda conn: store.mark_replayed(conn, where.body, backup))
        if unrecorded:
            print(f"(the replay is not recorded in ads_meta.objects: {unrecorded})", file=sys.stderr)
        print(f"==> replayed: {where.body} is inserted as {backup}")
    return code


def _load(
    cfg: AdsSettings, keys: BackupKeys, given_run_id: str | None, signals: meltano.Signals, replay: Replay | None
) -> int:
    """Inside the load's locks: the run, then the verified backups of its days not inserted yet."""
    day, run_id = keys.day, keys.run_id
    started = ledger.now()
    reuse = False
    if given_run_id:
        try:
            reuse = s3.Bucket(cfg).exists(keys.manifest)
        except s3.S3Error as err:
            cause = f"{err}; the API was not called"
            return _load_failed(keys, load_attempt(keys, started), cause, load_rerun(day, run_id))
    if reuse and replay:
        cause = (
            f"run {run_id} already has a verified backup {cfg.where(keys.object)}; replaying {replay.key} "
            "as that run would replace it; nothing was replayed"
        )
        rerun = f"{refused.replay_command(replay.key)} --run-id {run_id}-replay"
        return _load_failed(keys, load_attempt(keys, started), cause, rerun)
    if reuse:
        print(f"ads load: run {run_id} has a verified backup {cfg.where(keys.object)}: inserting it, no API call")
    if replay:
        print(f"ads replay: {cfg.where(replay.key)} as run {run_id} of {day}, no API call")
    code, _ = _run_one(cfg, keys, INSERT_JOB if reuse else LOAD, signals, started, replay=replay)
    if code:
        return code
    try:
        earlier = [b for b in pending(cfg, [day - dt.timedelta(days=1), day]) if b.keys != keys]
    except (s3.S3Error, PipelineError) as err:
        print(f"ads load: could not look for verified backups not inserted yet: {err}", file=sys.stderr)
        earlier = []
    for backup in earlier:
        if backup.held:
            print(f"WARNING: {backup.keys.object} is verified but not inserted, {backup.held_note()}", file=sys.stderr)
            continue
        print(f"ads load: {backup.keys.object} is verified but was never inserted: inserting it, no API call")
        code, why = _run_one(cfg, backup.keys, INSERT_JOB, signals, ledger.now(), quiet_failure=True)
        if code:
            if signals.received is not None:
                return 128 + signals.received
            note = _failures_note(backup.keys, _count_failed_insert(backup.keys, why))
            print(f"WARNING: {backup.keys.object} is still not inserted ({why}); {note}", file=sys.stderr)
    return 0


def _count_failed_insert(keys: BackupKeys, cause: str) -> int | None:
    """One more failed insert of a verified backup, in Postgres; the count so far. None when
    Postgres cannot be reached: that failure is not the backup's, and is not counted."""
    try:
        with store.connect(settings.pg_conn(PG).conninfo()) as conn:
            return store.record_insert_failure(conn, keys.object, keys.day, keys.run_id, ledger.redact(cause))
    except (psycopg.Error, PipelineError):
        return None


def _failures_note(keys: BackupKeys, failures: int | None) -> str:
    """What a failed insert means for the next loads, and the command that inserts the backup."""
    rerun = load_rerun(keys.day, keys.run_id)
    if failures is not None and failures >= records.MAX_INSERT_FAILURES:
        return (
            f"its insert has failed {failures} times: held, no load retries it by itself "
            f"(nw ads status lists it). Fix the cause, then: {rerun}"
        )
    if failures is not None:
        return f"failed insert {failures} of {records.MAX_INSERT_FAILURES} before it is held; rerun: {rerun}"
    return f"rerun: {rerun}"


def _run_one(
    cfg: AdsSettings,
    keys: BackupKeys,
    job: str,
    signals: meltano.Signals,
    started: dt.datetime,
    *,
    quiet_failure: bool = False,
    replay: Replay | None = None,
) -> tuple[int, str]:
    """One `meltano run` of ads-load or ads-insert for a run id: (0, "") once its commit is in the
    ledger, else the exit status and the cause."""
    print(f"==> ads: {job} for {keys.day}, run {keys.run_id}", flush=True)
    recorded = load_attempt(keys, started)
    with tempfile.TemporaryDirectory(prefix="nw-ads-") as scratch:
        refused_path = Path(scratch) / "refused-response"
        # Only this run's tap settings: a replay reads its file, any other call keeps what it refuses.
        env: dict[str, str | None] = {
            RUN_ID_ENV: keys.run_id,
            TAP_RESPONSE_FILE_ENV: str(replay.response) if replay else None,
            REPLAY_OF_ENV: replay.key if replay else None,
            TAP_REFUSED_PATH_ENV: None if replay or job != LOAD else str(refused_path),
        }
        # The day is pinned for the job's tasks, and its log goes with the day's other logs.
        code, tail, recorded.log = meltano.run_meltano_job(job, keys.day, signals, env, echo=_worth_showing)
        if signals.received is not None:
            name = signal.Signals(signals.received).name
            recorded.interrupted(signals.received)
            _drop_incoming(cfg, keys)
            after = _after_failure(cfg, keys)
            print(f"\nINTERRUPTED: ads load for {keys.day} ({name}).\n{after}", file=sys.stderr)
            return 128 + signals.received, f"stopped by {name}"
        if code == 0 and succeeded_since(ADS, LOAD, ledger.run_key(keys.day, keys.run_id), started):
            return 0, ""
        kept = _keep_tap_refusal(cfg, keys, refused_path)
    cause = meltano.find_cause(tail) or f"meltano run {job} exited {code}"
    if quiet_failure:
        return code or 1, f"{cause}; log {recorded.log}"
    return _load_failed(keys, recorded, cause, None, cfg, meltano.task_message(tail), kept, replay), cause


def _keep_tap_refusal(cfg: AdsSettings, keys: BackupKeys, path: Path) -> str | None:
    """The response tap-ads-api refused (left at `path` with its reason), kept under refused/."""
    reason_path = Path(f"{path}{TAP_REASON_SUFFIX}")
    if not reason_path.exists() or not path.exists():
        return None
    try:
        reason = json.loads(reason_path.read_text())["reason"]
        body = path.read_bytes()
        where, already = refused.keep(s3.Bucket(cfg), keys.day, keys.run_id, body, ".json", refused.BY_TAP, reason)
    except s3.S3Error as err:
        return f"The refused response could not be kept in S3 ({err})."
    except (OSError, ValueError, KeyError) as err:
        return f"The refused response could not be read back from {path} ({err})."
    _record_refused(keys, where, body)
    return refused.kept_line(cfg.where(where.body), where, already)


def _record_refused(keys: BackupKeys, where: refused.RefusedKey, body: bytes) -> None:
    """A kept refused response in ads_meta.objects; when the database cannot be reached it is
    only in S3 (nw ads status still lists it from there), and the failure says nothing more."""
    recorded = (where.body, store.REFUSED, keys.day, keys.run_id, None, len(body), hashlib.sha256(body).hexdigest())
    _record(lambda conn: store.record_object(conn, *recorded))


def _worth_showing(line: str) -> bool:
    """Of the job's output (all in its log): what each of the project's tasks concluded."""
    return any(f"ads {task}:" in line for task in ("begin-load", "verify-backup", "commit"))


def _drop_incoming(cfg: AdsSettings, keys: BackupKeys) -> None:
    """The response of a run that failed before its verification is no backup: remove it."""
    with contextlib.suppress(s3.S3Error):
        s3.Bucket(cfg).delete(keys.incoming)


def _after_failure(cfg: AdsSettings, keys: BackupKeys, cause: str | None = None) -> str:
    """What a failed run left, and the rerun that completes it without losing or doubling anything.
    With the failure's cause, a failed insert of a verified backup is counted."""
    try:
        verified = s3.Bucket(cfg).exists(keys.manifest)
    except s3.S3Error as err:
        return (
            f"Whether run {keys.run_id} left a verified backup cannot be checked ({err}).\n"
            f"Once S3 answers, rerun: {load_rerun(keys.day, keys.run_id)} (it inserts that backup if it is "
            "there, without the API; otherwise it calls the API once)"
        )
    if verified:
        text = (
            f"The backup {cfg.where(keys.object)} is verified and not yet inserted.\n"
            f"Rerun (inserts that backup, no API call): {load_rerun(keys.day, keys.run_id)}"
        )
        failures = _count_failed_insert(keys, cause) if cause is not None else None
        if failures is not None and failures >= records.MAX_INSERT_FAILURES:
            text += (
                f"\nIts insert has failed {failures} times: held, no load retries it by itself "
                "(nw ads status lists it)."
            )
        elif failures is not None:
            text += (
                f"\nFailed inserts of this backup: {failures} of {records.MAX_INSERT_FAILURES} "
                "(then it is held: no load retries it by itself)."
            )
        return text
    return f"Nothing of run {keys.run_id} was inserted.\nRerun (a new API call): {load_rerun(keys.day)}"


# Postgres's own words for an unreachable server (an API or S3 error says GET http... or s3://).
_PG_UNREACHABLE = ("connection to server at", "could not connect to server", "password authentication failed")


def _load_failed(
    keys: BackupKeys,
    recorded: Attempt,
    cause: str,
    rerun: str | None = None,
    cfg: AdsSettings | None = None,
    said: Sequence[str] = (),
    kept: str | None = None,
    replay: Replay | None = None,
) -> int:
    """Say why the run failed and how to complete it, and record that in the ledger."""
    cfg = cfg or config.load()
    _drop_incoming(cfg, keys)
    if start := settings.stand_in_fix(cause):  # one of the project's local servers is stopped
        cause += f"\nFix: {start}"
    elif any(words in cause for words in _PG_UNREACHABLE):
        cause += f"\nCheck {settings.describe_conn(PG)}."
    if rerun:
        after = f"Rerun: {rerun}"
    elif API_NOT_CALLED in cause:  # the first task refused: this run wrote nothing anywhere
        after = f"Rerun (a new API call): {load_rerun(keys.day)}"
    else:
        after = _after_failure(cfg, keys, cause)
        if replay and after.startswith("Nothing"):
            after = (
                f"Nothing of run {keys.run_id} was inserted; the response stays kept as {cfg.where(replay.key)}.\n"
                f"Once the cause is fixed, replay it again: {refused.replay_command(replay.key)}"
            )
    if kept:
        after = f"{kept}\n{after}"
    recorded.failed(f"{cause}\n{after}")
    print(
        f"\nFAILED: ads load for {keys.day}, run {keys.run_id}.\nCause: {ledger.redact(cause)}\n"
        + "".join(f"  | {line}\n" for line in said if line.removeprefix("ERROR: ") not in cause)
        + (f"Full log: {recorded.log}\n" if recorded.log else "")
        + after,
        file=sys.stderr,
    )
    return 1


# --- the archive -----------------------------------------------------------------------


def archive(day: dt.date, given_run_id: str | None = None) -> str:
    """Rows shown before the cutoff -> one verified S3 object -> deleted by ad_id, in one transaction."""
    cfg = config.load()
    _need_pg("the archive reads and deletes api_ad_data")
    run_id = config.run_id_from(given_run_id) if given_run_id else config.new_run_id()
    cutoff = config.cutoff_for(day, cfg.retention)  # once, from the day alone
    with attempt(ADS, ARCHIVE, day) as recorded:
        rows, key, adopted, adopted_rows = _archive(cfg, day, run_id, cutoff)
        if key:
            message = (
                f"ads archive: {text.plural(rows, 'row')} shown before {iso_utc(cutoff)} -> {cfg.where(key)}, "
                "deleted from api_ad_data"
            )
        else:
            retention = text.duration(cfg.retention)
            message = f"ads archive: nothing shown before {iso_utc(cutoff)} (day {day}, retention {retention})"
        notes = key or "nothing to archive"
        if adopted:
            message += "\n  " + "\n  ".join(adopted)
            uncommitted = text.plural(len(adopted), "uncommitted archive")
            notes += f"; adopted {uncommitted}, {text.plural(adopted_rows, 'row')} deleted"
        recorded.succeeded(notes, rows=rows + adopted_rows)
    return message


def _archive(
    cfg: AdsSettings, day: dt.date, run_id: str, cutoff: dt.datetime
) -> tuple[int, str | None, list[str], int]:
    """(rows archived, their object's key, what was adopted, rows adopted); an AdsError once
    the transaction is rolled back."""
    rerun = f"nw ads archive --date {day.isoformat()}"
    bucket = s3.Bucket(cfg)
    try:
        with _db("archive", day, "nothing was archived or deleted", rerun) as conn:
            store.ensure_schema(conn)
            with conn.transaction():
                store.lock(conn)  # one writer: a commit waits, and so does another archive
                adopted, adopted_rows = _adopt(conn, bucket)
                rows = store.lock_old_rows(conn, cutoff)
                written = _write_archive(bucket, rows, cutoff, run_id, day) if rows else None
                if written:
                    ids = [row["ad_id"] for row in rows]
                    deleted = store.delete_ids(conn, ids)
                    if deleted != len(ids):
                        raise AdsError("archive", day, f"deleted {deleted} of {len(ids)} archived rows; rolled back")
                    store.record_archive(
                        conn, written.key, run_id, day, cutoff, written.rows, written.sha256, size=written.bytes
                    )
    except s3.S3Error as err:
        raise AdsError("archive", day, f"{err}; nothing was deleted", None, rerun) from None
    except AdsError as err:
        raise AdsError("archive", day, err.cause, None, rerun) from None
    except (psycopg.Error, ValueError, KeyError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        cause = f"{type(err).__name__}: {reason}; rolled back, nothing was deleted"
        raise AdsError("archive", day, cause, None, rerun) from None
    return len(rows), written.key if written else None, adopted, adopted_rows


def _write_archive(
    bucket: s3.Bucket, rows: list[dict], cutoff: dt.datetime, run_id: str, day: dt.date
) -> ArchiveManifest:
    """The rows as one JSON-lines object, read back and checked, then its manifest (last). Both
    are created with a conditional put: the object under the first key of this run no object
    holds yet (a retried run id gets `-2`, `-3`, ...), never overwriting one."""
    body = b"".join(store.archive_line(row) for row in rows)
    attempt = 1
    while not bucket.put_new(key := config.archive_key(cutoff, run_id, attempt), body, "application/x-ndjson"):
        attempt += 1
    manifest = ArchiveManifest(
        key=key,
        run_id=run_id,
        day=day,
        cutoff=cutoff,
        rows=len(rows),
        bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    if not bucket.put_new(config.manifest_of(key), manifest.to_bytes(), "application/json"):
        raise s3.ObjectExists(
            f"{bucket.cfg.where(config.manifest_of(key))} exists already, though its object {key} was just created: "
            "written by another hand; it was not overwritten"
        )
    return manifest


def _adopt(conn, bucket: s3.Bucket) -> tuple[list[str], int]:
    """Archives that reached S3 (object and manifest) but whose transaction never committed.

    Their rows are still in api_ad_data: delete them now, once, instead of archiving them a
    second time. Inside the archive's transaction; every manifest under archive/ is checked.
    """
    known = store.archived_keys(conn)
    notes, total = [], 0
    for manifest_key in bucket.keys("archive/"):
        if not manifest_key.endswith(".manifest.json") or config.manifest_of_key(manifest_key) in known:
            continue
        found = bucket.get_json(manifest_key) or {}
        if not found.get("key") or found["key"] in known:
            continue
        try:
            manifest = ArchiveManifest.from_json(found)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{manifest_key} is {err}") from None
        body = bucket.get(manifest.key)
        if body is None or hashlib.sha256(body).hexdigest() != manifest.sha256:
            notes.append(f"{manifest.key} does not match its manifest {manifest_key}: left alone")
            continue
        ids = [json.loads(line)["ad_id"] for line in body.splitlines() if line]
        deleted = store.delete_ids(conn, ids)
        store.record_archive(
            conn,
            manifest.key,
            manifest.run_id,
            manifest.day,
            manifest.cutoff,
            len(ids),
            manifest.sha256,
            adopted=True,
            size=len(body),
        )
        total += deleted
        notes.append(
            f"an earlier run's archive {manifest.key} ({text.plural(len(ids), 'row')}) was not committed: "
            f"{text.plural(deleted, 'row')} deleted now"
        )
    return notes, total


# --- status ----------------------------------------------------------------------------


def status_lines(with_s3: bool = False, recent: int = 6) -> list[str]:
    """The `recent` latest attempts (ledger); what api_ad_data holds, the quarantined records and
    the held backups (Postgres); with_s3, the backups not inserted yet and the kept refused responses;
    last, whether the bucket still holds every object the database records (LOST lines when not)."""
    return status(with_s3, recent)[0]


def status(with_s3: bool = False, recent: int = 6) -> tuple[list[str], int]:
    """`nw ads status`: status_lines, and the exit status: 1 when a recorded object is missing or changed."""
    lines = _status_lines(with_s3, recent)
    if recent and not with_s3:
        lines.append("The S3 bucket:")
    objects, lost = objects_lines()
    return lines + objects, 1 if lost else 0


def objects_lines() -> tuple[list[str], bool]:
    """Whether the bucket holds every object the ads database records, as written: the lines to
    print (a LOST line per object missing or changed, and the fix), and whether any is."""
    try:
        cfg = config.load()
        with _db("status", None, "the S3 objects were not checked", None) as conn:
            recorded = store.recorded_objects(conn)
    except PipelineError as err:
        return [f"  S3 objects: not checked: {_unreached(err.cause)}"], False
    report = integrity.check(cfg, recorded)
    return report.lines(cfg), report.lost


def _status_lines(with_s3: bool, recent: int) -> list[str]:
    # Standing alone (`nw ads status`: recent attempts asked for), each part under a heading; under
    # `nw status`'s ads table, the lines as they are.
    lines = _attempt_lines(ledger.recent(PIPELINE, recent)) if recent else []
    if recent and not lines:
        lines += ["Latest attempts:", "  no run yet: nw ads up && nw ads load"]
    if recent:
        lines.append("The ads database:")
    try:
        with _db("status", None, "no counts", None) as conn:
            c = store.counts(conn)
            held = [
                Pending(BackupKeys(h.day, h.run_id), h.failures, h.last_error)
                for h in (store.held(conn, records.MAX_INSERT_FAILURES) if c is not None else [])
            ]
        if c is None:
            lines.append("  api_ad_data does not exist yet (nw ads up creates it)")
        else:
            lines.append(
                f"  api_ad_data: {text.plural(c['rows'], 'row')} (newest shown_at {c['newest'] or '-'}), "
                f"{text.plural(c['loads'], 'backup')} inserted, {text.plural(c['archived_rows'], 'row')} archived "
                f"in {text.plural(c['archives'], 'object')}"
            )
            lines.append(_quarantine_line(c))
            for backup in held:
                lines.append(f"  verified, not inserted: {backup.keys.object} {backup.held_note()}")
    except PipelineError as err:
        lines.append(f"  {_unreached(err.cause)}")
    if with_s3:
        lines += ["The S3 bucket:"] if recent else []
        lines += _s3_status_lines()
    return lines


def _unreached(cause: str) -> str:
    """A status line's reason: the cause's first line and, when the server is one of the project's
    local stand-ins, the command that starts it."""
    start = settings.stand_in_fix(cause)
    return cause.splitlines()[0] + (f" -> {start}" if start else "")


def _attempt_lines(entries: list[dict]) -> list[str]:
    """The latest attempts, newest first, as a table with a header (rows and seconds written as `nw status`
    writes them)."""
    if not entries:
        return []
    table = [("finished (UTC)", "step", "day/run", "status", "rows", "seconds", "notes")]
    for entry in entries:
        what = entry["notes"] or (entry["error"] or "").strip().split("\n", 1)[0]
        seconds = entry.get("wall_s") if entry.get("wall_s") is not None else entry.get("duration_s")
        table.append(
            (
                entry["finished_at"],
                entry["step"],
                entry["day"],
                entry["status"],
                text.number(entry["rows"]),
                text.seconds(seconds),
                what,
            )
        )
    widths = [max(len(row[n]) for row in table) for n in range(6)]
    right = {4, 5}  # numbers line up on their last digit
    lines = ["Latest attempts (newest first):"]
    for row in table:
        cells = [cell.rjust(widths[n]) if n in right else cell.ljust(widths[n]) for n, cell in enumerate(row[:6])]
        lines.append(f"  {'  '.join(cells)}  {row[6]}".rstrip())
    return lines


def _quarantine_line(c: dict) -> str:
    if not c["quarantined"]:
        return "  quarantined: no record (ads_meta.quarantine)"
    key, latest = c["latest_quarantined"]
    lines, backups = c["quarantined"], c["quarantined_backups"]
    return (
        f"  quarantined: {text.plural(lines, 'record')} of {text.plural(backups, 'backup')} "
        f"in ads_meta.quarantine (latest: {key} {latest.describe()})"
    )


def _s3_status_lines() -> list[str]:
    """The verified backups of the last 7 days not inserted yet (held ones are listed from Postgres),
    and the refused responses kept under refused/ that no replay has inserted."""
    lines = []
    cfg = config.load()
    today = dt.datetime.now(dt.UTC).date()
    try:
        waiting = [b for b in pending(cfg, [today - dt.timedelta(days=n) for n in range(7, -1, -1)]) if not b.held]
    except (s3.S3Error, PipelineError) as err:
        lines.append(f"  cannot list the backups of the last 7 days: {_unreached(str(err))}")
    else:
        for backup in waiting:
            keys = backup.keys
            lines.append(f"  verified, not inserted: {keys.object} -> {load_rerun(keys.day, keys.run_id)}")
        if not waiting:
            lines.append("  every verified backup of the last 7 days is inserted (or held)")
    bucket = s3.Bucket(cfg)
    try:
        kept = bucket.keys(refused.PREFIX)
        replayed = {k.removesuffix(".replayed.json") for k in kept if k.endswith(".replayed.json")}
        for key in kept:
            if not key.endswith(".reason.json") or key.removesuffix(".reason.json") in replayed:
                continue
            why = refused.Refusal.from_json(bucket.get_json(key) or {})
            lines.append(
                f"  refused, kept: {why.key} ({why.refused_by}: {why.reason.splitlines()[0][:200]}) -> {why.replay}"
            )
        if replayed:
            lines.append(f"  refused responses replayed since: {len(replayed)}")
    except (s3.S3Error, ValueError, TypeError) as err:
        lines.append(f"  cannot list the refused responses: {_unreached(str(err))}")
    return lines
