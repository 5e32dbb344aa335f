"""Upload a package to Blob Storage and mint a read-only SAS URL for it (Azurite or Azure)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.storage.blob import BlobSasPermissions, BlobServiceClient, ContentSettings, generate_blob_sas

from edge_tools.publish.connstr import ConnectionStringError, parse_connection_string
from edge_tools.publish.package import ModelPackage

ProgressHook = Callable[[int, int | None], None]
#: Blob metadata key naming the version a package was published as (lets `--delta-from` find a base).
VERSION_METADATA = "edgemodelversion"


def upload_package(
    connection_string: str,
    container: str,
    package: ModelPackage,
    *,
    sas_ttl: timedelta,
    ca_file: str | None = None,
    progress: ProgressHook | None = None,
    now: datetime | None = None,
    content_type: str = "application/zip",
    version: str | None = None,
) -> str:
    """Upload (overwriting) and return the blob URL with a read-only SAS valid for `sas_ttl`."""
    parts = parse_connection_string(connection_string)
    account, key = parts.get("AccountName"), parts.get("AccountKey")
    if not account or not key:
        raise ConnectionStringError("storage connection string lacks AccountName or AccountKey")
    container_client = _service(connection_string, ca_file).get_container_client(container)
    if not container_client.exists():
        container_client.create_container()
    blob = container_client.get_blob_client(package.file_name)
    blob.upload_blob(
        package.data,
        overwrite=True,
        # Set explicitly: a block upload stores no MD5 otherwise, and the loader checks it.
        content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(package.md5_bytes)),
        metadata={VERSION_METADATA: version} if version else None,
        progress_hook=progress,
    )
    https = blob.url.startswith("https://")
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)  # tolerate device clock skew
    sas = generate_blob_sas(
        account_name=account,
        container_name=container,
        blob_name=package.file_name,
        account_key=key,
        permission=BlobSasPermissions(read=True),
        start=start,
        expiry=start + timedelta(minutes=5) + sas_ttl,
        protocol="https" if https else None,
    )
    return f"{blob.url}?{sas}"


def download_package_by_version(
    connection_string: str, container: str, version: str, *, ca_file: str | None = None
) -> bytes | None:
    """The ZIP published earlier as `version` (newest if several), or None when there is none."""
    container_client = _service(connection_string, ca_file).get_container_client(container)
    if not container_client.exists():
        return None
    found = [
        blob
        for blob in container_client.list_blobs(include=["metadata"])
        if (blob.metadata or {}).get(VERSION_METADATA) == version and blob.name.endswith(".zip")
    ]
    if not found:
        return None
    newest = max(found, key=lambda blob: blob.last_modified)
    data: bytes = container_client.download_blob(newest.name).readall()
    return data


def _service(connection_string: str, ca_file: str | None) -> BlobServiceClient:
    verify: bool | str = ca_file if ca_file else True
    return BlobServiceClient.from_connection_string(connection_string, connection_verify=verify)


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
