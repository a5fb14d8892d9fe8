"""The people/places pipeline: CSVs -> Postgres -> data/summary_output.json, checked
against counts computed here from the CSV files."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from support import PEOPLE_DAY, PROJECT, Pipeline

DATA = PROJECT / "data" / "people-places"
DAY = PEOPLE_DAY  # the session's `people_day` fixture runs it (tests/conftest.py)
PEOPLE_COLUMNS = {"given_name": "string", "family_name": "string", "date_of_birth": "date", "place_of_birth": "string"}
PLACES_COLUMNS = {"city": "string", "county": "string", "country": "string"}


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def expected_summary() -> dict[str, int]:
    """People per country of birth, joined in Python from the two files, most first."""
    country_of = {row["city"]: row["country"] for row in read(DATA / "places.csv")}
    counts = Counter(country_of[row["place_of_birth"]] for row in read(DATA / "people.csv"))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def files_env(people: Path, places: Path) -> dict[str, str]:
    files = [
        {"stream": "people", "path": str(people), "key": [], "columns": PEOPLE_COLUMNS},
        {"stream": "places", "path": str(places), "key": ["city"], "columns": PLACES_COLUMNS},
    ]
    return {"TAP_TYPED_CSV__PEOPLE_FILES": json.dumps(files)}


def people_db(pipeline: Pipeline):
    import psycopg

    e = pipeline.env
    return psycopg.connect(
        host=e["PEOPLE_PG_HOST"],
        port=e["PEOPLE_PG_PORT"],
        user=e["PEOPLE_PG_USER"],
        password=e["PEOPLE_PG_PASSWORD"],
        dbname=e["PEOPLE_PG_DATABASE"],
        autocommit=True,
    )


def test_the_summary_is_people_per_country_computed_from_the_files(people_day: Pipeline) -> None:
    summary = people_day.data_dir / "summary_output.json"
    text = summary.read_bytes()
    assert json.loads(text) == expected_summary()
    assert list(json.loads(text)) == list(expected_summary()), "ordered by count, then name"
    # The sample's exact shape: compact, UTF-8, no trailing newline.
    assert text == json.dumps(expected_summary(), ensure_ascii=False, separators=(",", ":")).encode()
    assert (people_day.data_dir / "output" / DAY / "people" / "summary_output.json").read_bytes() == text


def test_postgres_holds_every_person_and_place_and_the_multibyte_names_byte_for_byte(people_day: Pipeline) -> None:
    people = read(DATA / "people.csv")
    wanted = sorted(
        (r["given_name"], r["family_name"]) for r in people if not (r["given_name"] + r["family_name"]).isascii()
    )
    assert len(wanted) == 20
    with people_db(people_day) as conn:
        assert conn.execute("SELECT count(*) FROM raw.people WHERE _day = %s", [DAY]).fetchone() == (len(people),)
        assert conn.execute("SELECT count(*) FROM raw.places WHERE _day = %s", [DAY]).fetchone() == (114,)
        got = conn.execute(
            "SELECT given_name, family_name FROM raw.people WHERE _day = %s"
            " AND (given_name || family_name) ~ '[^[:ascii:]]' ORDER BY 1, 2",
            [DAY],
        ).fetchall()
    assert sorted((g.encode(), f.encode()) for g, f in got) == sorted((g.encode(), f.encode()) for g, f in wanted)


def test_the_tagged_exports_are_written_as_json_and_csv(people_day: Pipeline) -> None:
    folder = people_day.data_dir / "output" / DAY / "people"
    for model in ("summary_output", "people_per_county", "people_per_country_decade"):
        assert (folder / f"{model}.csv").exists() and (folder / f"{model}.json").exists(), model
    per_county = json.loads((folder / "people_per_county.json").read_text())
    county_of = {row["city"]: (row["country"], row["county"]) for row in read(DATA / "places.csv")}
    want = Counter(county_of[row["place_of_birth"]] for row in read(DATA / "people.csv"))
    assert {(r["country"], r["county"]): r["people"] for r in per_county} == dict(want)


def test_a_rerun_gives_byte_identical_outputs(people_day: Pipeline) -> None:
    folder = people_day.data_dir / "output" / DAY / "people"

    def digests() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    before = digests()
    people_day.run_ok("people-daily", DAY)
    assert digests() == before


BAD = {
    "invalid UTF-8": (
        b"given_name,family_name,date_of_birth,place_of_birth\nJo\xffhn,W,1842-09-30,Dumfries\n",
        "line 2: invalid UTF-8 byte(s)",
    ),
    "missing column": (
        b"given_name,family_name,date_of_birth\nJohn,W,1842-09-30\n",
        "line 1 (header): missing column(s) ['place_of_birth']",
    ),
    "bad date": (
        b"given_name,family_name,date_of_birth,place_of_birth\nJohn,W,1842-02-30,Dumfries\n",
        "line 2, column 'date_of_birth': '1842-02-30' is not a date",
    ),
    "empty file": (b"", "the file is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_the_extract_naming_file_line_and_column(pipeline: Pipeline, tmp_path: Path, case) -> None:
    content, message = BAD[case]
    bad = tmp_path / "people.csv"
    bad.write_bytes(content)
    day = "2024-09-02"
    result = pipeline.run("people-extract", day, extra_env=files_env(bad, DATA / "places.csv"))
    assert result.returncode != 0
    assert f"{bad}: {message}" in result.stderr, result.stderr[-2000:]
    assert not (pipeline.data_dir / "_manifests" / day / "people-extract.json").exists()
    assert not list(pipeline.data_dir.glob(f"people/*/{day}/*"))


def test_a_repeated_header_line_fails_the_day_naming_file_and_line_and_publishes_nothing(
    people_day: Pipeline, tmp_path: Path
) -> None:
    """places.csv with its header again as line 2: never a place ('city', 'county', 'country')."""
    day = "2024-09-05"
    summary = people_day.data_dir / "summary_output.json"
    before = summary.read_bytes()
    lines = (DATA / "places.csv").read_text(encoding="utf-8").splitlines()
    places = tmp_path / "places.csv"
    places.write_text("\n".join([lines[0], *lines]) + "\n", encoding="utf-8")
    result = people_day.run("people-daily", day, extra_env=files_env(DATA / "people.csv", places))
    assert result.returncode != 0
    message = (
        f"{places}: line 2: a repeated header line ({lines[0]}), not a data row; "
        "remove it (the header belongs on line 1 only)"
    )
    assert f"FAILED: step 'people-extract' for {day}" in result.stderr, result.stderr[-3000:]
    assert f"Cause: {message}" in result.stderr, result.stderr[-3000:]
    assert f"Fix the cause, then rerun: nw run --date {day} --from people-extract" in result.stderr
    # Nothing of the day: no manifest, no partition, no row, no output; the summary is the last day's.
    assert not list((people_day.data_dir / "_manifests" / day).glob("*"))
    assert not list(people_day.data_dir.glob(f"people/*/{day}/*"))
    assert not (people_day.data_dir / "output" / day).exists()
    with people_db(people_day) as conn:
        for table in ("people", "places"):
            assert conn.execute(f"SELECT count(*) FROM raw.{table} WHERE _day = %s", [day]).fetchone() == (0,)
    assert summary.read_bytes() == before


def test_a_person_born_in_an_unknown_place_fails_the_audit_and_keeps_the_summary(
    people_day: Pipeline, tmp_path: Path
) -> None:
    day = "2024-09-03"
    summary = people_day.data_dir / "summary_output.json"
    before = summary.read_bytes()
    people = tmp_path / "people.csv"
    people.write_bytes((DATA / "people.csv").read_bytes() + b"Ola,Nordmann,1901-01-01,Atlantis\n")
    env = files_env(people, DATA / "places.csv")
    people_day.run_ok("people-extract", day, extra_env=env)
    people_day.run_ok("people-load", day)
    failed = people_day.run("people-transform", day)
    assert failed.returncode != 0
    assert "relationships_same_day_stg_people" in failed.stderr and re.search(r"\b1 failing row[,)]", failed.stderr)
    refused = people_day.run("people-export", day)
    assert refused.returncode != 0 and "refused: people-transform" in refused.stderr
    assert summary.read_bytes() == before


def test_a_city_in_two_countries_is_refused_by_name(pipeline: Pipeline, tmp_path: Path) -> None:
    day = "2024-09-04"
    places = tmp_path / "places.csv"
    places.write_bytes((DATA / "places.csv").read_bytes() + b"\nAberdeen,Grampian,Atlantis")
    pipeline.run_ok("people-extract", day, extra_env=files_env(DATA / "people.csv", places))
    pipeline.run_ok("people-load", day)
    failed = pipeline.run("people-transform", day)
    assert failed.returncode != 0
    assert "unique_combination_of_columns_stg_places_city" in failed.stderr
