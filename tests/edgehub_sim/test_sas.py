"""SAS tokens: what the SDKs build verifies; every tampering is refused."""

import pytest

from edgehub_sim.errors import AuthError
from edgehub_sim.sas import make_token, new_key, parse_token, verify_token

RESOURCE = "hub.example/devices/dev/modules/mod"


def test_token_verifies_with_its_key() -> None:
    key = new_key()
    token = make_token(RESOURCE, key, key_name="iothubowner")
    parsed = verify_token(token, key, RESOURCE.upper())
    assert (parsed.resource, parsed.key_name) == (RESOURCE, "iothubowner")


@pytest.mark.parametrize(
    ("token_key_same", "ttl", "resource", "message"),
    [
        (False, 60, RESOURCE, "does not match"),
        (True, -1, RESOURCE, "expired"),
        (True, 60, RESOURCE + "2", "another resource"),
    ],
)
def test_wrong_key_expiry_or_resource_is_refused(
    token_key_same: bool, ttl: int, resource: str, message: str
) -> None:
    key = new_key()
    token = make_token(RESOURCE, key if token_key_same else new_key(), ttl)
    with pytest.raises(AuthError, match=message):
        verify_token(token, key, resource)


@pytest.mark.parametrize(
    "token",
    [
        "Bearer x",
        "SharedAccessSignature sr=a&sig=b",
        "SharedAccessSignature sr=a&sig=b&se=soon",
        "SharedAccessSignature sr=a&nonsense",
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(AuthError):
        parse_token(token)


def test_signature_that_is_not_base64_is_refused() -> None:
    with pytest.raises(AuthError, match="base64"):
        verify_token(f"SharedAccessSignature sr={RESOURCE}&sig=%%%&se=9999999999", new_key(), RESOURCE)
