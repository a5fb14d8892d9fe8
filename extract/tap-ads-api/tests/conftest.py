"""Two of the SDK's standard attribute tests cannot hold for this API, by its contract.

- `attribute_is_integer[ads.ad_campaign]`: the schema is `anyOf` integer / string and about
  half of the values are the string "__unknown"; the SDK test takes the integer branch alone.
- `attribute_not_null[ads.ad_scheme]`: the key is *absent* in ~80 % of records (never null);
  the SDK test reads the absent key as null.

They are marked xfail(strict=True): they must keep failing for exactly this reason.
"""

from __future__ import annotations

import pytest

EXPECTED_FAILURES = {
    "test_tap_stream_attribute_is_integer[ads.ad_campaign]": "ad_campaign is integer or the string '__unknown'",
    "test_tap_stream_attribute_not_null[ads.ad_scheme]": "ad_scheme is absent (not null) in most records",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = EXPECTED_FAILURES.get(item.name)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
