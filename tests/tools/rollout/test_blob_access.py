"""A rollout's blob URL lives as long as the container's stored access policy, on real Azurite."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from edge_tools.azurite import Azurite
from edge_tools.rollout.blob_access import policy_blob_url, renew_read_policy

pytestmark = pytest.mark.integration


def test_the_url_reads_while_the_policy_lasts_and_renewal_never_shortens_it(tmp_path: Path) -> None:
    with Azurite(tmp_path) as azurite:
        azurite.upload("models", "m-v2.zip", b"zip bytes")
        container = azurite.service_client().get_container_client("models")
        blob_url = container.get_blob_client("m-v2.zip").url
        container.set_container_access_policy(signed_identifiers={}, public_access=None)
        ca = str(azurite.ca_file)
        url = policy_blob_url(azurite.connection_string, "models", blob_url, "m-v2.zip", "edge-model-rollout")
        assert "si=edge-model-rollout" in url and "se=" not in url
        verify = ssl.create_default_context(cafile=ca)
        assert httpx.get(url, verify=verify).status_code == 403  # no policy yet: the SAS grants nothing

        long = renew_read_policy(
            azurite.connection_string, "models", valid_for=timedelta(days=365), ca_file=ca
        )
        assert long > datetime.now(UTC) + timedelta(days=364)
        response = httpx.get(url, verify=verify)
        assert response.status_code == 200 and response.content == b"zip bytes"

        kept = renew_read_policy(azurite.connection_string, "models", valid_for=timedelta(days=1), ca_file=ca)
        assert kept == long
        policies = container.get_container_access_policy()["signed_identifiers"]
        assert [item.id for item in policies] == ["edge-model-rollout"]

        expired = datetime.now(UTC) - timedelta(days=2)
        renew_read_policy(
            azurite.connection_string,
            "models",
            policy="other",
            valid_for=timedelta(days=1),
            ca_file=ca,
            now=expired,
        )
        assert sorted(item.id for item in container.get_container_access_policy()["signed_identifiers"]) == [
            "edge-model-rollout",
            "other",
        ]
        other = policy_blob_url(azurite.connection_string, "models", blob_url, "m-v2.zip", "other")
        assert httpx.get(other, verify=verify).status_code == 403  # that policy has expired
