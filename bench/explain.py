"""How the relay's filter SQL is planned: EXPLAIN of a statement as the relay runs it.

The relay's statements are prepared and run with the session's ``plan_cache_mode``. A plain
``EXPLAIN <sql>`` with bound values plans for those values, which is not the plan a
prepared statement gets under ``force_generic_plan``; so the statement is PREPAREd and
``EXPLAIN EXECUTE``d with its values written as literals of the parameter types the server
inferred.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from relay.storage.migrate import Conn

__all__ = ["explain"]

_names = itertools.count(1)


async def explain(
    conn: Conn, sql: str, args: Sequence[Any], *, analyze: bool = True, text: bool = False
) -> Any:
    """The plan of ``sql`` with ``args`` as a prepared statement on ``conn``: the JSON plan
    (``[{"Plan": ...}]``), or with ``text`` the lines of the text form. With ``analyze`` the
    statement runs (``ANALYZE, BUFFERS``)."""
    name = f"fitrelay_explain_{next(_names)}"
    await conn.execute(f"PREPARE {name} AS {sql}")
    try:
        types = await conn.fetchval(
            "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1", name
        )
        literals = [
            await conn.fetchval(f"SELECT quote_nullable($1::{kind})", arg)
            for kind, arg in zip(types or [], args, strict=True)
        ]
        options = ["ANALYZE", "BUFFERS"] if analyze else []
        options.append("FORMAT TEXT" if text else "FORMAT JSON")
        execute = f"EXECUTE {name}({', '.join(literals)})" if literals else f"EXECUTE {name}"
        rows = await conn.fetch(f"EXPLAIN ({', '.join(options)}) {execute}")
    finally:
        await conn.execute(f"DEALLOCATE {name}")
    if text:
        return [row[0] for row in rows]
    plan = rows[0][0]
    return json.loads(plan) if isinstance(plan, str) else plan
