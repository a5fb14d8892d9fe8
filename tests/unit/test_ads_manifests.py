"""The ads pipeline's two S3 manifests (core.manifests): the bytes users' buckets already hold,
and reading them back, including an archive manifest written by another hand."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from northwind_elt.core.manifests import ArchiveManifest, BackupManifest

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

# Exactly what `verify-backup` wrote before the manifests moved to core.manifests.
BACKUP_BYTES = f"""{{
  "key": "backup/2024-01-15/r1.jsonl",
  "run_id": "r1",
  "day": "2024-01-15",
  "rows": 100,
  "distinct_ad_ids": 98,
  "bytes": 23456,
  "sha256": "{SHA}",
  "verified_at": "2024-01-15T12:13:14+00:00"
}}
""".encode()

# Exactly what `archive` wrote.
ARCHIVE_BYTES = f"""{{
  "key": "archive/2024-01-15/api_ad_data_20240115T120000Z_r2.jsonl",
  "run_id": "r2",
  "day": "2024-01-16",
  "cutoff": "2024-01-15T12:00:00Z",
  "rows": 41,
  "bytes": 9000,
  "sha256": "{SHA}"
}}
""".encode()

BACKUP = BackupManifest(
    key="backup/2024-01-15/r1.jsonl",
    run_id="r1",
    day=dt.date(2024, 1, 15),
    rows=100,
    distinct_ad_ids=98,
    bytes=23456,
    sha256=SHA,
    verified_at="2024-01-15T12:13:14+00:00",
)
ARCHIVE = ArchiveManifest(
    key="archive/2024-01-15/api_ad_data_20240115T120000Z_r2.jsonl",
    run_id="r2",
    day=dt.date(2024, 1, 16),
    cutoff=dt.datetime(2024, 1, 15, 12, tzinfo=dt.UTC),
    rows=41,
    bytes=9000,
    sha256=SHA,
)


def test_the_manifests_are_written_byte_for_byte_as_before() -> None:
    assert BACKUP.to_bytes() == BACKUP_BYTES
    assert ARCHIVE.to_bytes() == ARCHIVE_BYTES


def test_the_manifests_in_a_bucket_read_back_as_written() -> None:
    assert BackupManifest.from_json(json.loads(BACKUP_BYTES)) == BACKUP
    assert ArchiveManifest.from_json(json.loads(ARCHIVE_BYTES)) == ARCHIVE


def test_an_archive_manifest_without_a_run_id_or_counts_is_still_adopted() -> None:
    written_elsewhere = {"key": ARCHIVE.key, "day": "2024-01-16", "cutoff": "2024-01-15T12:00:00Z", "sha256": SHA}
    read = ArchiveManifest.from_json(written_elsewhere)
    assert (read.key, read.run_id, read.day, read.cutoff, read.sha256) == (
        ARCHIVE.key,
        "?",
        ARCHIVE.day,
        ARCHIVE.cutoff,
        SHA,
    )


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (
            BackupManifest,
            {"key": "k", "run_id": "r", "day": "2024-01-15"},
            "not a backup manifest: no 'rows', 'sha256'",
        ),
        (ArchiveManifest, {"key": "k", "sha256": SHA}, "not an archive manifest: no 'day', 'cutoff'"),
        (ArchiveManifest, {"key": "k", "day": "2024-13-01", "cutoff": "x", "sha256": SHA}, "month must be in 1..12"),
    ],
)
def test_a_manifest_missing_a_field_is_refused_naming_it(kind: type, value: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kind.from_json(value)
