"""The simulator's certificate authority and server certificate.

The CA is created once per state directory and kept there, so module env files, `ca.pem` and clients
built before a restart stay valid after it. The server certificate is issued at each start for the
bound address (IP SAN) and `localhost`.
"""

import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from edge_shared.fsutil import atomic_write_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsMaterial:
    """Paths and PEM text the listeners and env files need."""

    ca_pem: str
    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """A server context accepting TLS 1.2 (what the SDK speaks) and newer."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def load_or_create_ca(state_dir: Path) -> trustme.CA:
    """Reuse `ca.pem` + `tls/ca.key` from the state dir, or create and store a new CA."""
    cert_file = state_dir / "ca.pem"
    key_file = state_dir / "tls" / "ca.key"
    if cert_file.exists() and key_file.exists():
        return trustme.CA.from_pem(cert_file.read_bytes(), key_file.read_bytes())
    ca = trustme.CA(organization_name="edgehub-sim")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(key_file, ca.private_key_pem.bytes(), mode=0o600)
    atomic_write_bytes(cert_file, ca.cert_pem.bytes(), mode=0o644)
    logger.info("created a new simulator CA in %s", cert_file)
    return ca


def issue_server_material(state_dir: Path, bind: str) -> TlsMaterial:
    """Issue a server certificate for `bind` (and localhost) signed by the state dir's CA."""
    ipaddress.ip_address(bind)  # a hostname would need DNS, which the loopback-only design avoids
    ca = load_or_create_ca(state_dir)
    leaf = ca.issue_cert(bind, "localhost", common_name=bind)
    tls_dir = state_dir / "tls"
    cert_path = tls_dir / "server.pem"
    key_path = tls_dir / "server.key"
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    tls_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cert_path, chain, mode=0o644)
    atomic_write_bytes(key_path, leaf.private_key_pem.bytes(), mode=0o600)
    return TlsMaterial(
        ca_pem=ca.cert_pem.bytes().decode("ascii"),
        ca_path=state_dir / "ca.pem",
        cert_path=cert_path,
        key_path=key_path,
    )
