"""Hypothesis over `parse_desired`: any JSON-like twin section gives a `DesiredModel` or an
`InvalidDesiredError`, nothing else, and no error (or model repr) ever echoes a URL's query."""

from __future__ import annotations

import base64
import string
import traceback
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_shared.desired import KNOWN_PROPERTIES, DesiredModel, parse_desired
from edge_shared.errors import InvalidDesiredError

EXAMPLES = 400
#: Every generated query value carries this marker, so an echoed query is found wherever it lands.
SECRET = "SeCrEtSiG"

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
safe_text = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=140)
hosts = st.sampled_from(
    ["acct.blob.core.windows.net", "127.0.0.1:10000", "acct.blob.core.windows.net", "", "h"]
)
queries = st.text(string.ascii_letters + string.digits + "%=&+/", max_size=30).map(
    lambda tail: f"sv=2024&sig={SECRET}{tail}"
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["https", "https", "https", "http", "ftp", "HTTPS", "", "file"]))
    path = draw(st.text(string.ascii_letters + "/._-" + (" \t" if draw(st.booleans()) else ""), max_size=30))
    return f"{scheme}://{draw(hosts)}/{path}?{draw(queries)}"


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` three times in four (one_of picks a branch uniformly)."""
    return st.one_of(valid, valid, valid, invalid)


md5s = mostly(
    st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode())
    | st.binary(min_size=16, max_size=16).map(bytes.hex),
    st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=70),
)
sha256s = mostly(
    st.binary(min_size=32, max_size=32).map(bytes.hex), st.text("0123456789abcdefg", max_size=66)
)
signatures = mostly(
    st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=100).map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=130),
)

PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "FileName": mostly(safe_text.map(lambda s: s[:120] + ".zip"), safe_text | st.just("../x.zip")),
    "DownloadUrl": urls(),
    "ContentMD5": md5s,
    "ContentSHA256": sha256s,
    "Version": safe_text,
    "Size": mostly(st.integers(min_value=1, max_value=2**40), st.integers(min_value=-2, max_value=2**70)),
    "Signature": signatures,
    "Delta": st.fixed_dictionaries(
        {},
        optional={
            "BaseVersion": safe_text | json_values,
            "DownloadUrl": urls() | json_values,
            "ContentSHA256": sha256s | json_values,
            "Format": safe_text | json_values,
        },
    ),
}


VALID: dict[str, st.SearchStrategy[Any]] = {
    "FileName": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,60}\.zip", fullmatch=True),
    "DownloadUrl": queries.map(lambda q: f"https://acct.blob.core.windows.net/models/m.zip?{q}"),
    "ContentMD5": st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode()),
    "ContentSHA256": st.binary(min_size=32, max_size=32).map(bytes.hex),
    "Version": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True),
    "Size": st.integers(min_value=1, max_value=2**40),
    "Signature": st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode()),
    "Delta": st.fixed_dictionaries(
        {
            "BaseVersion": st.just("v1"),
            "DownloadUrl": queries.map(lambda q: f"https://acct.blob.core.windows.net/d/x.delta?{q}"),
            "ContentSHA256": st.binary(min_size=32, max_size=32).map(bytes.hex),
            "Format": st.just("bsdiff4"),
        }
    ),
}


@st.composite
def desired_sections(draw: st.DrawFn) -> dict[str, Any]:
    """A valid section with up to three keys dropped or replaced by plausible or arbitrary values,
    plus unknown keys: valid, nearly valid and wildly invalid sections all occur."""
    section: dict[str, Any] = {"FileName": draw(VALID["FileName"]), "DownloadUrl": draw(VALID["DownloadUrl"])}
    for key in KNOWN_PROPERTIES[2:]:
        if draw(st.booleans()):
            section[key] = draw(VALID[key])
    for key in draw(st.lists(st.sampled_from(KNOWN_PROPERTIES), max_size=3)):
        if draw(st.integers(0, 3)) == 0:
            section.pop(key, None)
        else:
            section[key] = draw(mostly(PLAUSIBLE[key], json_values))
    section.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3)))
    return section


def _assert_no_query(text: str) -> None:
    assert SECRET not in text, f"a URL query leaked: {text!r}"


@pytest.fixture(scope="module")
def examples(soak_factor: int) -> int:
    return EXAMPLES * soak_factor


def test_any_twin_section_parses_or_is_refused_without_echoing_a_query(examples: int) -> None:
    outcomes = {"parsed": 0, "refused": 0}

    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(section=desired_sections(), allow_http=st.booleans())
    def check(section: dict[str, Any], allow_http: bool) -> None:
        try:
            model = parse_desired(section, allow_insecure_http=allow_http)
        except InvalidDesiredError as exc:
            outcomes["refused"] += 1
            assert exc.problems, "a refusal names at least one field"
            _assert_no_query(str(exc))
            _assert_no_query(repr(exc.problems))
            # What a log line with the traceback shows (pydantic's own error, holding the input, is
            # chained but suppressed: `raise ... from None`).
            _assert_no_query("".join(traceback.format_exception(exc)))
            return
        outcomes["parsed"] += 1
        assert isinstance(model, DesiredModel)
        assert model.content_md5 is not None or model.content_sha256 is not None
        _assert_no_query(repr(model))
        _assert_no_query(model.url_for_logs)
        scheme = model.download_url.get_secret_value().split(":", 1)[0].lower()  # case-insensitive (RFC 3986)
        assert scheme == "https" or (allow_http and scheme == "http")

    check()
    # Both outcomes were exercised, so the property is not vacuous.
    assert outcomes["parsed"] > 0 and outcomes["refused"] > 0, outcomes


def test_a_valid_section_with_noise_around_it_parses(examples: int) -> None:
    @settings(max_examples=examples // 4, deadline=None, database=None)
    @given(
        noise=st.dictionaries(st.text(max_size=12).filter(lambda k: k not in KNOWN_PROPERTIES), json_values),
        name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,59}", fullmatch=True),
        md5=st.binary(min_size=16, max_size=16),
    )
    def check(noise: dict[str, Any], name: str, md5: bytes) -> None:
        section = {
            **noise,
            "FileName": f"{name}.zip",
            "DownloadUrl": f"https://acct.blob.core.windows.net/models/{name}.zip?sig={SECRET}",
            "ContentMD5": base64.b64encode(md5).decode(),
        }
        model = parse_desired(section)
        assert model.content_md5 == md5.hex()
        assert model.file_name == f"{name}.zip"
        _assert_no_query(model.url_for_logs)

    check()
