"""Checks of a downloaded ZIP against its desired state: size, MD5 and/or SHA-256, Ed25519 signature."""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_shared.desired import DesiredModel
from loader_module.errors import ChecksumMismatchError, SignatureInvalidError, SignatureUncheckedError


def verify_digests(desired: DesiredModel, *, size: int, md5: bytes, sha256: bytes) -> None:
    """Every digest the desired state gives must match (both when both are given)."""
    if desired.size is not None and size != desired.size:
        raise ChecksumMismatchError(f"downloaded {size} bytes but Size says {desired.size}")
    expected_md5 = desired.md5_bytes
    if expected_md5 is not None and not hmac.compare_digest(expected_md5, md5):
        raise ChecksumMismatchError("MD5 of the download differs from ContentMD5")
    if desired.content_sha256 is not None and not hmac.compare_digest(
        bytes.fromhex(desired.content_sha256), sha256
    ):
        raise ChecksumMismatchError("SHA-256 of the download differs from ContentSHA256")


def check_signature_checkable(desired: DesiredModel, trusted_keys: list[bytes]) -> None:
    """A `Signature` is never ignored: without a trusted key to check it against, the update is refused
    (before anything is downloaded). Installing it unchecked would make the publisher's signature mean
    nothing exactly when someone may have replaced it; refusing costs a setting, and is retried."""
    if desired.signature_bytes is not None and not trusted_keys:
        raise SignatureUncheckedError(
            "the model is signed but no trusted keys are configured (LOADER_TRUSTED_KEYS): "
            "the Signature cannot be checked"
        )


def verify_signature(
    desired: DesiredModel, *, sha256: bytes, trusted_keys: list[bytes], required: bool
) -> None:
    """An Ed25519 signature over the raw SHA-256 digest, by any trusted key."""
    signature = desired.signature_bytes
    if signature is None:
        if required:
            raise SignatureInvalidError("a Signature is required (LOADER_REQUIRE_SIGNATURE=true)")
        return
    check_signature_checkable(desired, trusted_keys)
    for raw_key in trusted_keys:
        try:
            Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, sha256)
        except InvalidSignature:
            continue
        return
    raise SignatureInvalidError("the Signature does not verify with any trusted key")
