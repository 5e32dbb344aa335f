"""Azurite (the Blob Storage emulator) over HTTPS on loopback, for tests, benchmarks and the local stack.

`Azurite(workdir)` makes a throwaway CA with `trustme`, a server certificate for 127.0.0.1/localhost,
starts `node_modules/.bin/azurite-blob` with the flags of azurite.md §2 on an OS-chosen port, and is ready
when the "successfully listens on" line names that port. Stop is SIGTERM then SIGKILL of its group.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import trustme
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, ContentSettings, generate_blob_sas

from edge_tools.procs import stop_process

ACCOUNT = "devstoreaccount1"
# The emulator's well-known public key (documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_READY = re.compile(r"successfully listens on (https?)://([\d.]+):(\d+)")
REPO_ROOT = Path(__file__).resolve().parents[3]


class AzuriteError(RuntimeError):
    """Azurite could not be started (missing binary, early exit, no ready line in time)."""


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class UploadedBlob:
    container: str
    name: str
    size: int
    etag: str
    md5_base64: str
    sha256_hex: str


def make_certificates(directory: Path) -> Certificates:
    """A fresh CA and a server certificate valid for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certs = Certificates(directory / "ca.pem", directory / "azurite-cert.pem", directory / "azurite-key.pem")
    ca.cert_pem.write_to_path(str(certs.ca_file))
    leaf.private_key_pem.write_to_path(str(certs.key_file))
    with certs.cert_file.open("wb") as handle:
        for pem in leaf.cert_chain_pems:
            handle.write(pem.bytes())
    return certs


class Azurite:
    """One Azurite blob service; use as a context manager so it is always stopped."""

    def __init__(self, workdir: Path, *, binary: Path | None = None, host: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.binary = binary or REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
        self.host = host
        self.port = 0
        self.certs: Certificates | None = None
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._output: list[str] = []

    # --- process -----------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        if not self.binary.exists():
            raise AzuriteError(f"{self.binary} is missing: run `npm ci` in the repository root")
        self.certs = make_certificates(self.workdir / "certs")
        argv = [
            str(self.binary),
            "--blobHost", self.host,
            "--blobPort", "0",
            "--inMemoryPersistence",
            "--silent",
            "--loose",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--cert", str(self.certs.cert_file),
            "--key", str(self.certs.key_file),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=self.workdir,
            start_new_session=True,
        )
        threading.Thread(target=self._drain, name="azurite-stdout", daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise AzuriteError(f"Azurite was not ready within {timeout} s: {self._tail()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.stop()
                raise AzuriteError(f"Azurite exited before it was ready: {self._tail()}")
            match = _READY.search(line)
            if match:
                self.port = int(match.group(3))
                return

    def _drain(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._output.append(line.rstrip())
            self._lines.put(line)
        self._lines.put(None)

    def _tail(self) -> str:
        return " | ".join(self._output[-10:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (rc 0 or -15 both fine, see azurite.md §3), SIGKILL to the group if it hangs."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process, timeout)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- storage -----------------------------------------------------------------------------------
    @property
    def ca_file(self) -> Path:
        if self.certs is None:
            raise AzuriteError("Azurite is not started")
        return self.certs.ca_file

    @property
    def blob_endpoint(self) -> str:
        return f"https://{self.host}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def service_client(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(
            self.connection_string, connection_verify=str(self.ca_file)
        )

    def upload(self, container: str, name: str, data: bytes, *, overwrite: bool = True) -> UploadedBlob:
        """Upload with an explicit Content-MD5 (block uploads would store none, azurite.md §5)."""
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        with self.service_client() as service:
            container_client = service.get_container_client(container)
            with contextlib.suppress(Exception):
                container_client.create_container()
            blob_client = container_client.get_blob_client(name)
            result = blob_client.upload_blob(
                data, overwrite=overwrite, content_settings=ContentSettings(content_md5=bytearray(md5))
            )
        return UploadedBlob(
            container=container,
            name=name,
            size=len(data),
            etag=str(result["etag"]),
            md5_base64=base64.b64encode(md5).decode(),
            sha256_hex=hashlib.sha256(data).hexdigest(),
        )

    def sas_url(
        self,
        container: str,
        name: str,
        *,
        expires_in: timedelta = timedelta(hours=1),
        port: int | None = None,
        https_only: bool = False,
    ) -> str:
        """A read-only SAS URL; `port` points it at a proxy instead (the port is not signed)."""
        token = generate_blob_sas(
            ACCOUNT,
            container,
            name,
            account_key=ACCOUNT_KEY,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + expires_in,
            protocol="https" if https_only else None,
        )
        return f"https://{self.host}:{port or self.port}/{ACCOUNT}/{container}/{quote(name)}?{token}"
