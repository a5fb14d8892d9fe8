"""Which lines of a backup api_ad_data can take, and why the others cannot (no database here).

A backup holds the API's response as received, one record per line. The commit inserts every
line it can and keeps the others in `ads_meta.quarantine`, each named by its line (1-based,
as in the S3 object), its ad_id, the field(s) at fault and the reason:

- a duplicate `ad_id` within the response: the first line with that ad_id is the one
  considered (inserted, unless it has a fault of its own); every later line with it is
  quarantined ("duplicate ad_id within the response, line N repeats line M"), even if its
  other fields differ: which version is right is for a person to decide, from both raw lines;
- a field the mapping cannot take: ad_id or ad_group missing or not a string, ad_campaign
  neither "__unknown" nor a whole number within integer's range, shown_at missing or not a
  number, ad_scheme present but not an object;
- a value Postgres refuses (shown_at outside timestamptz's range, say): found by the commit
  itself (`store._unstorable`), named here by `unstorable`.

A line is judged on the payload as it landed (jsonb), which is what the insert reads.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

UNKNOWN_CAMPAIGN = "__unknown"
INTEGER_RANGE = (-(2**31), 2**31 - 1)  # api_ad_data.ad_campaign is a Postgres integer
# A verified backup whose insert failed this many times is held: no later load retries it by
# itself (each says so); `nw ads load --date D --run-id R` still does.
MAX_INSERT_FAILURES = 3
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class Quarantined:
    line: int
    ad_id: str | None
    field: str  # the field at fault, or several: "ad_campaign, shown_at"
    reason: str

    def describe(self) -> str:
        return f"line {self.line} (ad_id {self.ad_id!r}), field {self.field}: {self.reason}"


@dataclass(frozen=True)
class Classified:
    accepted: list[int]  # lines to insert, in order
    quarantined: list[Quarantined]


def parse_payload(text: str) -> Any:
    """A landed payload as JSON; numbers keep their digits (Decimal), integers stay int."""
    return json.loads(text, parse_float=decimal.Decimal)


def shown(value: Any) -> str:
    """A JSON value as the reason quotes it (shortened)."""
    text = str(value) if isinstance(value, decimal.Decimal) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | decimal.Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool)


def field_faults(payload: Any) -> list[tuple[str, str]]:
    """(field, reason) for each field of one record the mapping cannot take."""
    if not isinstance(payload, dict):
        return [("the record", f"the line is {_json_type(payload)}, not an object")]
    faults = []
    for name in ("ad_id", "ad_group"):
        if name not in payload:
            faults.append((name, f"{name} is missing"))
        elif not isinstance(payload[name], str):
            faults.append((name, f"{name} {shown(payload[name])} is {_json_type(payload[name])}, not a string"))
    campaign = payload.get("ad_campaign")
    if "ad_campaign" not in payload:
        faults.append(("ad_campaign", "ad_campaign is missing"))
    elif campaign != UNKNOWN_CAMPAIGN:
        if not isinstance(campaign, int) or isinstance(campaign, bool):
            faults.append(
                ("ad_campaign", f'ad_campaign {shown(campaign)} is neither a whole number nor "{UNKNOWN_CAMPAIGN}"')
            )
        elif not INTEGER_RANGE[0] <= campaign <= INTEGER_RANGE[1]:
            faults.append(("ad_campaign", f"ad_campaign {campaign} is outside the range of integer"))
    if "shown_at" not in payload:
        faults.append(("shown_at", "shown_at is missing"))
    elif not _is_number(payload["shown_at"]):
        value = payload["shown_at"]
        faults.append(("shown_at", f"shown_at {shown(value)} is {_json_type(value)}, not a number (epoch seconds)"))
    if "ad_scheme" in payload and not isinstance(payload["ad_scheme"], dict):
        value = payload["ad_scheme"]
        faults.append(("ad_scheme", f"ad_scheme {shown(value)} is {_json_type(value)}, not an object"))
    return faults


def classify(payloads: Sequence[tuple[int, Any]]) -> Classified:
    """Each (line, payload) of a backup, in line order: accepted, or quarantined with every
    fault it has (a duplicate ad_id first)."""
    first_line: dict[str, int] = {}
    accepted, quarantined = [], []
    for line, payload in payloads:
        faults = []
        ad_id = payload.get("ad_id") if isinstance(payload, dict) else None
        if isinstance(ad_id, str):
            if ad_id in first_line:
                faults.append(
                    ("ad_id", f"duplicate ad_id within the response, line {line} repeats line {first_line[ad_id]}")
                )
            else:
                first_line[ad_id] = line
        faults += field_faults(payload)
        if faults:
            fields = ", ".join(dict.fromkeys(name for name, _ in faults))
            quarantined.append(
                Quarantined(line, ad_id if isinstance(ad_id, str) else None, fields, "; ".join(r for _, r in faults))
            )
        else:
            accepted.append(line)
    return Classified(accepted, quarantined)


def unstorable(line: int, payload: dict, field: str, column_type: str, message: str) -> Quarantined:
    """A line whose `field` Postgres refuses to convert, with Postgres's words."""
    return Quarantined(
        line,
        payload.get("ad_id"),
        field,
        f"{field} {shown(payload.get(field))} cannot be stored as {column_type}: {message}",
    )
