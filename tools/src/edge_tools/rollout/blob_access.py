"""Read access for a rollout's model blob through a container stored access policy.

A layered deployment's content is immutable, and a device may meet it months later (a new device joins
the ring, or falls back to this layer). An ad-hoc SAS would expire inside the hub's copy; a SAS that
names a stored access policy takes its expiry from the container instead, so `rollout start` renews
the policy (extending every rollout's URL at once) and deleting the policy revokes them all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from azure.storage.blob import AccessPolicy, BlobServiceClient, ContainerSasPermissions, generate_blob_sas

from edge_tools.publish.blob import upload_package
from edge_tools.publish.connstr import ConnectionStringError, parse_connection_string
from edge_tools.publish.package import ModelPackage

#: Azure allows five stored access policies per container; this is the one rollouts use.
DEFAULT_POLICY = "edge-model-rollout"
#: Azure Storage may take this long to apply a changed policy everywhere.
POLICY_PROPAGATION = timedelta(seconds=30)


def renew_read_policy(
    connection_string: str,
    container: str,
    *,
    policy: str = DEFAULT_POLICY,
    valid_for: timedelta,
    ca_file: str | None = None,
    now: datetime | None = None,
) -> datetime:
    """Set `policy` to read-only until now + `valid_for` (never shortening it); other policies are kept."""
    client = _service(connection_string, ca_file).get_container_client(container)
    if not client.exists():
        client.create_container()
    current = client.get_container_access_policy()
    identifiers = {item.id: item.access_policy for item in current.get("signed_identifiers", [])}
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)  # tolerate device clock skew
    expiry = (start + timedelta(minutes=5) + valid_for).replace(microsecond=0)  # the service keeps seconds
    existing = identifiers.get(policy)
    kept = _as_datetime(existing.expiry) if existing is not None else None
    if kept is not None and kept > expiry:
        expiry = kept
    identifiers[policy] = AccessPolicy(
        permission=ContainerSasPermissions(read=True), start=start, expiry=expiry
    )
    if len(identifiers) > 5:
        raise ConnectionStringError(
            f"container {container!r} already has 5 stored access policies; remove one or pass --sas-policy"
        )
    client.set_container_access_policy(
        signed_identifiers=identifiers, public_access=current.get("public_access")
    )
    return expiry


def policy_blob_url(
    connection_string: str, container: str, blob_url: str, blob_name: str, policy: str
) -> str:
    """`blob_url` (without a query) with a SAS that names `policy` and carries no expiry of its own."""
    parts = parse_connection_string(connection_string)
    account, key = parts.get("AccountName"), parts.get("AccountKey")
    if not account or not key:
        raise ConnectionStringError("storage connection string lacks AccountName or AccountKey")
    sas = generate_blob_sas(
        account_name=account,
        container_name=container,
        blob_name=blob_name,
        account_key=key,
        policy_id=policy,
        protocol="https" if blob_url.startswith("https://") else None,
    )
    return f"{blob_url.split('?', 1)[0]}?{sas}"


def publish_for_rollout(
    connection_string: str,
    container: str,
    package: ModelPackage,
    version: str,
    *,
    policy: str = DEFAULT_POLICY,
    valid_for: timedelta,
    ca_file: str | None = None,
    signature: str | None = None,
) -> dict[str, Any]:
    """Upload `package` once and return the `Model` object a layer carries: its URL reads through
    `policy`, renewed for `valid_for`."""
    url = upload_package(
        connection_string,
        container,
        package,
        sas_ttl=timedelta(hours=1),  # the URL below names the policy instead of this SAS
        ca_file=ca_file,
        version=version,
    )
    renew_read_policy(connection_string, container, policy=policy, valid_for=valid_for, ca_file=ca_file)
    read_url = policy_blob_url(connection_string, container, url, package.file_name, policy)
    return package.desired(read_url, version, signature=signature)


def _as_datetime(value: object) -> datetime | None:
    """The service returns policy times as ISO strings; the SDK's own models may hold datetimes."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _service(connection_string: str, ca_file: str | None) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(connection_string, connection_verify=ca_file or True)
