"""Persistence in the state dir (SQLite): keys, twins, configurations, MQTT sessions and queued messages.

Every change is committed at once, so a restart (or a crash) loses nothing a client was told was
accepted. Only the simulator's event-loop thread uses a `Store`.
"""

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS module_twins (
    key TEXT PRIMARY KEY,
    desired TEXT NOT NULL, desired_version INTEGER NOT NULL,
    reported TEXT NOT NULL, reported_version INTEGER NOT NULL,
    base TEXT, layers TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS device_twins (
    device TEXT PRIMARY KEY, tags TEXT NOT NULL, desired TEXT NOT NULL,
    desired_version INTEGER NOT NULL, version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS configurations (id TEXT PRIMARY KEY, document TEXT NOT NULL);
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


#: One property a layered deployment sets on a module twin: (configuration id, path, value).
LayerValue = tuple[str, tuple[str, ...], Any]


@dataclass(frozen=True)
class StoredTwin:
    """A module twin as stored: `desired` is what the module sees; when layered deployments apply,
    `base` is the desired section without them and `layers` what they set, lowest precedence first."""

    desired: dict[str, Any]
    desired_version: int
    reported: dict[str, Any]
    reported_version: int
    base: dict[str, Any] | None = None
    layers: tuple[LayerValue, ...] = ()


@dataclass(frozen=True)
class StoredDeviceTwin:
    """A device twin as stored (Edge devices here have no device client, so no reported section)."""

    tags: dict[str, Any]
    desired: dict[str, Any]
    desired_version: int
    version: int


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
        """Every stored module twin by its key."""
        rows = self._db.execute(
            "SELECT key, desired, desired_version, reported, reported_version, base, layers FROM module_twins"
        )
        return {
            key: StoredTwin(
                json.loads(desired),
                dv,
                json.loads(reported),
                rv,
                None if base is None else json.loads(base),
                tuple((c, tuple(p), v) for c, p, v in json.loads(layers)),
            )
            for key, desired, dv, reported, rv, base, layers in rows
        }

    def save_twin(self, key: str, twin: StoredTwin) -> None:
        """Replace one module twin."""
        self._db.execute(
            "INSERT OR REPLACE INTO module_twins VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                json.dumps(twin.desired),
                twin.desired_version,
                json.dumps(twin.reported),
                twin.reported_version,
                None if twin.base is None else json.dumps(twin.base),
                json.dumps([[c, list(p), v] for c, p, v in twin.layers]),
            ),
        )

    def migrate_single_device_twins(self, key_of: Callable[[str], str]) -> int:
        """Move module twins from the single-device `twins` table of older state dirs (keyed by module)
        into `module_twins` (keyed by `key_of(module)`), once; returns how many moved."""
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='twins'"
        ).fetchone()
        if exists is None:
            return 0
        rows = self._db.execute(
            "SELECT module, desired, desired_version, reported, reported_version FROM twins"
        ).fetchall()
        moved = 0
        with self._db:
            self._db.execute("BEGIN")
            for module, desired, dv, reported, rv in rows:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO module_twins VALUES (?, ?, ?, ?, ?, NULL, '[]')",
                    (key_of(module), desired, dv, reported, rv),
                )
                moved += cursor.rowcount
            self._db.execute("DROP TABLE twins")
        return moved

    def load_device_twins(self) -> dict[str, StoredDeviceTwin]:
        """Every stored device twin by device id."""
        rows = self._db.execute("SELECT device, tags, desired, desired_version, version FROM device_twins")
        return {
            device: StoredDeviceTwin(json.loads(tags), json.loads(desired), dv, version)
            for device, tags, desired, dv, version in rows
        }

    def save_device_twin(self, device: str, twin: StoredDeviceTwin) -> None:
        """Replace one device twin."""
        self._db.execute(
            "INSERT OR REPLACE INTO device_twins VALUES (?, ?, ?, ?, ?)",
            (device, json.dumps(twin.tags), json.dumps(twin.desired), twin.desired_version, twin.version),
        )

    def load_configurations(self) -> dict[str, dict[str, Any]]:
        """Every stored configuration document (IoT Hub's JSON form) by id."""
        rows = self._db.execute("SELECT id, document FROM configurations")
        return {config_id: json.loads(document) for config_id, document in rows}

    def save_configuration(self, config_id: str, document: dict[str, Any]) -> None:
        """Create or replace a configuration."""
        self._db.execute(
            "INSERT OR REPLACE INTO configurations VALUES (?, ?)", (config_id, json.dumps(document))
        )

    def delete_configuration(self, config_id: str) -> None:
        """Forget a configuration."""
        self._db.execute("DELETE FROM configurations WHERE id = ?", (config_id,))

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
