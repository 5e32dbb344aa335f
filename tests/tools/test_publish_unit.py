"""Publish CLI pieces that need no server: packaging rules, digests, SAS tokens, signing, errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, unquote

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_shared.reported import ActiveModel, LoaderReported, ModelUpdate, UpdateError, UpdateState
from edge_tools.publish.cli import CliError, main, status_rows
from edge_tools.publish.connstr import ConnectionStringError, HubConnection
from edge_tools.publish.package import PackageError, check_package, load_package, zip_folder
from edge_tools.publish.sas import hub_sas_token
from edge_tools.publish.signing import generate_key_pair, sign_digest


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "detector"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"\x08\x06onnx")
    (folder / "labels.txt").write_text("person\ncar\n")
    return folder


def test_folder_is_zipped_deterministically_and_named_after_folder_and_version(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    package = load_package(folder, version="1.2")
    assert package.file_name == "detector-1.2.zip"
    assert zip_folder(folder) == package.data
    assert package.md5_b64 == base64.b64encode(hashlib.md5(package.data).digest()).decode()
    assert package.sha256_hex == hashlib.sha256(package.data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(package.data)) as archive:
        assert sorted(archive.namelist()) == ["labels.txt", "model.onnx"]


def test_zip_keeps_its_name(tmp_path: Path) -> None:
    path = tmp_path / "m-3.zip"
    path.write_bytes(make_zip({"top/model.tflite": b"TFL3", "top/labelmap.txt": b"???\n"}))
    assert load_package(path, version="3").file_name == "m-3.zip"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.onnx": b"", "b.onnx": b"", "labels.txt": b""}, "exactly one .onnx"),
        ({"labels.txt": b""}, "exactly one .onnx"),
        ({"a.onnx": b"", "labels.txt": b"", "notes.txt": b""}, "found 2: labels.txt, notes.txt"),
        ({"x/a.onnx": b"", "y/labels.txt": b""}, "one top folder"),
        ({"x/y/a.onnx": b"", "x/labels.txt": b""}, "one top folder"),
    ],
)
def test_packages_the_loader_would_refuse_are_refused_before_upload(
    files: dict[str, bytes], message: str
) -> None:
    with pytest.raises(PackageError, match=message):
        check_package(make_zip(files))


def test_a_package_without_a_label_file_is_accepted() -> None:
    check_package(make_zip({"yolov8n.onnx": b""}))  # the model may carry its class names


def test_not_a_zip_is_refused() -> None:
    with pytest.raises(PackageError, match="not a ZIP"):
        check_package(b"plain text")


def test_zip_whose_utf8_flagged_name_is_not_utf8_is_refused(tmp_path: Path) -> None:
    data = bytearray(make_zip({"model.onnx": b"\x08\x06", "labels.txt": b"a\n"}))
    central = data.index(b"PK\x01\x02")
    data[central + 9] |= 0x08  # general-purpose flag bit 11: the name is UTF-8
    data[central + 46] = 0xED  # not followed by a continuation byte
    with pytest.raises(PackageError, match="not a ZIP"):
        check_package(bytes(data))
    (tmp_path / "m.zip").write_bytes(data)
    with pytest.raises(PackageError, match="cannot repack"):
        load_package(tmp_path / "m.zip", version="1", repack=True)


def test_hub_sas_token_verifies_with_the_key() -> None:
    key = base64.b64encode(b"k" * 32).decode()
    token = hub_sas_token("127.0.0.5:8443", key, "iothubowner", ttl_seconds=60, now=1000.0)
    assert token.startswith("SharedAccessSignature ")
    fields = dict(parse_qsl(token.removeprefix("SharedAccessSignature "), keep_blank_values=True))
    assert fields["se"] == "1060" and fields["skn"] == "iothubowner" and fields["sr"] == "127.0.0.5:8443"
    expected = hmac.new(b"k" * 32, b"127.0.0.5%3A8443\n1060", hashlib.sha256).digest()
    assert base64.b64decode(unquote(token.split("sig=")[1].split("&")[0])) == expected


def test_hub_connection_string_needs_all_parts() -> None:
    conn = HubConnection.parse("HostName=h:1;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5")
    assert conn.host == "h:1" and "a2V5" not in repr(conn)
    with pytest.raises(ConnectionStringError, match="SharedAccessKey"):
        HubConnection.parse("HostName=h;SharedAccessKeyName=x")


def test_signature_verifies_with_the_generated_public_key(tmp_path: Path) -> None:
    public_b64 = generate_key_pair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    digest = hashlib.sha256(b"zip").digest()
    signature = base64.b64decode(sign_digest((tmp_path / "k.pem").read_bytes(), digest))
    Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64)).verify(signature, digest)
    pem = serialization.load_pem_public_key((tmp_path / "k.pub.pem").read_bytes())
    assert isinstance(pem, Ed25519PublicKey)


def test_cli_reports_missing_connection_strings_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("EDGE_HUB_CONNECTION_STRING", raising=False)
    assert main(["publish", str(model_folder(tmp_path)), "--version", "1"]) == 2
    assert "storage connection string" in capsys.readouterr().err
    assert main(["status"]) == 2
    assert "IoT Hub connection string" in capsys.readouterr().err


def test_cli_keygen_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--out", str(tmp_path)]) == 0
    assert "LOADER_TRUSTED_KEYS" in capsys.readouterr().out
    assert main(["keygen", "--out", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_publish_refuses_a_version_the_loader_would_refuse_before_any_upload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A storage account that does not answer: the refusal must come before any connection.
    monkeypatch.setenv("EDGE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=https;AccountName=a;"
                       "AccountKey=a2V5;BlobEndpoint=https://127.0.0.1:9/a")  # fmt: skip
    assert main(["publish", str(model_folder(tmp_path)), "--version", "../1"]) == 2
    assert "--version '../1' must be 1-64 characters" in capsys.readouterr().err


def test_status_reads_the_reported_properties_through_the_shared_models() -> None:
    loaded = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    loader = LoaderReported(
        latest_file_name="ssd-2.zip",
        model_update=ModelUpdate(
            state=UpdateState.DOWNLOADING, version="2", bytes_done=5, bytes_total=10, percent=50.0, attempt=2,
            error=UpdateError(code="download_failed", message="reset"),
        ),
        installed_models=["1", "2"],
    ).to_twin()  # fmt: skip
    active = ActiveModel(
        version="1", file_name="ssd-1.zip", runtime="tflite", loaded_at=loaded, sha256="0" * 64
    )
    rows = {(m, k): v for m, k, v in status_rows(loader, {"ActiveModel": active.to_twin()}, "loader", "inf")}
    assert rows[("loader", "latest model")] == "ssd-2.zip"
    assert rows[("loader", "update state")] == "downloading" and rows[("loader", "attempt")] == 2
    assert rows[("loader", "progress")] == "5/10 bytes (50%)"
    assert rows[("loader", "error")] == "download_failed: reset"
    assert rows[("loader", "installed")] == "1, 2"
    assert rows[("inference", "runtime")] == "tflite"
    assert rows[("inference", "loaded at")] == loaded.isoformat()


def test_status_of_a_module_that_reported_nothing_shows_no_values() -> None:
    rows = status_rows({"$version": 1, "ModelUpdate": None}, {}, "loader", "inference")
    assert {value for _, _, value in rows} == {None}


def test_status_names_the_reported_field_that_breaks_the_contract() -> None:
    with pytest.raises(CliError, match=r"loader's reported LoaderReported .*ModelUpdate\.state"):
        status_rows({"ModelUpdate": {"state": "dancing"}}, {}, "loader", "inference")
    with pytest.raises(CliError, match="inference's reported ActiveModel"):
        status_rows({}, {"ActiveModel": {"version": "1"}}, "loader", "inference")
