"""The ads commit's accounting of every backup line (records.classify, the commit's summary) and
the refused responses' keys and replay body, in process (the e2e tier runs them for real)."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest

from northwind_elt.pipelines.ads import refused
from northwind_elt.pipelines.ads.records import (
    INTEGER_RANGE,
    MAX_INSERT_FAILURES,
    Quarantined,
    classify,
    field_faults,
    parse_payload,
    unstorable,
)
from northwind_elt.pipelines.ads.store import SHOWN, Committed

GOOD = {"ad_id": "a", "ad_group": "brand", "ad_campaign": 812, "shown_at": 1705281073.123456}


def record(**changes) -> dict:
    found = {**GOOD, **changes}
    return {k: v for k, v in found.items() if v is not ...}


def landed(*records: dict) -> list[tuple[int, object]]:
    """As the commit reads them: (line, payload parsed from its jsonb text)."""
    return [(line, parse_payload(json.dumps(r))) for line, r in enumerate(records, start=1)]


def test_valid_records_are_all_accepted() -> None:
    found = classify(
        landed(
            record(ad_id="a"),
            record(ad_id="b", ad_campaign="__unknown"),
            record(ad_id="c", ad_scheme={"origin": "manual", "approved": True}),
            record(ad_id="d", ad_campaign=INTEGER_RANGE[1], shown_at=-5),
        )
    )
    assert found.accepted == [1, 2, 3, 4] and found.quarantined == []


def test_a_duplicate_ad_id_keeps_the_first_line_and_quarantines_each_later_one() -> None:
    found = classify(
        landed(record(ad_id="x"), record(ad_id="y"), record(ad_id="x", ad_group="sales"), record(ad_id="x"))
    )
    assert found.accepted == [1, 2]
    assert found.quarantined == [
        Quarantined(3, "x", "ad_id", "duplicate ad_id within the response, line 3 repeats line 1"),
        Quarantined(4, "x", "ad_id", "duplicate ad_id within the response, line 4 repeats line 1"),
    ]


def test_a_duplicate_of_a_faulty_first_line_is_quarantined_too() -> None:
    # The first line is the one considered, even when it cannot be stored itself.
    found = classify(landed(record(ad_id="x", shown_at="soon"), record(ad_id="x")))
    assert found.accepted == []
    assert [(q.line, q.field) for q in found.quarantined] == [(1, "shown_at"), (2, "ad_id")]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"ad_id": ...}, "ad_id", "ad_id is missing"),
        ({"ad_id": 7}, "ad_id", "ad_id 7 is a number, not a string"),
        ({"ad_group": None}, "ad_group", "ad_group null is null, not a string"),
        ({"ad_campaign": ...}, "ad_campaign", "ad_campaign is missing"),
        ({"ad_campaign": "unknown"}, "ad_campaign", 'ad_campaign "unknown" is neither a whole number nor "__unknown"'),
        ({"ad_campaign": 812.5}, "ad_campaign", 'ad_campaign 812.5 is neither a whole number nor "__unknown"'),
        ({"ad_campaign": True}, "ad_campaign", 'ad_campaign true is neither a whole number nor "__unknown"'),
        ({"ad_campaign": 2**31}, "ad_campaign", f"ad_campaign {2**31} is outside the range of integer"),
        ({"shown_at": ...}, "shown_at", "shown_at is missing"),
        ({"shown_at": "2024-01-15"}, "shown_at", 'shown_at "2024-01-15" is a string, not a number (epoch seconds)'),
        ({"ad_scheme": None}, "ad_scheme", "ad_scheme null is null, not an object"),
        ({"ad_scheme": [1]}, "ad_scheme", "ad_scheme [1] is an array, not an object"),
    ],
)
def test_each_field_the_mapping_cannot_take_is_named(changes: dict, field: str, reason: str) -> None:
    found = classify(landed(record(ad_id="ok"), record(**changes)))
    assert found.accepted == [1]
    ad_id = changes.get("ad_id", "a")
    assert found.quarantined == [Quarantined(2, ad_id if isinstance(ad_id, str) else None, field, reason)]


def test_every_fault_of_a_line_is_named_not_the_first_only() -> None:
    found = classify(landed(record(ad_campaign="x", shown_at="y", ad_scheme=3)))
    (only,) = found.quarantined
    assert only.field == "ad_campaign, shown_at, ad_scheme"
    assert only.reason.count(";") == 2 and "shown_at" in only.reason and "ad_scheme 3" in only.reason


def test_a_line_that_is_not_an_object() -> None:
    assert field_faults([1, 2]) == [("the record", "the line is an array, not an object")]


def test_numbers_keep_their_digits_in_reasons() -> None:
    payload = parse_payload('{"ad_id": "a", "shown_at": 10000000000000.000001}')
    assert payload["shown_at"] == decimal.Decimal("10000000000000.000001")
    q = unstorable(42, payload, "shown_at", "timestamptz", "timestamp out of range")
    assert q == Quarantined(
        42, "a", "shown_at", "shown_at 10000000000000.000001 cannot be stored as timestamptz: timestamp out of range"
    )
    assert q.describe() == (
        "line 42 (ad_id 'a'), field shown_at: shown_at 10000000000000.000001 cannot be stored as timestamptz: "
        "timestamp out of range"
    )


def test_the_summary_accounts_for_every_line() -> None:
    key = "backup/2024-01-15/r2.jsonl"
    quarantined = [Quarantined(100, "x", "ad_id", "duplicate ad_id within the response, line 100 repeats line 1")]
    done = Committed(key, 100, 97, True, already=[(2, "b", "backup/2024-01-15/r1.jsonl")] * 2, quarantined=quarantined)
    assert done.summary() == (
        f"{key}: 100 lines, 97 new rows in api_ad_data, 2 already there "
        "(same ad_id, inserted from backup/2024-01-15/r1.jsonl), 1 quarantined in ads_meta.quarantine"
    )
    assert done.details() == [f"quarantined {quarantined[0].describe()}"]
    two_sources = Committed(key, 100, 98, True, already=[(1, "a", "k1"), (2, "b", "k2"), (3, "c", "k2")])
    assert "3 already there (same ad_id, inserted from k1 (1), k2 (2)), 0 quarantined" in two_sources.summary()
    assert (
        Committed(key, 100, 0, False).summary() == f"{key} was inserted before (ads_meta.loads); nothing inserted again"
    )


def test_many_quarantined_lines_are_listed_up_to_a_limit_then_counted() -> None:
    many = [Quarantined(n, str(n), "shown_at", "r") for n in range(1, SHOWN + 4)]
    details = Committed("k", 100, 0, True, quarantined=many).details()
    assert len(details) == SHOWN + 1
    assert details[-1] == (
        "... and 3 more: SELECT line, ad_id, field, reason FROM ads_meta.quarantine WHERE backup_key = 'k'"
    )


def test_a_backup_is_held_at_the_limit() -> None:
    from northwind_elt.pipelines.ads.commands import Pending
    from northwind_elt.pipelines.ads.config import BackupKeys

    keys = BackupKeys(dt.date(2024, 1, 15), "r1")
    assert not Pending(keys, MAX_INSERT_FAILURES - 1, "e").held
    held = Pending(keys, MAX_INSERT_FAILURES, "checksum mismatch\nmore")
    assert held.held
    assert held.held_note() == (
        f"held: its insert failed {MAX_INSERT_FAILURES} times (last: checksum mismatch); no load retries it by "
        "itself. Fix the cause, then: nw ads load --date 2024-01-15 --run-id r1"
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("refused/2024-01-16/r1.json", (dt.date(2024, 1, 16), "r1", ".json")),
        ("refused/2024-01-16/r1-2.jsonl", (dt.date(2024, 1, 16), "r1-2", ".jsonl")),
        (
            "s3://ad-data/refused/2024-01-16/scheduled__2024-01-16T12-12-00-00-00.json",
            (dt.date(2024, 1, 16), "scheduled__2024-01-16T12-12-00-00-00", ".json"),
        ),
    ],
)
def test_a_refused_key_names_its_day_and_run(key: str, expected: tuple) -> None:
    where = refused.RefusedKey.parse(key)
    assert (where.day, where.stem, where.extension) == expected
    assert where.reason == f"refused/2024-01-16/{expected[1]}.reason.json"
    assert where.body == key.removeprefix("s3://ad-data/")


@pytest.mark.parametrize(
    "key",
    [
        "backup/2024-01-16/r1.jsonl",
        "refused/2024-01-16/r1.reason.json",
        "refused/2024-13-01/r1.json",
        "refused/x/r.json",
    ],
)
def test_other_keys_are_not_refused_responses(key: str) -> None:
    with pytest.raises(ValueError, match="refused"):
        refused.RefusedKey.parse(key)


def test_a_kept_response_replays_as_the_tap_reads_it() -> None:
    assert refused.as_response(b'[{"a": 1}]', ".json") == b'[{"a": 1}]'
    lines = b'{"a":1.50}\n{"b":"x"}\n'
    assert refused.as_response(lines, ".jsonl") == b'[{"a":1.50},{"b":"x"}]'  # each record's text unchanged
    assert json.loads(refused.as_response(lines, ".jsonl"), parse_float=decimal.Decimal) == [
        {"a": decimal.Decimal("1.50")},
        {"b": "x"},
    ]


def test_the_reason_object_reads_back() -> None:
    why = refused.Refusal(
        key="refused/2024-01-16/r1.json",
        run_id="r1",
        day="2024-01-16",
        refused_by=refused.BY_TAP,
        reason="record 5 (ad_id 'x') from GET http://127.0.0.1:1/ads breaks the schema at the record: …",
        bytes=10,
        sha256="0" * 64,
        refused_at="2024-01-16T12:12:00+00:00",
        replay=refused.replay_command("refused/2024-01-16/r1.json"),
    )
    raw = why.to_bytes()
    assert list(json.loads(raw)) == [
        "key",
        "run_id",
        "day",
        "refused_by",
        "reason",
        "bytes",
        "sha256",
        "refused_at",
        "replay",
    ]
    assert refused.Refusal.from_json(json.loads(raw)) == why
    with pytest.raises(ValueError, match="without sha256"):
        refused.Refusal.from_json({k: v for k, v in json.loads(raw).items() if k != "sha256"})
