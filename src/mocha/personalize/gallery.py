"""The persistent gallery: enrolled instances in one SQLite file, tied to the bundle that embedded them.

Tables (schema version in `PRAGMA user_version`, currently 3):
    meta(key, value)          format, bundle digest + path, embedding dim, created, open-set settings
    instances(name, ...)      coarse class, prototype (float32 blob), shot count, dates
    supports(id, instance...) one row per support box: source file + sha256, box (original px), where the box
                              came from (user/detector), detector confidence, embedding blob, date, the
                              detector's coarse-class votes on it (JSON; NULL when the user gave the class)
Every change is one SQLite transaction (a crash mid-enroll leaves the previous state); the file is in WAL
mode so readers (detect) run while a writer enrolls. A new gallery is built in a temp file and renamed.
Bad files (not SQLite, not a gallery, corrupt, locked, newer schema) raise ConfigError and are never written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mocha.errors import ConfigError

FORMAT = "mocha-gallery"
SCHEMA_VERSION = 3
SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA_V1 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE instances(name TEXT PRIMARY KEY, coarse INTEGER NOT NULL, coarse_name TEXT NOT NULL,
                       prototype BLOB NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE supports(id INTEGER PRIMARY KEY AUTOINCREMENT, instance TEXT NOT NULL, source TEXT NOT NULL,
                      sha256 TEXT NOT NULL, box TEXT NOT NULL, embedding BLOB NOT NULL, added TEXT NOT NULL);
CREATE INDEX supports_instance ON supports(instance);
"""


def _migrate_1_to_2(con: sqlite3.Connection) -> None:
    """v2 records where each support box came from, the detector's confidence, and shot counts."""
    con.execute("ALTER TABLE supports ADD COLUMN box_source TEXT NOT NULL DEFAULT 'user'")
    con.execute("ALTER TABLE supports ADD COLUMN det_conf REAL")
    con.execute("ALTER TABLE instances ADD COLUMN shots INTEGER NOT NULL DEFAULT 0")
    con.execute("UPDATE instances SET shots = (SELECT COUNT(*) FROM supports s WHERE s.instance = instances.name)")


def _migrate_2_to_3(con: sqlite3.Connection) -> None:
    """v3 keeps the detector's coarse-class votes of each support (the instance's soft coarse prior)."""
    con.execute("ALTER TABLE supports ADD COLUMN coarse_votes TEXT")


MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3}  # from version -> function bringing it to version + 1


def utcnow() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class Support:
    """One support box of an instance: where it came from and its embedding."""

    source: str
    sha256: str
    box: list[float]  # xyxy, original image pixels
    box_source: str  # "user" | "detector"
    embedding: np.ndarray  # (d,) float32
    det_conf: float | None = None
    added: str = field(default_factory=utcnow)
    coarse_votes: dict[int, float] | None = None  # class id → confidence × IoU of the detections on the box


def summed_votes(supports: list[Support], start: dict[int, float] | None = None) -> dict[int, float] | None:
    """`start` plus the coarse-class votes of `supports`, per class (None when there are none)."""
    votes = dict(start or {})
    for s in supports:
        for c, v in (s.coarse_votes or {}).items():
            votes[int(c)] = votes.get(int(c), 0.0) + float(v)
    return votes or None


@dataclass
class InstanceRecord:
    """An enrolled instance as stored (supports loaded on demand)."""

    name: str
    coarse: int
    coarse_name: str
    prototype: np.ndarray
    shots: int
    created: str
    updated: str
    id: int = -1  # given at enrolment, never reused after a remove (`Results.instances`, `boxes.instance`)
    supports: list[Support] = field(default_factory=list)

    def coarse_votes(self) -> dict[int, float] | None:
        """The detector's votes summed over the loaded supports (None when none has any: a class the user gave)."""
        return summed_votes(self.supports)

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "coarse": self.coarse_name, "coarse_id": self.coarse,
                "shots": self.shots, "created": self.created, "updated": self.updated}


def _vector(blob: Any, dim: int) -> np.ndarray:
    """A stored float32 vector of `dim` values (ValueError for any other blob)."""
    if not isinstance(blob, bytes) or len(blob) != 4 * dim:
        raise ValueError(f"a {dim}-d float32 vector blob has {4 * dim} bytes, got {type(blob).__name__} "
                         f"of {len(blob) if isinstance(blob, bytes | str) else '?'}")
    return np.frombuffer(blob, np.float32).copy()


def _blob(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype=np.float32).tobytes()


class Gallery:
    """A gallery file (or ":memory:"). Use `Gallery.create(...)` for a new one, `Gallery(path)` to open."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.path = path if str(path) == ":memory:" else Path(path)
        self.timeout = float(timeout)
        if self.path != ":memory:":
            _check_file(self.path)
        self._con = self._connect(self.path)
        try:
            self._check_and_migrate()
        except BaseException:
            self._con.close()
            raise

    # ------------------------------------------------------------------ opening / creating
    @classmethod
    def create(cls, path: str | Path, bundle_digest: str, bundle_path: str | None, dim: int,
               timeout: float = 5.0, **meta: Any) -> Gallery:
        """Write a new, empty gallery atomically (ConfigError if `path` exists) and open it."""
        meta_rows = {"format": FORMAT, "bundle_digest": bundle_digest, "bundle_path": bundle_path or "",
                     "dim": str(int(dim)), "created": utcnow(), **{k: json.dumps(v) for k, v in meta.items()}}
        if str(path) == ":memory:":
            g = cls.__new__(cls)
            g.path, g.timeout = ":memory:", timeout
            g._con = g._connect(":memory:")
            _init_schema(g._con, meta_rows)
            return g
        path = Path(path)
        if path.exists():
            raise ConfigError(f"{path}: a file already exists there; open it instead of creating a gallery")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                _init_schema(con, meta_rows)
                con.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file header
            finally:
                con.close()
            try:
                os.link(tmp, path)  # fails if someone created `path` meanwhile; never overwrites
            except FileExistsError:
                raise
            except OSError:  # a filesystem without hard links: rename (tiny race with a concurrent creator)
                if path.exists():
                    raise FileExistsError(str(path)) from None
                os.replace(tmp, path)
        except FileExistsError:
            raise ConfigError(f"{path}: a file already exists there; open it instead of creating a gallery") from None
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp + suffix)
        return cls(path, timeout=timeout)

    def _connect(self, path: str | Path) -> sqlite3.Connection:
        # mode=rw: never let SQLite create a missing file; as_uri() escapes spaces, '#', '?' in the path
        uri = str(path) if path == ":memory:" else f"{Path(path).resolve().as_uri()}?mode=rw"
        try:
            con = sqlite3.connect(uri, timeout=self.timeout, isolation_level=None, uri=path != ":memory:",
                                  check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigError(f"{path}: cannot open gallery ({exc})") from None
        return con

    def _check_and_migrate(self) -> None:
        try:
            ok = self._con.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise ConfigError(f"{self.path}: gallery file is corrupt ({ok}); it was left untouched")
            tables = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"meta", "instances", "supports"} <= tables:
                raise ConfigError(f"{self.path}: an SQLite file but not a mocha gallery (tables: "
                                  f"{', '.join(sorted(tables)) or 'none'})")
            meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") != FORMAT:
                raise ConfigError(f"{self.path}: not a mocha gallery (format {meta.get('format')!r})")
            if not str(meta.get("dim", "")).isdigit() or int(meta["dim"]) < 1 or "bundle_digest" not in meta:
                raise ConfigError(f"{self.path}: gallery metadata is corrupt (dim {meta.get('dim')!r}, bundle digest "
                                  f"{meta.get('bundle_digest')!r}); it was left untouched")
            version = self._con.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.OperationalError as exc:
            raise _locked_or(exc, self.path, self.timeout) from None
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: not a gallery or corrupt ({exc}); it was left untouched") from None
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{self.path}: gallery schema v{version} is newer than this mocha (v{SCHEMA_VERSION})")
        if version < SCHEMA_VERSION:
            try:
                with self.transaction() as con:
                    # read again under the write lock: another process may have migrated while we waited for it
                    version = con.execute("PRAGMA user_version").fetchone()[0]
                    for v in range(version, SCHEMA_VERSION):
                        if v not in MIGRATIONS:
                            raise ConfigError(f"{self.path}: no migration from gallery schema v{v}")
                        MIGRATIONS[v](con)
                    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except sqlite3.DatabaseError as exc:  # rolled back: the file is as it was
                raise ConfigError(f"{self.path}: cannot migrate gallery schema v{version} → v{SCHEMA_VERSION} "
                                  f"({exc}); corrupt file, it was left untouched") from None

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or (error, crash, kill) none of it."""
        try:
            self._con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _locked_or(exc, self.path, self.timeout) from None
        try:
            yield self._con
        except sqlite3.OperationalError as exc:  # e.g. disk full while writing: SQLite may have rolled back already
            self._rollback()
            raise _locked_or(exc, self.path, self.timeout) from None
        except BaseException:
            self._rollback()
            raise
        try:
            self._con.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise _locked_or(exc, self.path, self.timeout) from None

    def _rollback(self) -> None:
        if self._con.in_transaction:  # SQLite ends the transaction itself on some errors (SQLITE_FULL)
            self._con.execute("ROLLBACK")

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise _locked_or(exc, self.path, self.timeout) from None
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: gallery file is corrupt ({exc})") from None

    # ------------------------------------------------------------------ metadata
    @property
    def meta(self) -> dict[str, str]:
        return dict(self._read("SELECT key, value FROM meta"))

    @property
    def bundle_digest(self) -> str:
        return self.meta["bundle_digest"]

    @property
    def bundle_path(self) -> str | None:
        return self.meta.get("bundle_path") or None

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def get_setting(self, key: str, default: Any = None) -> Any:
        """A JSON setting stored in meta (e.g. min_similarity, calibration)."""
        value = self.meta.get(key)
        try:
            return default if value is None else json.loads(value)
        except ValueError:
            raise ConfigError(f"{self.path}: gallery setting {key!r} is not JSON ({value!r}); corrupt file") from None

    def set_setting(self, key: str, value: Any) -> None:
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def check_bundle(self, digest: str, where: str = "") -> None:
        """ConfigError unless the gallery was made with the bundle of this digest."""
        if digest != self.bundle_digest:
            raise ConfigError(
                f"{self.path}: gallery was made with bundle {self.bundle_digest} ({self.bundle_path or '?'}), "
                f"not with {digest}{f' ({where})' if where else ''}; embeddings of different bundles are not "
                "comparable — enroll the instances again into a new gallery"
            )

    # ------------------------------------------------------------------ instances
    def names(self) -> list[str]:
        return [r[0] for r in self._read("SELECT name FROM instances ORDER BY rowid")]

    def __contains__(self, name: object) -> bool:
        return bool(self._read("SELECT 1 FROM instances WHERE name = ?", (str(name),)))

    def __len__(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM instances")[0][0])

    def instances(self, supports: bool = False) -> list[InstanceRecord]:
        """All instances in enrolment order (with their supports when asked)."""
        rows = self._read("SELECT name, coarse, coarse_name, prototype, shots, created, updated, rowid "
                          "FROM instances ORDER BY rowid")
        dim = self.dim
        try:  # a row edited outside mocha (wrong types, blobs of another size) is refused, not half-used
            out = [InstanceRecord(r[0], int(r[1]), r[2], _vector(r[3], dim), int(r[4]), r[5], r[6], int(r[7]))
                   for r in rows]
            if supports:
                by_name = {rec.name: rec for rec in out}
                for r in self._read("SELECT instance, source, sha256, box, box_source, embedding, det_conf, added, "
                                    "coarse_votes FROM supports ORDER BY id"):
                    box = json.loads(r[3])
                    if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, int | float) for v in box):
                        raise ValueError(f"support box {r[3]!r}")
                    det_conf = None if r[6] is None else float(r[6])
                    votes = None if r[8] is None else {int(c): float(v) for c, v in json.loads(r[8]).items()}
                    by_name[r[0]].supports.append(Support(r[1], r[2], box, r[4], _vector(r[5], dim), det_conf, r[7],
                                                          votes))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # AttributeError: votes not a JSON object
            raise ConfigError(f"{self.path}: gallery rows are corrupt ({type(exc).__name__}: {exc}); "
                              "it was left untouched") from None
        return out

    def get(self, name: str) -> InstanceRecord:
        for rec in self.instances(supports=True):
            if rec.name == name:
                return rec
        raise ConfigError(f"{self.path}: unknown instance {name!r}; enrolled: {', '.join(self.names()) or '(none)'}")

    def add(self, name: str, coarse: int, coarse_name: str, supports: list[Support], append: bool = False) -> None:
        """Enrol `name` (or add shots with append=True) in one transaction; the prototype is the mean embedding."""
        if not supports:
            raise ConfigError(f"instance {name!r}: no support boxes to enroll")
        dim = self.dim
        for s in supports:
            if s.embedding.shape != (dim,):
                raise ConfigError(f"instance {name!r}: embedding of {s.source} has shape {s.embedding.shape}, "
                                  f"gallery stores ({dim},)")
        now = utcnow()
        with self.transaction() as con:
            row = con.execute("SELECT coarse, coarse_name FROM instances WHERE name = ?", (name,)).fetchone()
            if row is not None and not append:
                raise ConfigError(f"instance {name!r} is already enrolled; use append=true (Python: append=True) to "
                                  "add shots or remove it first")
            if row is not None and int(row[0]) != int(coarse):
                raise ConfigError(f"instance {name!r} is enrolled as {row[1]!r}, not {coarse_name!r}")
            if row is None:
                con.execute("INSERT INTO instances(rowid, name, coarse, coarse_name, prototype, shots, created, "
                            "updated) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                            (_next_id(con), name, int(coarse), coarse_name, b"", now, now))
            for s in supports:
                self._insert_support(con, name, s)
            embs = [np.frombuffer(r[0], np.float32) for r in
                    con.execute("SELECT embedding FROM supports WHERE instance = ?", (name,))]
            proto = np.mean(np.stack(embs), axis=0)
            con.execute("UPDATE instances SET prototype = ?, shots = ?, updated = ? WHERE name = ?",
                        (_blob(proto), len(embs), now, name))

    def _insert_support(self, con: sqlite3.Connection, name: str, s: Support) -> None:
        votes = None if s.coarse_votes is None else json.dumps({str(int(c)): float(v)
                                                                for c, v in s.coarse_votes.items()})
        con.execute("INSERT INTO supports(instance, source, sha256, box, box_source, det_conf, embedding, added, "
                    "coarse_votes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, s.source, s.sha256, json.dumps([float(x) for x in s.box]), s.box_source,
                     None if s.det_conf is None else float(s.det_conf), _blob(s.embedding), s.added, votes))

    def remove(self, name: str) -> None:
        """Forget an instance and its supports (ConfigError if unknown)."""
        with self.transaction() as con:
            if con.execute("SELECT 1 FROM instances WHERE name = ?", (name,)).fetchone() is None:
                known = [r[0] for r in con.execute("SELECT name FROM instances ORDER BY rowid")]
                raise ConfigError(f"{self.path}: unknown instance {name!r}; enrolled: {', '.join(known) or '(none)'}")
            con.execute("DELETE FROM supports WHERE instance = ?", (name,))
            con.execute("DELETE FROM instances WHERE name = ?", (name,))


def _next_id(con: sqlite3.Connection) -> int:
    """A new instance id, never reused after a remove (SQLite would reuse the largest rowid)."""
    row = con.execute("SELECT value FROM meta WHERE key = 'next_instance_id'").fetchone()
    top = con.execute("SELECT COALESCE(MAX(rowid), 0) FROM instances").fetchone()[0]
    nid = max(int(row[0]) if row else 0, int(top) + 1)
    con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('next_instance_id', ?)", (str(nid + 1),))
    return nid


def _init_schema(con: sqlite3.Connection, meta: dict[str, str]) -> None:
    con.execute("BEGIN")
    for stmt in _SCHEMA_V1.strip().split(";"):
        if stmt.strip():
            con.execute(stmt)
    _migrate_1_to_2(con)
    _migrate_2_to_3(con)
    con.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", list(meta.items()))
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    con.execute("COMMIT")


def _check_file(path: Path) -> None:
    """Refuse anything that is not an existing, non-empty SQLite file, before SQLite touches it."""
    if not path.exists():
        raise ConfigError(f"gallery not found: {path} (create one with `mocha enroll bundle=...`)")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a gallery file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read gallery ({exc})") from None
    if head != SQLITE_MAGIC:
        raise ConfigError(f"{path}: not a gallery (not an SQLite file, or corrupt); it was left untouched")


def _locked_or(exc: sqlite3.OperationalError, path: Any, timeout: float) -> ConfigError:
    msg = str(exc)
    if "locked" in msg or "busy" in msg:
        return ConfigError(f"{path}: gallery is locked by another process (waited {timeout:g} s); try again")
    if "full" in msg or "disk I/O" in msg:
        return ConfigError(f"{path}: could not write the gallery ({msg}); the change was rolled back and the "
                           "gallery is as before — free space and try again")
    return ConfigError(f"{path}: gallery error ({msg})")
