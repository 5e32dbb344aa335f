"""Structured logs: one JSON object per line, context bound per task, secrets never written."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_shared.logs import configure_logging, log_context
from edge_shared.redaction import redact, redact_url

SAS = "https://acct.blob.core.windows.net/models/m.zip?sv=2026-10-06&sr=b&sp=r&sig=TOPSECRET%2Bsig%3D"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("DEBUG", "json", stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    """Records from this file's loggers (asyncio may log its selector choice at DEBUG)."""
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [entry for entry in entries if str(entry["logger"]).startswith("test.")]


def test_logged_url_with_sig_never_shows_the_signature(captured: io.StringIO) -> None:
    log = logging.getLogger("test.redaction")
    log.info("downloading %s", SAS)
    log.warning("failed", extra={"url": SAS})
    try:
        raise ConnectionError(f"GET {SAS} reset")
    except ConnectionError:
        log.exception("with traceback")
    text = captured.getvalue()
    assert "TOPSECRET" not in text
    assert "https://acct.blob.core.windows.net/models/m.zip?<redacted>" in text
    assert len(lines(captured)) == 3


def test_records_are_json_with_context(captured: io.StringIO) -> None:
    log = logging.getLogger("test.context")
    with log_context(update_id="u-1", version="1.1"):
        log.info("installing", extra={"bytes": 10})
    log.info("outside")
    first, second = lines(captured)
    assert first["msg"] == "installing" and first["level"] == "INFO" and first["logger"] == "test.context"
    assert first["update_id"] == "u-1" and first["version"] == "1.1" and first["bytes"] == 10
    assert "update_id" not in second


async def test_context_is_per_task(captured: io.StringIO) -> None:
    log = logging.getLogger("test.tasks")
    gate = asyncio.Event()

    async def work(name: str) -> None:
        with log_context(update_id=name):
            await gate.wait()
            log.info("step")

    tasks = [asyncio.create_task(work(f"u-{i}")) for i in range(3)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert sorted(str(entry["update_id"]) for entry in lines(captured)) == ["u-0", "u-1", "u-2"]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (SAS, "TOPSECRET"),
        ("HostName=h;DeviceId=d;SharedAccessKey=S3CRETKEY==;GatewayHostName=g", "S3CRETKEY"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=ACCOUNTKEY==;", "ACCOUNTKEY"),
        ("Authorization: SharedAccessSignature sr=hub&sig=HEADERSIG&se=1", "HEADERSIG"),
        ("query fragment sig=LOOSESIG&se=123", "LOOSESIG"),
        # No `=` and no `://`: only the word itself sends it past the quick check.
        ("authorization: sharedaccesssignature\tBAREHEADERSIG", "BAREHEADERSIG"),
    ],
)
def test_redact_removes_credentials(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redact_url_keeps_host_port_and_path() -> None:
    assert (
        redact_url("https://127.0.0.1:10000/acct/c/m.zip?sig=x#frag")
        == "https://127.0.0.1:10000/acct/c/m.zip?<redacted>"
    )
    assert redact_url("https://user:pw@host/p") == "https://host/p"
    assert redact_url("https://host/p") == "https://host/p"


@pytest.mark.parametrize("port", ["99999", "abc", "-1", "1:2"])
def test_redact_url_with_a_port_out_of_range_or_not_a_number_still_redacts(port: str) -> None:
    # urlsplit accepts these; only reading `.port` raises, which used to kill the update task.
    assert redact_url(f"https://host:{port}/p?sig=SECRET") == "https://host:<invalid port>/p?<redacted>"
    assert "SECRET" not in redact(f"failed: https://host:{port}/p?sig=SECRET")


@pytest.mark.parametrize("space", ["\n", "\r", "\t", "\f", "\v", "  "])
@pytest.mark.parametrize("word", ["SharedAccessSignature", "sharedaccesssignature", "ſharedAccessSignature"])
def test_the_sas_header_form_is_redacted_after_any_white_space(word: str, space: str) -> None:
    # A newline after the word used to crash the log formatter (IndexError) instead of redacting.
    text = f"auth: {word}{space}sr=hub&sig=TOPSECRET&se=1"
    assert "TOPSECRET" not in redact(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("SsſharedAccessSignature=&;:/ \n\t\"'sigr.xyz?%")), max_size=60))
def test_redact_never_raises_and_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
