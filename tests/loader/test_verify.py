"""Digest and signature checks of a downloaded ZIP."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge_shared.desired import DesiredModel, parse_desired
from loader_module.errors import ChecksumMismatchError, SignatureInvalidError, SignatureUncheckedError
from loader_module.verify import check_signature_checkable, verify_digests, verify_signature

DATA = b"zip bytes" * 100
MD5 = hashlib.md5(DATA, usedforsecurity=False).digest()
SHA = hashlib.sha256(DATA).digest()


def _desired(**props: object) -> DesiredModel:
    return parse_desired({"FileName": "m-1.zip", "DownloadUrl": "https://h/x.zip?sig=s", **props})


@pytest.mark.parametrize(
    "props",
    [
        {"ContentMD5": base64.b64encode(MD5).decode()},
        {"ContentMD5": MD5.hex().upper()},
        {"ContentSHA256": SHA.hex()},
        {"ContentMD5": MD5.hex(), "ContentSHA256": SHA.hex(), "Size": len(DATA)},
    ],
)
def test_matching_digests_pass(props: dict[str, object]) -> None:
    verify_digests(_desired(**props), size=len(DATA), md5=MD5, sha256=SHA)


@pytest.mark.parametrize(
    "props",
    [
        {"ContentMD5": "00" * 16},
        {"ContentSHA256": "00" * 32},
        {"ContentMD5": MD5.hex(), "ContentSHA256": "11" * 32},
        {"ContentMD5": MD5.hex(), "Size": len(DATA) + 1},
    ],
)
def test_any_differing_digest_is_a_mismatch(props: dict[str, object]) -> None:
    with pytest.raises(ChecksumMismatchError):
        verify_digests(_desired(**props), size=len(DATA), md5=MD5, sha256=SHA)


def _keypair() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_signature_from_a_trusted_key_passes() -> None:
    key, public = _keypair()
    _, other = _keypair()
    desired = _desired(ContentSHA256=SHA.hex(), Signature=base64.b64encode(key.sign(SHA)).decode())
    verify_signature(desired, sha256=SHA, trusted_keys=[other, public], required=True)


def test_signature_from_an_untrusted_key_fails() -> None:
    key, _ = _keypair()
    _, trusted = _keypair()
    desired = _desired(ContentSHA256=SHA.hex(), Signature=base64.b64encode(key.sign(SHA)).decode())
    with pytest.raises(SignatureInvalidError):
        verify_signature(desired, sha256=SHA, trusted_keys=[trusted], required=False)


def test_signature_over_other_bytes_fails() -> None:
    key, public = _keypair()
    desired = _desired(ContentSHA256=SHA.hex(), Signature=base64.b64encode(key.sign(b"other")).decode())
    with pytest.raises(SignatureInvalidError):
        verify_signature(desired, sha256=SHA, trusted_keys=[public], required=False)


def test_missing_signature_fails_only_when_required() -> None:
    _, public = _keypair()
    desired = _desired(ContentSHA256=SHA.hex())
    verify_signature(desired, sha256=SHA, trusted_keys=[public], required=False)
    with pytest.raises(SignatureInvalidError):
        verify_signature(desired, sha256=SHA, trusted_keys=[public], required=True)


def test_a_signature_that_cannot_be_checked_is_refused_not_ignored() -> None:
    key, _ = _keypair()
    for signature in (key.sign(SHA), key.sign(b"other")):  # valid or not: neither can be checked
        desired = _desired(ContentSHA256=SHA.hex(), Signature=base64.b64encode(signature).decode())
        with pytest.raises(SignatureUncheckedError, match="LOADER_TRUSTED_KEYS"):
            check_signature_checkable(desired, [])
        with pytest.raises(SignatureUncheckedError):
            verify_signature(desired, sha256=SHA, trusted_keys=[], required=False)
    check_signature_checkable(_desired(ContentSHA256=SHA.hex()), [])  # unsigned: nothing to check
