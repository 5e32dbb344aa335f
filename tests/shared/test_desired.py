"""The loader's desired properties (architecture §3): what parses, what fails, and how failures read."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from edge_shared.desired import (
    KNOWN_PROPERTIES,
    DesiredFields,
    desired_is_empty,
    desired_patch,
    parse_desired,
)
from edge_shared.errors import InvalidDesiredError

SAS_URL = (
    "https://account.blob.core.windows.net/models/tiny-yolov3-1.1.zip"
    "?sv=2026-10-06&se=2026-12-01T00%3A00%3A00Z&sr=b&sp=r&sig=SECRETSIGNATURE%3D"
)
MD5_B64 = base64.b64encode(hashlib.md5(b"zip bytes").digest()).decode()
MD5_HEX = hashlib.md5(b"zip bytes").hexdigest()
SHA256_HEX = hashlib.sha256(b"zip bytes").hexdigest()


def reference_patch(**changes: Any) -> dict[str, Any]:
    """The reference architecture's three-property patch."""
    patch: dict[str, Any] = {"FileName": "tiny-yolov3-1.1.zip", "DownloadUrl": SAS_URL, "ContentMD5": MD5_B64}
    patch.update(changes)
    return {key: value for key, value in patch.items() if value is not ...}


def problems_of(patch: dict[str, Any], **kwargs: Any) -> InvalidDesiredError:
    with pytest.raises(InvalidDesiredError) as caught:
        parse_desired(patch, **kwargs)
    return caught.value


def test_reference_three_property_patch_parses() -> None:
    desired = parse_desired({**reference_patch(), "$version": 7})
    assert desired.file_name == "tiny-yolov3-1.1.zip"
    assert desired.version == "tiny-yolov3-1.1"
    assert desired.content_md5 == MD5_HEX
    assert desired.md5_bytes == hashlib.md5(b"zip bytes").digest()
    assert desired.download_url.get_secret_value() == SAS_URL


def test_md5_accepted_as_hex_and_normalised() -> None:
    assert parse_desired(reference_patch(ContentMD5=MD5_HEX.upper())).content_md5 == MD5_HEX


def test_optional_fields_parse() -> None:
    signature = base64.b64encode(bytes(64)).decode()
    desired = parse_desired(
        reference_patch(
            ContentSHA256=SHA256_HEX.upper(),
            Version="2.0-rc1",
            Size=1234,
            Signature=signature,
            Delta={
                "BaseVersion": "1.0",
                "DownloadUrl": SAS_URL,
                "ContentSHA256": SHA256_HEX,
                "Format": "emdelta/1",
            },
        )
    )
    assert desired.version == "2.0-rc1"
    assert desired.content_sha256 == SHA256_HEX
    assert desired.size == 1234
    assert desired.signature_bytes == bytes(64)
    assert desired.delta is not None and desired.delta.base_version == "1.0"


def test_sha256_alone_is_enough() -> None:
    desired = parse_desired(reference_patch(ContentMD5=..., ContentSHA256=SHA256_HEX))
    assert desired.content_md5 is None and desired.content_sha256 == SHA256_HEX


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (reference_patch(FileName=...), "FileName"),
        (reference_patch(DownloadUrl=...), "DownloadUrl"),
        (reference_patch(FileName="../x.zip"), "FileName"),
        (reference_patch(FileName="models/x.zip"), "FileName"),
        (reference_patch(FileName="..zip"), "FileName"),
        (reference_patch(FileName="model.tar"), "FileName"),
        (reference_patch(FileName="a" * 129 + ".zip"), "FileName"),
        (reference_patch(DownloadUrl="http://account.blob.core.windows.net/m/x.zip?sig=abc"), "DownloadUrl"),
        (reference_patch(DownloadUrl="ftp://host/x.zip"), "DownloadUrl"),
        (reference_patch(DownloadUrl="https:///nohost.zip"), "DownloadUrl"),
        (reference_patch(DownloadUrl="https://h:99999/x.zip?sig=abc"), "DownloadUrl"),
        (reference_patch(DownloadUrl="https://h:abc/x.zip?sig=abc"), "DownloadUrl"),
        (reference_patch(DownloadUrl="https://h:-1/x.zip"), "DownloadUrl"),
        (
            reference_patch(
                Delta={
                    "BaseVersion": "1",
                    "DownloadUrl": "https://h:0x50/d",
                    "ContentSHA256": "a" * 64,
                    "Format": "emdelta/1",
                }
            ),
            "Delta.DownloadUrl",
        ),
        (reference_patch(DownloadUrl="https://" + "a" * 10_000_000), "DownloadUrl"),
        (reference_patch(ContentMD5="not-a-digest"), "ContentMD5"),
        (reference_patch(ContentMD5=base64.b64encode(b"short").decode()), "ContentMD5"),
        (reference_patch(ContentMD5="0" * 31), "ContentMD5"),
        (reference_patch(ContentSHA256="xyz"), "ContentSHA256"),
        (reference_patch(FileName=42), "FileName"),
        (reference_patch(DownloadUrl=["https://h/x.zip"]), "DownloadUrl"),
        (reference_patch(ContentMD5=12345), "ContentMD5"),
        (reference_patch(Size="100"), "Size"),
        (reference_patch(Size=True), "Size"),
        (reference_patch(Size=0), "Size"),
        (reference_patch(Version="../etc"), "Version"),
        (reference_patch(Version=3), "Version"),
        (reference_patch(Signature="AAAA"), "Signature"),
        (reference_patch(Delta={"BaseVersion": "1"}), "Delta.DownloadUrl"),
        (reference_patch(FileName="x" * 10_000_000), "FileName"),
    ],
)
def test_invalid_desired_names_the_field(patch: dict[str, Any], field: str) -> None:
    error = problems_of(patch)
    assert field in error.fields, str(error)
    assert field in str(error)


def test_missing_checksum_is_refused() -> None:
    error = problems_of(reference_patch(ContentMD5=...))
    assert "ContentMD5 or ContentSHA256" in str(error)


def test_long_file_name_needs_an_explicit_version() -> None:
    name = "m" * 100 + ".zip"
    assert "Version is required" in str(problems_of(reference_patch(FileName=name)))
    assert parse_desired(reference_patch(FileName=name, Version="1.0")).version == "1.0"


def test_http_allowed_only_when_configured() -> None:
    url = "http://127.0.0.1:10000/devstoreaccount1/models/x.zip?sig=abc"
    assert "LOADER_ALLOW_INSECURE_HTTP" in str(problems_of(reference_patch(DownloadUrl=url)))
    desired = parse_desired(reference_patch(DownloadUrl=url), allow_insecure_http=True)
    assert desired.download_url.get_secret_value() == url


def test_errors_and_reprs_never_show_the_sas_token() -> None:
    error = problems_of(reference_patch(ContentMD5="bad", FileName="../x.zip"))
    assert "SECRETSIGNATURE" not in str(error)
    desired = parse_desired(reference_patch())
    assert "SECRETSIGNATURE" not in repr(desired)
    assert "SECRETSIGNATURE" not in desired.url_for_logs
    assert desired.url_for_logs.startswith("https://account.blob.core.windows.net/models/tiny-yolov3-1.1.zip")


def test_same_target_ignores_a_refreshed_url() -> None:
    first = parse_desired(reference_patch())
    refreshed = parse_desired(reference_patch(DownloadUrl=SAS_URL.replace("SECRET", "OTHER")))
    other = parse_desired(reference_patch(ContentMD5=base64.b64encode(bytes(16)).decode()))
    assert first.same_target(refreshed)
    assert not first.same_target(other)


def test_empty_desired_section_asks_for_nothing() -> None:
    assert desired_is_empty({"$version": 1})
    assert desired_is_empty({"FileName": "", "$version": 2})
    assert not desired_is_empty({"FileName": "x.zip"})


def test_a_model_object_names_the_model_whole_and_top_level_keys_are_not_mixed_in() -> None:
    # A layered deployment sets `Model`; an older per-device publish left top-level keys with a checksum
    # the layer's object lacks. The layer's object must stand alone, so it fails for want of a checksum.
    layered = {"FileName": "m-v2.zip", "DownloadUrl": SAS_URL, "Version": "v2"}
    twin = {**reference_patch(ContentSHA256=SHA256_HEX), "Model": layered, "$version": 7}
    error = problems_of(twin)
    assert "ContentMD5" in str(error) or "checksum" in str(error).lower()
    parsed = parse_desired({**twin, "Model": {**layered, "ContentMD5": MD5_HEX}})
    assert (parsed.file_name, parsed.version, parsed.content_md5, parsed.content_sha256) == (
        "m-v2.zip",
        "v2",
        MD5_HEX,
        None,
    )


def test_without_a_model_object_the_top_level_keys_still_name_the_model() -> None:
    assert parse_desired({**reference_patch(), "Model": None}).file_name == "tiny-yolov3-1.1.zip"
    assert not desired_is_empty({"Model": {"FileName": "x.zip"}})
    assert desired_is_empty({"Model": {"FileName": ""}, "FileName": "ignored.zip"})


@pytest.mark.parametrize("value", ["m.zip", 3, ["m.zip"]])
def test_a_model_that_is_not_an_object_is_refused_by_name(value: object) -> None:
    assert not desired_is_empty({"Model": value})
    assert problems_of({"Model": value}).fields == ["Model"]


# --- the publisher's builder ---------------------------------------------------------------------------


def test_the_builder_writes_the_wire_names_and_the_loader_reads_back_every_field() -> None:
    delta_url = "https://account.blob.core.windows.net/models/v2.emdelta?sig=S"
    patch = desired_patch(
        "tiny-yolov3-1.1.zip",
        SAS_URL,
        content_md5=MD5_B64,
        content_sha256=SHA256_HEX,
        version="1.1",
        size=123,
        signature=base64.b64encode(bytes(64)).decode(),
        delta={"base_version": "1.0", "download_url": delta_url, "content_sha256": SHA256_HEX,
               "format": "emdelta/1"},
    )  # fmt: skip
    assert set(patch) == set(KNOWN_PROPERTIES)
    assert patch["ContentMD5"] == MD5_B64  # as given: the publisher's base64, as Blob reports it
    assert set(patch["Delta"]) == {"BaseVersion", "DownloadUrl", "ContentSHA256", "Format"}
    desired = parse_desired(patch)
    assert (desired.file_name, desired.version, desired.size) == ("tiny-yolov3-1.1.zip", "1.1", 123)
    assert desired.download_url.get_secret_value() == SAS_URL and desired.content_md5 == MD5_HEX
    assert desired.signature_bytes == bytes(64)
    assert desired.delta is not None and desired.delta.download_url.get_secret_value() == delta_url


def test_fields_left_out_are_left_out_unless_a_publisher_clears_them() -> None:
    assert set(desired_patch("m-1.zip", SAS_URL, content_md5=MD5_B64)) == {
        "FileName",
        "DownloadUrl",
        "ContentMD5",
    }
    cleared = desired_patch("m-1.zip", SAS_URL, content_md5=MD5_B64, clear_unset=True)
    assert set(cleared) == set(KNOWN_PROPERTIES)
    assert {key for key, value in cleared.items() if value is None} == set(KNOWN_PROPERTIES) - {
        "FileName", "DownloadUrl", "ContentMD5"
    }  # fmt: skip
    assert desired_patch("m-1.zip", SAS_URL, content_md5=MD5_B64, delta=None)["Delta"] is None


def test_every_optional_property_of_the_contract_has_a_typed_field() -> None:
    every = desired_patch("m-1.zip", SAS_URL, content_md5=MD5_B64, clear_unset=True)
    assert len(DesiredFields.__optional_keys__) + 2 == len(every) == len(KNOWN_PROPERTIES)


def test_the_builder_refuses_what_the_loader_would_refuse() -> None:
    with pytest.raises(InvalidDesiredError) as caught:
        desired_patch("m-1.zip", "http://127.0.0.1:1/m.zip", content_md5=MD5_B64)
    assert "DownloadUrl" in str(caught.value)
    with pytest.raises(InvalidDesiredError, match="ContentMD5 or ContentSHA256"):
        desired_patch("m-1.zip", SAS_URL)
    allowed = desired_patch(
        "m-1.zip", "http://127.0.0.1:1/m.zip", content_md5=MD5_B64, allow_insecure_http=True
    )
    assert allowed["DownloadUrl"] == "http://127.0.0.1:1/m.zip"
