"""Side table ``runtime_speed`` of a results store: speed per (setting, runtime, batch size).

Why a side table and not records: a record is one evaluated cell (a noise, a seed, its accuracy);
a runtime measurement belongs to a *setting* (model, method, native parameters, selection) and
has its own grain (runtime x batch size). Putting it into records would either multiply the
accuracy rows by runtimes and batch sizes (every accuracy view would then have to filter them
out) or hide lists in JSON columns. A side table keeps every existing view unchanged and lets
the runtimes view read one flat table. It is added like ``per_sample``: without a schema-version
bump; stores written before it simply have no runtime rows (``CREATE TABLE IF NOT EXISTS`` when
written to).

Rows are keyed by (suite, model, weights, method, setting, selection, runtime, batch size,
threads): measuring again replaces the row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitbench.core.errors import VitbenchError
from vitbench.store.results import ResultsStore

if TYPE_CHECKING:
    import pandas as pd

#: Columns of the side table and their SQLite types.
RUNTIME_FIELDS: dict[str, str] = {
    "suite": "TEXT",
    "model": "TEXT",
    "weights": "TEXT",
    "method": "TEXT",
    "setting": "TEXT",
    "keep_ratio": "REAL",
    "selection": "TEXT",
    "gmacs": "REAL",
    "runtime": "TEXT",
    "runtime_version": "TEXT",
    "threads": "INTEGER",
    "dtype": "TEXT",
    "export_path": "TEXT",
    "export_s": "REAL",
    "prepare_s": "REAL",
    "batch_size": "INTEGER",
    "verdict": "TEXT",
    "equal": "INTEGER",
    "max_abs_diff": "REAL",
    "median_ms": "REAL",
    "p90_ms": "REAL",
    "img_per_s": "REAL",
    "times_ms": "TEXT",  # JSON list: per-run milliseconds in round order (paired speedups)
    "round_id": "TEXT",  # rows timed in the same interleaved rounds share it
    "error": "TEXT",
    "device": "TEXT",
    "vitbench_version": "TEXT",
    "measured_at": "TEXT",
}
_KEY = ("suite", "model", "weights", "method", "setting", "selection", "runtime", "batch_size", "threads")
_DDL = (
    "CREATE TABLE IF NOT EXISTS runtime_speed ("
    + ", ".join(f'"{k}" {v}' for k, v in RUNTIME_FIELDS.items())
    + f", PRIMARY KEY ({', '.join(_KEY)}))"
)


def write_runtime_rows(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert (or replace) runtime rows in the store at ``path``; one transaction. Returns the count.

    Raises:
        ValueError: a row has an unknown column.
        VitbenchError: the file cannot be written.
    """
    rows = list(rows)
    for row in rows:
        unknown = sorted(set(row) - set(RUNTIME_FIELDS))
        if unknown:
            raise ValueError(f"unknown runtime field(s): {', '.join(unknown)}")
    ResultsStore(path).close()  # a new file becomes a results store (meta, records) first
    names = list(RUNTIME_FIELDS)
    values = [
        [json.dumps(r.get(n)) if n == "times_ms" and r.get(n) is not None else r.get(n) for n in names]
        for r in rows
    ]
    try:
        conn = sqlite3.connect(str(path), timeout=60)
        try:
            with conn:
                conn.execute(_DDL)
                conn.executemany(
                    f"INSERT OR REPLACE INTO runtime_speed ({', '.join(names)}) "
                    f"VALUES ({', '.join('?' for _ in names)})",
                    values,
                )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise VitbenchError(
            f"cannot write runtime rows to {path} ({exc}); pass --results to a writable path"
        ) from None
    return len(rows)


def load_runtime_rows(path: str | Path) -> pd.DataFrame:
    """The ``runtime_speed`` table as a DataFrame (empty, with its columns, in stores without it).

    ``times_ms`` is decoded to a list of floats per row.

    Raises:
        VitbenchError: the file does not exist or is not an SQLite file.
    """
    import pandas as pd

    p = Path(path).expanduser()
    if not p.is_file():
        raise VitbenchError(f"results file {path} does not exist; pass --results to a store")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "runtime_speed" not in tables:
                return pd.DataFrame(columns=list(RUNTIME_FIELDS))
            df = pd.read_sql_query("SELECT * FROM runtime_speed", conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise VitbenchError(f"cannot read {path} ({exc}); pass a vitbench results store") from None
    df["times_ms"] = [json.loads(t) if isinstance(t, str) else [] for t in df["times_ms"]]
    # SQL NULL in a text column is "" here, whatever pandas loads it as: None in an all-NULL
    # object column, NaN (which is truthy) in pandas 3's string columns once one row has a value
    # (a timed row would read as failed as soon as another row of the store was not exportable)
    for col, kind in RUNTIME_FIELDS.items():
        if kind == "TEXT" and col != "times_ms" and col in df:
            df[col] = [v if isinstance(v, str) else "" for v in df[col]]
    df.attrs["source"] = str(path)
    return df
