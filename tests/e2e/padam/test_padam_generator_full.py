"""PADAM generator at the evaluation setting C=100 (slow tier, no database): the spec's pinned hashes."""

from __future__ import annotations

import pytest

from northwind_elt.pipelines.padam.generator import contract_digest, month_rows

# From specs/padam.md §2 (measured on the original generator), never from this implementation.
SPEC_C100 = {
    2022: (742_650, "95df1cabc6664090a777f06dbdf88187891180f4a9660d00dda7f196e159e9c5"),
    2023: (742_784, "8d6047e4e78ad2bdd4f86eec4c23a1334bed5fd80de59c21260c2d73ffedb324"),
}
SPEC_2022_C100_PER_MONTH = [17878, 32293, 54070, 69132, 89423, 105729, 109348, 89237, 69046, 54078, 34566, 17850]
SPEC_2022_C100_SUM = 623_132_098


@pytest.mark.parametrize("year", sorted(SPEC_C100))
def test_year_at_c100_matches_the_spec_hash(year: int) -> None:
    count, digest = SPEC_C100[year]
    rows = [row for month in range(1, 13) for row in month_rows(year, month, 100)]
    assert len(rows) == count
    assert contract_digest(rows) == digest


def test_2022_c100_per_month_counts_and_sum() -> None:
    counts, total = [], 0
    for month in range(1, 13):
        values = [value for _, value in month_rows(2022, month, 100)]
        counts.append(len(values))
        total += sum(values)
    assert counts == SPEC_2022_C100_PER_MONTH
    assert total == SPEC_2022_C100_SUM
