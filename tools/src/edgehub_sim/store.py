"""Persistence in the state dir (SQLite): keys, twins, MQTT sessions and queued QoS-1 messages.

Every change is committed at once, so a restart (or a crash) loses nothing a client was told was
accepted. Only the simulator's event-loop thread uses a `Store`.
"""

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS twins (
    module TEXT PRIMARY KEY,
    desired TEXT NOT NULL, desired_version INTEGER NOT NULL,
    reported TEXT NOT NULL, reported_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (client_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS subscriptions (
    client_id TEXT NOT NULL, filter TEXT NOT NULL, PRIMARY KEY (client_id, filter)
);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL, priority INTEGER NOT NULL, expires_at REAL NOT NULL,
    topic TEXT NOT NULL, payload BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class StoredTwin:
    """A module twin as stored."""

    desired: dict[str, Any]
    desired_version: int
    reported: dict[str, Any]
    reported_version: int


@dataclass(frozen=True)
class StoredMessage:
    """A QoS-1 message waiting for a module's PUBACK."""

    seq: int
    client_id: str
    priority: int
    expires_at: float
    topic: str
    payload: bytes


class Store:
    """SQLite-backed state of one simulator."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def get_meta(self, name: str) -> str | None:
        """A stored setting (keys), or None."""
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        """Store a setting."""
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def load_twins(self) -> dict[str, StoredTwin]:
        """Every stored twin by module id."""
        rows = self._db.execute(
            "SELECT module, desired, desired_version, reported, reported_version FROM twins"
        )
        return {
            module: StoredTwin(json.loads(desired), dv, json.loads(reported), rv)
            for module, desired, dv, reported, rv in rows
        }

    def save_twin(self, module: str, twin: StoredTwin) -> None:
        """Replace one module's twin."""
        self._db.execute(
            "INSERT OR REPLACE INTO twins VALUES (?, ?, ?, ?, ?)",
            (
                module,
                json.dumps(twin.desired),
                twin.desired_version,
                json.dumps(twin.reported),
                twin.reported_version,
            ),
        )

    def load_sessions(self) -> dict[str, set[str]]:
        """Every persistent session's client id and its subscriptions."""
        sessions: dict[str, set[str]] = {
            row[0]: set() for row in self._db.execute("SELECT client_id FROM sessions")
        }
        for client_id, topic_filter in self._db.execute("SELECT client_id, filter FROM subscriptions"):
            sessions.setdefault(client_id, set()).add(topic_filter)
        return sessions

    def save_session(self, client_id: str) -> None:
        """Record that a persistent session exists."""
        self._db.execute("INSERT OR IGNORE INTO sessions VALUES (?)", (client_id,))

    def set_subscriptions(self, client_id: str, filters: set[str]) -> None:
        """Replace a session's subscriptions."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM subscriptions WHERE client_id = ?", (client_id,))
            self._db.executemany(
                "INSERT INTO subscriptions VALUES (?, ?)", [(client_id, f) for f in sorted(filters)]
            )

    def enqueue(self, client_id: str, priority: int, expires_at: float, topic: str, payload: bytes) -> int:
        """Append a message to a session's queue; returns its sequence number."""
        cursor = self._db.execute(
            "INSERT INTO queue (client_id, priority, expires_at, topic, payload) VALUES (?, ?, ?, ?, ?)",
            (client_id, priority, expires_at, topic, payload),
        )
        seq = cursor.lastrowid
        if seq is None:
            raise RuntimeError("SQLite returned no row id")
        return seq

    def delete(self, seq: int) -> None:
        """Forget a delivered (or expired) message."""
        self._db.execute("DELETE FROM queue WHERE seq = ?", (seq,))

    def load_queue(self) -> list[StoredMessage]:
        """Every queued message in sequence order."""
        rows = self._db.execute(
            "SELECT seq, client_id, priority, expires_at, topic, payload FROM queue ORDER BY seq"
        )
        return [StoredMessage(*row) for row in rows]
