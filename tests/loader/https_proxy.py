"""A real forward proxy for the tests: proxy.py (PyPI `proxy.py`) as a child process on a loopback port.

It tunnels `https` with CONNECT, as the proxies IoT Edge devices sit behind do, and logs one access line
per connection when that connection ends; `connects()` reads them.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path
from types import TracebackType

from edge_tools.stack.processes import ManagedProcess

_ACCESS = re.compile(r" - CONNECT (\S+) - (\d+) bytes")
START_TIMEOUT = 30.0


class HttpsProxy:
    """`with HttpsProxy(folder) as proxy: ... proxy.url ... proxy.connects()`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._port_file = folder / "proxy.port"
        self._lock = threading.Lock()
        self._connects: list[tuple[str, int]] = []
        argv = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0"]
        argv += ["--port-file", str(self._port_file), "--num-acceptors", "1", "--num-workers", "1"]
        argv += ["--threaded", "--log-level", "INFO"]
        env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
        self._process = ManagedProcess("https-proxy", argv, env=env, log_dir=folder)
        self._process.on_line(self._line)
        self.port = 0

    def _line(self, line: str) -> None:
        match = _ACCESS.search(line)
        if match is not None:
            with self._lock:
                self._connects.append((match.group(1), int(match.group(2))))

    def _port(self) -> bool:
        text = self._port_file.read_text().strip() if self._port_file.exists() else ""
        self.port = int(text) if text.isdigit() else 0
        return self.port > 0

    def __enter__(self) -> HttpsProxy:
        self._process.start()
        try:
            self._process.wait_ready(self._port, timeout=START_TIMEOUT, what="listening")
        except BaseException:
            self._process.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._process.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connects(self) -> list[tuple[str, int]]:
        """`(host:port, bytes)` of every CONNECT tunnel that has ended so far."""
        with self._lock:
            return list(self._connects)
