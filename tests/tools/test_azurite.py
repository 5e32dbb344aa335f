"""The Azurite helper: HTTPS with a trusted throwaway CA, uploads with Content-MD5, SAS URLs, clean stop."""

from __future__ import annotations

import base64
import hashlib
import ssl
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from edge_tools.azurite import Azurite, AzuriteError

pytestmark = pytest.mark.integration


def test_start_upload_sas_and_stop(tmp_path: Path) -> None:
    data = b"model bytes" * 1000
    with Azurite(tmp_path) as azurite:
        assert azurite.port > 0
        blob = azurite.upload("models", "dir/model a.zip", data)
        assert blob.md5_base64 == base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        url = azurite.sas_url("models", "dir/model a.zip", https_only=True)
        assert url.startswith(f"https://127.0.0.1:{azurite.port}/devstoreaccount1/models/dir/model%20a.zip?")
        verify = ssl.create_default_context(cafile=str(azurite.ca_file))
        response = httpx.get(url, verify=verify)
        assert response.status_code == 200 and response.content == data
        assert response.headers["content-md5"] == blob.md5_base64 and response.headers["etag"] == blob.etag
        expired = azurite.sas_url("models", "dir/model a.zip", expires_in=timedelta(minutes=-1))
        assert httpx.get(expired, verify=verify).status_code == 403
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url)  # only the throwaway CA trusts it
        process = azurite._process
        assert process is not None
    assert process.returncode in (0, -15)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, verify=verify)


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AzuriteError, match="npm ci"):
        Azurite(tmp_path, binary=tmp_path / "nope").start()


def test_early_exit_is_reported(tmp_path: Path) -> None:
    fake = tmp_path / "azurite-blob"
    fake.write_text("#!/bin/sh\necho 'cannot listen: boom'\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(AzuriteError, match="exited before it was ready: cannot listen: boom"):
        Azurite(tmp_path, binary=fake).start()
