"""The results store: one SQLite file, one typed row per evaluated cell.

The store is append-mostly and crash-safe: every :meth:`ResultsStore.write` is its own committed
transaction (WAL journal), so a run that dies loses nothing already finished, and re-running a
suite skips the cells in :meth:`ResultsStore.done_keys`. A failed cell is stored with its
one-line ``error`` and is replaced when the cell is re-run (insert-or-replace on ``cell_key``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import numbers
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from vitbench.core.errors import VitbenchError
from vitbench.core.version import GMACS_COUNTER_VERSION as COUNTER_VERSION
from vitbench.core.version import VERSION
from vitbench.store.per_sample import PerSample
from vitbench.store.records import JSON_FIELDS, RECORD_FIELDS, SCHEMA_VERSION

if TYPE_CHECKING:
    import pandas as pd

_FIX = "pass --results to a writable path"
#: SQLite primary result codes (https://sqlite.org/rescode.html); extended codes keep them in the low byte.
_SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_CANTOPEN = 8, 11, 14
_COLUMNS = tuple(RECORD_FIELDS)
#: Side table of per-sample outcomes (:class:`vitbench.store.per_sample.PerSample`), one row per cell.
#: Added without a schema-version bump: stores written before it load, and get it when opened
#: for writing; their cells simply have no per-sample data.
_PER_SAMPLE_DDL = (
    "CREATE TABLE IF NOT EXISTS per_sample (cell_key TEXT PRIMARY KEY, sample_ids_hash TEXT, "
    "n INTEGER, sample_ids BLOB, correct BLOB, pred BLOB)"
)


class DamagedStoreError(VitbenchError):
    """A results file whose SQLite pages are damaged (``database disk image is malformed``)."""


def _damaged(path: Path, exc: sqlite3.Error) -> DamagedStoreError:
    """The one-line error of a damaged store: the file, SQLite's words and how to recover it."""
    return DamagedStoreError(
        f"results file {path} is damaged ({' '.join(str(exc).split())}); try `sqlite3 {path} .recover "
        f"| sqlite3 NEW.sqlite` to save what is readable, or `sqlite3 {path} 'PRAGMA integrity_check'`"
    )


def _is_damage(exc: sqlite3.Error) -> bool:
    """True for SQLite's "database disk image is malformed" (SQLITE_CORRUPT) and its kin."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == _SQLITE_CORRUPT) or "malformed" in str(exc)


def _read_failure(path: Path, exc: sqlite3.Error, message: str) -> VitbenchError:
    """``exc`` as a one-line error: :func:`_damaged` for damage, else ``message``."""
    return _damaged(path, exc) if _is_damage(exc) else VitbenchError(message)


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back until the block has run, then deliver it.

    A record and its per-sample outcome are written whole: an interrupt during the transaction
    takes effect (``KeyboardInterrupt``) right after the commit. Outside the main thread, where
    no signal handler can be set, the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and previous is not signal.SIG_IGN:
        if callable(previous):
            previous(signal.SIGINT, None)
        else:
            raise KeyboardInterrupt


def _connect(target: str) -> sqlite3.Connection:
    """An autocommit SQLite connection to a file path or a ``file:`` URI."""
    return sqlite3.connect(target, uri=target.startswith("file:"), timeout=30.0, isolation_level=None)


def _json_default(obj: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars/arrays and tensors (anything with ``tolist``)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _coerce(column: str, value: Any) -> Any:
    """Validate one record value against its column type and convert it for SQLite.

    Raises:
        ValueError: the value does not fit the column (e.g. a string for a REAL column).
    """
    if value is None:
        return None
    kind = RECORD_FIELDS[column]
    if column in JSON_FIELDS:
        if isinstance(value, str):
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"column {column!r} holds JSON; got an invalid JSON string") from exc
            return value
        try:
            return json.dumps(value, sort_keys=True, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"column {column!r} holds JSON; cannot serialise {value!r}: {exc}") from exc
    if kind == "TEXT":
        if not isinstance(value, str):
            raise ValueError(f"column {column!r} expects text, got {type(value).__name__}")
        return value
    if not isinstance(value, numbers.Real) and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # 0-d numpy array / torch tensor
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, numbers.Real):
        raise ValueError(f"column {column!r} expects a number ({kind}), got {type(value).__name__}")
    if kind == "INTEGER":
        if isinstance(value, numbers.Integral):
            return int(value)
        as_float = float(value)
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise ValueError(f"column {column!r} expects an integer, got {value!r}")
        return int(as_float)
    return float(value)


class ResultsStore:
    """An SQLite results file with a ``meta`` table and a ``records`` table.

    Args:
        path: the database file; its parent directory is created if needed.
        readonly: open an existing store for reading only (nothing is created or written).

    Raises:
        VitbenchError: the path is not writable (or does not exist when ``readonly``), is not
            an SQLite database, is not a vitbench store, or has another schema version.

    Example:
        >>> with ResultsStore("results/run.sqlite") as store:  # doctest: +SKIP
        ...     store.write({"cell_key": "k1", "top1": 81.2})
        ...     "k1" in store.done_keys()
        True
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self._private: tempfile.TemporaryDirectory[str] | None = None  # read-only folder copy
        self._conn = self._open()
        try:
            with self._reading():
                self._init_schema()
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if path.is_dir():
            raise VitbenchError(f"results path {path} is a directory; pass --results to a file path")
        if self.readonly:
            if not path.is_file():
                raise VitbenchError(f"results file {path} does not exist; run `vitbench run` first")
            return self._checked(self._open_readonly())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise VitbenchError(f"cannot create results directory {path.parent} ({reason}); {_FIX}") from None
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise VitbenchError(f"results directory {path.parent} is not writable; {_FIX}")
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise VitbenchError(f"results file {path} is not writable; {_FIX}")
        try:
            conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise VitbenchError(f"cannot open results file {path} ({exc}); {_FIX}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            if _is_damage(exc):
                raise _damaged(path, exc) from None
            raise VitbenchError(
                f"results file {path} is not a writable SQLite database ({exc}); {_FIX}"
            ) from None
        return self._checked(conn)

    def _open_readonly(self) -> sqlite3.Connection:
        """A read-only connection, also where SQLite cannot write beside the file.

        A WAL store needs its ``-shm`` index file: in a read-only folder or on a read-only mount
        SQLite cannot create it. Then a store without a pending ``-wal`` file is opened
        ``immutable`` (its one file is the whole database), and one with a ``-wal`` is read from
        a private copy of both files (the copy replays the log), removed on :meth:`close`.
        """
        path = self.path
        try:
            conn = _connect(f"{path.resolve().as_uri()}?mode=ro")
            conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.Error as exc:
            if _is_damage(exc):
                raise _damaged(path, exc) from None
            code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
            if code not in (_SQLITE_READONLY, _SQLITE_CANTOPEN):
                raise VitbenchError(
                    f"cannot read results file {path} ({exc}); pass a vitbench results file"
                ) from None
        wal = path.with_name(path.name + "-wal")
        try:
            if not wal.is_file() or wal.stat().st_size == 0:
                conn = _connect(f"{path.resolve().as_uri()}?immutable=1")
            else:
                self._private = tempfile.TemporaryDirectory(prefix="vitbench-store-")
                copy = Path(self._private.name) / path.name
                shutil.copyfile(path, copy)
                shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
                conn = _connect(str(copy))
            conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        except (OSError, sqlite3.Error) as exc:
            if isinstance(exc, sqlite3.Error) and _is_damage(exc):
                raise _damaged(path, exc) from None
            raise VitbenchError(
                f"cannot read results file {path} from a read-only folder ({exc}); copy it to a "
                "writable folder and pass that copy"
            ) from None
        return conn

    def _checked(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """``conn`` after SQLite's ``quick_check`` found no damaged page (else one line, closed)."""
        try:
            rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        except sqlite3.Error as exc:
            conn.close()
            if _is_damage(exc):
                raise _damaged(self.path, exc) from None
            raise VitbenchError(
                f"cannot read results file {self.path} ({exc}); pass a vitbench results file"
            ) from None
        if rows != [("ok",)]:
            conn.close()
            detail = str(rows[0][0]) if rows else "quick_check returned nothing"
            raise _damaged(self.path, sqlite3.DatabaseError(detail))
        return conn

    def _tables(self) -> set[str]:
        rows = self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        return {str(r[0]) for r in rows}

    def _init_schema(self) -> None:
        tables = self._tables()
        if not self.readonly and "meta" not in tables:
            if tables - {"records", "per_sample"}:
                raise VitbenchError(
                    f"{self.path} is an SQLite database but not a vitbench results store; {_FIX}"
                )
            cols = ", ".join(
                f'"{name}" {kind}' + (" UNIQUE" if name == "cell_key" else "")
                for name, kind in RECORD_FIELDS.items()
            )
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
                self._conn.execute(f"CREATE TABLE IF NOT EXISTS records ({cols})")
                self._conn.execute(_PER_SAMPLE_DDL)
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise VitbenchError(f"cannot initialise results file {self.path} ({exc}); {_FIX}") from None
            tables = self._tables()
        if "meta" not in tables or "records" not in tables:
            raise VitbenchError(f"{self.path} is not a vitbench results store; pass a vitbench results file")
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        found = row[0] if row else None
        if found != str(SCHEMA_VERSION):
            raise VitbenchError(
                f"results file {self.path} has schema version {found}, this vitbench writes version "
                f"{SCHEMA_VERSION}; use a new results path (or the vitbench version that wrote it)"
            )
        columns = tuple(str(r[1]) for r in self._conn.execute("PRAGMA table_info(records)").fetchall())
        unknown = sorted(set(columns) - set(_COLUMNS))
        if unknown:
            raise VitbenchError(
                f"results file {self.path} has record columns this vitbench does not know "
                f"({', '.join(unknown)}); use a new results path (or the vitbench version that wrote it)"
            )
        missing = [name for name in _COLUMNS if name not in columns]
        if missing and not self.readonly:
            self._add_columns(missing)
            missing = []
        self._missing = frozenset(missing)  # read-only store of an older release: read as NULL
        if not self.readonly and "per_sample" not in tables:
            try:
                self._conn.execute(_PER_SAMPLE_DDL)
            except sqlite3.Error as exc:
                raise VitbenchError(f"cannot initialise results file {self.path} ({exc}); {_FIX}") from None

    def select_list(self) -> str:
        """SQL select list of every record column in ``RECORD_FIELDS`` order (NULL for absent ones)."""
        return ", ".join("NULL" if name in self._missing else f'"{name}"' for name in _COLUMNS)

    def _add_columns(self, names: list[str]) -> None:
        """Add record columns introduced after the store was written (NULL in old rows)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for name in names:
                self._conn.execute(f'ALTER TABLE records ADD COLUMN "{name}" {RECORD_FIELDS[name]}')
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise VitbenchError(f"cannot add new record columns to {self.path} ({exc}); {_FIX}") from None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """SQLite errors inside as one line: :func:`_damaged` for a damaged page."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _read_failure(self.path, exc, f"cannot read results file {self.path} ({exc})") from None

    # -- context manager -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection (idempotent) and drop a private copy."""
        self._conn.close()
        if self._private is not None:
            self._private.cleanup()
            self._private = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- API -----------------------------------------------------------------------------------

    def write(self, record: Mapping[str, Any], samples: PerSample | None = None) -> None:
        """Insert a record, replacing any earlier record with the same ``cell_key``; commits.

        The record and its per-sample outcome are one transaction: a re-run cell never keeps
        the per-sample data of an earlier run.

        Args:
            record: column -> value. Missing columns are stored as NULL; JSON columns
                (:data:`vitbench.store.records.JSON_FIELDS`) may be Python objects.
            samples: per-sample correctness and predictions of the cell (``None``: none kept).

        Raises:
            ValueError: unknown column, missing/empty ``cell_key``, or a value of the wrong type.
            VitbenchError: the store was opened read-only or the write failed on disk.
        """
        unknown = sorted(set(record) - set(RECORD_FIELDS))
        if unknown:
            raise ValueError(f"unknown record field(s): {', '.join(unknown)}")
        key = record.get("cell_key")
        if not isinstance(key, str) or not key:
            raise ValueError("record needs a non-empty string 'cell_key'")
        if self.readonly:
            raise VitbenchError(f"results file {self.path} was opened read-only")
        values = [_coerce(name, record.get(name)) for name in _COLUMNS]
        placeholders = ", ".join("?" for _ in _COLUMNS)
        names = ", ".join(f'"{name}"' for name in _COLUMNS)
        with _interrupt_after():  # Ctrl-C waits until the record is committed
            self._write(key, values, names, placeholders, record, samples)

    def _write(
        self,
        key: str,
        values: list[Any],
        names: str,
        placeholders: str,
        record: Mapping[str, Any],
        samples: PerSample | None,
    ) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(f"INSERT OR REPLACE INTO records ({names}) VALUES ({placeholders})", values)
            self._conn.execute("DELETE FROM per_sample WHERE cell_key = ?", (key,))
            if samples is not None:
                self._conn.execute(
                    "INSERT INTO per_sample (cell_key, sample_ids_hash, n, sample_ids, correct, pred) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key, record.get("sample_ids_hash"), int(samples.sample_ids.shape[0]), *samples.encode()),
                )
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise _read_failure(
                self.path, exc, f"cannot write to results file {self.path} ({exc}); {_FIX}"
            ) from None

    def update(self, cell_key: str, values: Mapping[str, Any]) -> None:
        """Rewrite some columns of one record in place (e.g. ``vitbench recount``); commits.

        Args:
            cell_key: the record's key; a missing key is an error.
            values: column -> new value (validated like :meth:`write`); other columns are kept.

        Raises:
            ValueError: unknown column or a value of the wrong type.
            VitbenchError: no record has ``cell_key``, or the store is read-only / not writable.
        """
        unknown = sorted(set(values) - set(RECORD_FIELDS) | ({"cell_key"} & set(values)))
        if unknown:
            raise ValueError(f"cannot update record field(s): {', '.join(unknown)}")
        if self.readonly:
            raise VitbenchError(f"results file {self.path} was opened read-only")
        names = list(values)
        assignments = ", ".join(f'"{name}" = ?' for name in names)
        params = [_coerce(name, values[name]) for name in names]
        try:
            cur = self._conn.execute(
                f"UPDATE records SET {assignments} WHERE cell_key = ?", [*params, cell_key]
            )
        except sqlite3.Error as exc:
            raise _read_failure(
                self.path, exc, f"cannot write to results file {self.path} ({exc}); {_FIX}"
            ) from None
        if cur.rowcount != 1:
            raise VitbenchError(f"results file {self.path} has no record {cell_key!r}")

    def samples(self, keys: Any = None) -> dict[str, PerSample]:
        """Per-sample outcomes by cell key (all cells, or those in ``keys``); ``{}`` for old stores."""
        with self._reading():
            if "per_sample" not in self._tables():
                return {}
            rows = self._conn.execute(
                "SELECT cell_key, n, sample_ids, correct, pred FROM per_sample"
            ).fetchall()
        wanted = None if keys is None else set(keys)
        return {
            str(k): PerSample.decode(int(n), ids, corr, pred)
            for k, n, ids, corr, pred in rows
            if wanted is None or k in wanted
        }

    def record(self, cell_key: str) -> dict[str, Any] | None:
        """The successful record with ``cell_key`` as column -> value (JSON columns decoded), or ``None``."""
        row = self._conn.execute(
            f"SELECT {self.select_list()} FROM records WHERE cell_key = ? AND error IS NULL", (cell_key,)
        ).fetchone()
        if row is None:
            return None
        out = dict(zip(_COLUMNS, row))
        for name in JSON_FIELDS:
            out[name] = decode_json(out[name])
        return out

    def done_keys(self) -> set[str]:
        """Cell keys of successful cells (``error IS NULL``); used to resume a suite."""
        with self._reading():
            rows = self._conn.execute("SELECT cell_key FROM records WHERE error IS NULL").fetchall()
        return {str(r[0]) for r in rows}

    def records(self) -> list[dict[str, Any]]:
        """Every record as stored (column -> SQLite value; NULL for absent columns), in insertion order."""
        with self._reading():
            rows = self._conn.execute(f"SELECT {self.select_list()} FROM records ORDER BY rowid").fetchall()
        return [dict(zip(_COLUMNS, row)) for row in rows]

    def frame(self) -> pd.DataFrame:
        """All records as a DataFrame with the columns of ``RECORD_FIELDS``, in insertion order.

        REAL columns are ``float64`` (NULL -> NaN), INTEGER columns nullable ``Int64``, TEXT
        columns strings with missing values; JSON columns stay JSON strings (see
        :func:`decode_json`).
        """
        import pandas as pd

        with self._reading():
            rows = self._conn.execute(f"SELECT {self.select_list()} FROM records ORDER BY rowid").fetchall()
        df = pd.DataFrame.from_records(rows, columns=list(_COLUMNS))
        for name, kind in RECORD_FIELDS.items():
            if kind == "REAL":
                df[name] = pd.to_numeric(df[name], errors="coerce").astype("float64")
            elif kind == "INTEGER":
                df[name] = pd.to_numeric(df[name], errors="coerce").astype("Int64")
            else:
                df[name] = df[name].astype(object).where(df[name].notna(), None)
        df.attrs["source"] = str(self.path)
        return df


def decode_json(value: Any) -> Any:
    """Decode one JSON cell of a results frame (``None``/NaN -> ``None``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return json.loads(value)


def load_results(path: str | Path) -> pd.DataFrame:
    """Load a results store as a DataFrame, one row per cell (see :meth:`ResultsStore.frame`).

    Raises:
        VitbenchError: the file does not exist or is not a vitbench results store.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise VitbenchError(f"results file {p} does not exist; run `vitbench run` first or check the path")
    with ResultsStore(p, readonly=True) as store:
        return store.frame()


def load_samples(path: str | Path, keys: Any = None) -> dict[str, PerSample]:
    """Per-sample outcomes of a results store by cell key (see :meth:`ResultsStore.samples`).

    Raises:
        VitbenchError: the file does not exist or is not a vitbench results store.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise VitbenchError(f"results file {p} does not exist; run `vitbench run` first or check the path")
    with ResultsStore(p, readonly=True) as store:
        return store.samples(keys)


def _git_commit() -> str:
    """Commit of the vitbench code that runs (see :func:`source_version`), or ``"unknown"``.

    A source checkout (editable install, ``PYTHONPATH=src``) answers with ``git rev-parse HEAD``
    of the repository whose ``src/vitbench`` this is; an installed wheel or sdist answers with
    the commit recorded at build time (``vitbench/core/build_info.py``, written by ``setup.py``). A
    package built without a git checkout records ``unknown``, never the commit of an unrelated
    repository around the install (a virtual environment inside some project's checkout).
    """
    here = Path(__file__).resolve().parents[1]  # src/vitbench
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        lines = out.stdout.split()
        if out.returncode == 0 and len(lines) == 2 and Path(lines[0]).resolve() / "src" / "vitbench" == here:
            return lines[1]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        # Generated at build time by setup.py; absent from a source checkout, hence a dynamic import.
        build_info = importlib.import_module("vitbench.core.build_info")
        commit = str(getattr(build_info, "GIT_COMMIT", "") or "")
    except ImportError:
        commit = ""
    return commit or "unknown"


def source_version() -> str:
    """Where the running code comes from: ``git <commit[:12]>``, or that no commit was recorded."""
    commit = _git_commit()
    return f"git {commit[:12]}" if commit != "unknown" else "release build, no git commit recorded"


def provenance() -> dict[str, str]:
    """Versions, git commit, device and UTC timestamp to stamp on every record.

    Returns:
        Keys ``vitbench_version``, ``torch_version``, ``timm_version``, ``gmacs_counter``,
        ``git_commit``, ``device``, ``timestamp`` (all strings; ``"unknown"`` where not
        determinable).
    """
    cpu = f"cpu: {platform.processor() or platform.machine() or 'unknown'}"
    try:
        import torch

        torch_version = str(torch.__version__)
        device = f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else cpu
    except Exception:  # noqa: BLE001 - provenance must never fail a run
        torch_version, device = "unknown", cpu
    try:  # package metadata: importing timm itself costs seconds
        timm_version = metadata.version("timm")
    except metadata.PackageNotFoundError:
        timm_version = "unknown"
    return {
        "vitbench_version": VERSION,
        "torch_version": torch_version,
        "timm_version": timm_version,
        "gmacs_counter": COUNTER_VERSION,
        "git_commit": _git_commit(),
        "device": device,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def config_hash(obj: Any) -> str:
    """First 16 hex chars of the sha256 of ``json.dumps(obj, sort_keys=True, default=str)``."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
