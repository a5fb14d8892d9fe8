"""The PADAM data generator: one calendar month of `entity` rows, reproducible from (YEAR, MONTH, C).

Contract (specs/padam.md §2): one Mersenne Twister stream seeded with the integer sum
YEAR + MONTH; p = min(MONTH, 13 - MONTH); gaps of randint(lo, hi) seconds with
lo = 10000 // (p*C) and hi = 20000 // (p*C); values randint(C*p, 2*C*p) on Monday..Friday and
randint(2*C*p, 4*C*p) on Saturday/Sunday (by the row's own naive date). The first row is
exactly 00:00:00 on the 1st; rows continue while t is before the first instant of the next
month. Per row the value is drawn first, then the gap; nothing else draws from the stream.

`insert_month` replaces one month in `entity` in a single transaction (advisory lock,
range delete, COPY), so a crash leaves the month as it was.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import random
import re
from collections.abc import Iterable, Iterator, Mapping

import psycopg

MAX_CONTROLLER = 1666
DEFAULT_CONTROLLER = 100
MAX_YEAR = 9998  # December of YEAR must roll over to a representable 1 January of YEAR + 1
CONTROLLER_ENV = "RANDOM_MAIN_CONTROLLER"

_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
_COPY_BATCH = 8192
# First key of the two-int advisory lock: "PADA" in ASCII, so other users of advisory locks don't collide.
_LOCK_NAMESPACE = 0x50414441

ENTITY_DDL = (
    "CREATE TABLE IF NOT EXISTS entity ("
    "entity_id bigserial PRIMARY KEY, "
    "created_at timestamp without time zone NOT NULL, "
    "value double precision NOT NULL)"
)
ENTITY_INDEX_DDL = "CREATE INDEX IF NOT EXISTS entity_created_at_idx ON entity (created_at)"


class InvalidInput(ValueError):
    """A YEAR, MONTH or RANDOM_MAIN_CONTROLLER outside the contract; nothing has been touched."""


def _whole_number(name: str, raw: object, low: int, high: int, why: str = "") -> int:
    message = f"{name} must be a whole number from {low} to {high}{why}, got {raw!r}"
    if isinstance(raw, bool):
        raise InvalidInput(message)
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, str) and _WHOLE_NUMBER.fullmatch(raw.strip()):
        number = int(raw.strip())
    else:
        raise InvalidInput(message)
    if not low <= number <= high:
        raise InvalidInput(message)
    return number


def validate(year: int | str, month: int | str, controller: int | str) -> tuple[int, int, int]:
    """Check and convert the inputs (ints, or strings from a command line / environment).

    C is capped at 1666: from 1667 the smallest gap of June/July is 0 s (duplicate
    created_at, which the warehouse keys on), from 3334 every gap is 0 and the original
    generator loops forever; C <= 0 divides by zero.
    """
    return (
        _whole_number("YEAR", year, 1, MAX_YEAR),
        _whole_number("MONTH", month, 1, 12),
        _whole_number(
            CONTROLLER_ENV,
            controller,
            1,
            MAX_CONTROLLER,
            f" (above {MAX_CONTROLLER} two rows of June and July share a second)",
        ),
    )


def controller_from_env(environ: Mapping[str, str] = os.environ) -> int:
    """C from RANDOM_MAIN_CONTROLLER; unset (or empty) means the default, 100."""
    raw = environ.get(CONTROLLER_ENV, "")
    if raw.strip() == "":
        return DEFAULT_CONTROLLER
    return validate(1, 1, raw)[2]


def month_bounds(year: int, month: int) -> tuple[datetime.datetime, datetime.datetime]:
    """The month as a half-open range of naive datetimes: [1st 00:00:00, next month's 1st 00:00:00)."""
    start = datetime.datetime(year, month, 1)
    end = datetime.datetime(year + 1, 1, 1) if month == 12 else datetime.datetime(year, month + 1, 1)
    return start, end


def month_rows(year: int | str, month: int | str, controller: int | str) -> Iterator[tuple[datetime.datetime, int]]:
    """The month's rows (created_at, value) in generation order. Inputs are validated at call time."""
    year, month, controller = validate(year, month, controller)
    return _generate(year, month, controller)


def _generate(year: int, month: int, controller: int) -> Iterator[tuple[datetime.datetime, int]]:
    rng = random.Random(year + month)  # noqa: S311 - the contract is this exact, reproducible stream
    randint = rng.randint
    p = min(month, 13 - month)
    lo, hi = 10000 // (p * controller), 20000 // (p * controller)
    low, high = controller * p, 2 * controller * p
    start, end = month_bounds(year, month)
    # Work in whole seconds from the 1st; the weekday follows from the day index.
    length = int((end - start).total_seconds())
    first_weekday = start.weekday()  # Monday = 0 .. Sunday = 6
    offset = 0
    while offset < length:
        weekday = (first_weekday + offset // 86400) % 7 < 5
        value = randint(low, high) if weekday else randint(2 * low, 2 * high)
        yield start + datetime.timedelta(seconds=offset), value
        offset += randint(lo, hi)


def contract_digest(rows: Iterable[tuple[datetime.datetime, int]]) -> str:
    """SHA-256 hex over the lines f"{created_at.isoformat()},{value}" joined by "\\n" (no trailing newline)."""
    digest = hashlib.sha256()
    separator = b""
    for created_at, value in rows:
        digest.update(separator + f"{created_at.isoformat()},{value}".encode("ascii"))
        separator = b"\n"
    return digest.hexdigest()


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create `entity` and its index on created_at if missing, and commit."""
    with conn.transaction():
        # Serialise concurrent first runs: CREATE ... IF NOT EXISTS alone can still race.
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_NAMESPACE,))
        conn.execute(ENTITY_DDL)
        conn.execute(ENTITY_INDEX_DDL)


def insert_month(conn: psycopg.Connection, year: int | str, month: int | str, controller: int | str) -> int:
    """Replace the month's rows in `entity` with freshly generated ones, in one transaction; return the count.

    Validates first (bad input touches nothing). The delete and the COPY commit together,
    so a failure in between leaves the month as it was. Needs a connection with no open
    transaction (otherwise this would become a savepoint and not commit).
    """
    year, month, controller = validate(year, month, controller)
    status = conn.info.transaction_status
    if status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(f"insert_month needs a connection with no open transaction (status {status.name})")
    start, end = month_bounds(year, month)
    count = 0
    with conn.transaction():
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NAMESPACE, year * 100 + month))
        conn.execute("DELETE FROM entity WHERE created_at >= %s AND created_at < %s", (start, end))
        with conn.cursor() as cur, cur.copy("COPY entity (created_at, value) FROM STDIN") as copy:
            lines: list[str] = []
            for created_at, value in _generate(year, month, controller):
                lines.append(f"{created_at:%Y-%m-%d %H:%M:%S}\t{value}\n")
                if len(lines) >= _COPY_BATCH:
                    copy.write("".join(lines))
                    count += len(lines)
                    lines.clear()
            if lines:
                copy.write("".join(lines))
                count += len(lines)
    return count
