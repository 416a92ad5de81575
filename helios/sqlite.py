"""The two SQLite habits every Helios database shares (journal, paper exchange): how to open a file, and one
write transaction at a time."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: How long a write waits for another process' write lock (the trading-state writes pass their own, shorter one).
BUSY_TIMEOUT_MS = 10_000


def connect(path: Path) -> sqlite3.Connection:
    """WAL, ``synchronous=NORMAL`` (survives a process crash; the journal re-resolves intents at start-up),
    autocommit mode so every write goes through ``transaction``, and a generous busy timeout for other processes
    (``helios emergency-stop --direct``) writing the same file."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Cursor]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error; one thread at a time."""
    with lock:
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()
