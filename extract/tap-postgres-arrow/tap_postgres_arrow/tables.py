"""Which relations of the source are extracted: one rule, applied to the discovered catalog.

- ordinary and partitioned tables are extracted; a partition is not (its rows come through
  its parent, so extracting both would deliver them twice);
- views, materialized views and foreign tables only when named in ``include_views``;
- a relation named in ``exclude_tables`` never is (the way out for a table that cannot be
  extracted exactly);
- a relation the role may not SELECT from is skipped, and the tap warns naming it.

Names are matched exactly against the relation's name, in every schema the tap reads.

This module is standard library only, so a caller that computes the tables a run must
deliver (northwind-elt's `nw begin extract-postgres`) can apply the very same rule; the
project's tests load it by path and compare.
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass, field

TABLE_KINDS = frozenset({"r", "p"})  # ordinary, partitioned
VIEW_KINDS = frozenset({"v", "m", "f"})  # view, materialized view, foreign table

# One row per relation of the schemas read: what the rule needs to know of it.
RELATIONS_SQL = """
SELECT n.nspname AS schema_name, c.relname AS name, c.relkind::text AS kind, c.relispartition AS is_partition,
       pg_catalog.has_table_privilege(c.oid, 'SELECT') AS readable
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    kind: str
    is_partition: bool = False
    readable: bool = True

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class TableChoice:
    """The relations extracted, and the ones left out, by reason."""

    extracted: list[Relation] = field(default_factory=list)
    partitions: list[Relation] = field(default_factory=list)
    views_not_included: list[Relation] = field(default_factory=list)
    excluded: list[Relation] = field(default_factory=list)
    unreadable: list[Relation] = field(default_factory=list)


def parse_names(value: t.Any) -> list[str]:
    """A list setting given as a list, a JSON array text, or comma-separated names.

    Meltano passes an environment variable's text as is: ``t1,t2`` (each name stripped of
    surrounding blanks; empty entries ignored) or, for names holding a comma, ``["a,b", "c"]``.
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            value = json.loads(text)
        else:
            return [name.strip() for name in text.split(",") if name.strip()]
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        msg = f"expected a list of names, got {value!r}"
        raise ValueError(msg)
    return list(value)


def choose_tables(
    relations: t.Iterable[Relation], include_views: t.Iterable[str] = (), exclude_tables: t.Iterable[str] = ()
) -> TableChoice:
    """Apply the rule (see the module's docstring); each list keeps the relations' order."""
    views, excluded = set(include_views), set(exclude_tables)
    choice = TableChoice()
    for rel in relations:
        if rel.name in excluded:
            choice.excluded.append(rel)
        elif rel.kind in TABLE_KINDS and rel.is_partition:
            choice.partitions.append(rel)
        elif rel.kind in VIEW_KINDS and rel.name not in views:
            choice.views_not_included.append(rel)
        elif rel.kind not in TABLE_KINDS | VIEW_KINDS:
            continue
        elif not rel.readable:
            choice.unreadable.append(rel)
        else:
            choice.extracted.append(rel)
    return choice
