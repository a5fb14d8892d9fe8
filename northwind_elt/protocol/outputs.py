"""Render a relation's rows as files, by Postgres itself.

Postgres prints every value in its canonical text form (a real 9.8 prints as 9.8, where
a Python float round trip would print 9.800000190734863), and an ORDER BY makes the files
byte-identical across reruns.
"""

from __future__ import annotations

import psycopg
from psycopg import sql


def copy_csv(conn: psycopg.Connection, query: sql.Composable) -> bytes:
    """A query's rows as CSV with a header, rendered by Postgres itself."""
    out = bytearray()
    with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)").format(query)) as copy:
        for block in copy:
            out += block
    return bytes(out)
