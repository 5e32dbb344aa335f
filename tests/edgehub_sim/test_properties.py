"""The topic property codec agrees with the real azure-iot-device SDK's own (pure) topic functions."""

import string
from typing import Any

import pytest
from azure.iot.device import Message
from azure.iot.device.iothub.pipeline import mqtt_topic_iothub
from hypothesis import given
from hypothesis import strategies as st

from edgehub_sim.properties import decode_properties, encode_input_properties, encode_properties

OBSERVED_TOPIC = (
    "devices/edgedev1/modules/loader/messages/events/"
    "%24.on=DLModelOutput&%24.mid=m-1&%24.ct=application%2Fjson&%24.ce=utf-8"
    "&modelVersion=2%2Fbeta%20%26%20more"
)
EVENTS_PREFIX = "devices/edgedev1/modules/loader/messages/events/"
TRICKY = "a/b & c=d %41 + ü 日本\n?#"
# What quote(safe="") may leave unescaped: the segment can never carry a raw '/', '&', '=', ' ' or '+'.
ENCODED_ALPHABET = frozenset(string.ascii_letters + string.digits + "_.-~%&=")
# The SDK's pure topic functions, untyped: called through Any.
SDK_TOPICS: Any = mqtt_topic_iothub
SDK_MESSAGE: Any = Message


def sdk_topic(system: dict[str, str], custom: dict[str, str]) -> str:
    """The topic the real SDK builds for a module output message with these properties."""
    names = {
        "$.on": "output_name",
        "$.mid": "message_id",
        "$.cid": "correlation_id",
        "$.uid": "user_id",
        "$.ct": "content_type",
        "$.ce": "content_encoding",
    }
    message = SDK_MESSAGE(b"{}")
    for key, value in system.items():
        setattr(message, names[key], value)
    message.custom_properties.update(custom)
    return str(SDK_TOPICS.encode_message_properties_in_topic(message, EVENTS_PREFIX))


def test_encode_matches_the_topic_observed_from_the_sdk() -> None:
    # Insertion order differs from the SDK's on purpose: the encoder imposes the SDK's order.
    system = {"$.ce": "utf-8", "$.ct": "application/json", "$.mid": "m-1", "$.on": "DLModelOutput"}
    segment = encode_properties(system, {"modelVersion": "2/beta & more"})
    assert EVENTS_PREFIX + segment == OBSERVED_TOPIC


def test_decode_reads_the_topic_observed_from_the_sdk() -> None:
    system, custom = decode_properties(OBSERVED_TOPIC.removeprefix(EVENTS_PREFIX))
    assert system == {
        "$.on": "DLModelOutput",
        "$.mid": "m-1",
        "$.ct": "application/json",
        "$.ce": "utf-8",
    }
    assert custom == {"modelVersion": "2/beta & more"}


def test_custom_properties_are_sorted_by_key_after_system_ones() -> None:
    segment = encode_properties({"$.mid": "1"}, {"zeta": "z", "alpha": "a", "Mid": "m"})
    assert segment == "%24.mid=1&Mid=m&alpha=a&zeta=z"


@pytest.mark.parametrize(
    ("system", "custom", "expected"),
    [
        ({}, {}, ""),
        ({"$.mid": "1"}, {}, "%24.mid=1"),
        ({}, {"b": "1", "a": "2"}, "a=2&b=1"),
    ],
)
def test_groups_are_joined_only_when_both_are_present(
    system: dict[str, str], custom: dict[str, str], expected: str
) -> None:
    assert encode_properties(system, custom) == expected
    assert EVENTS_PREFIX + expected == sdk_topic(system, custom)


def test_tricky_values_round_trip() -> None:
    system = {"$.mid": TRICKY, "$.cid": "=&=", "$.ct": "text/plain; charset=utf-8"}
    custom = {TRICKY: TRICKY, "empty": "", "plus": "1+1"}
    segment = encode_properties(system, custom)
    assert set(segment) <= ENCODED_ALPHABET
    assert decode_properties(segment) == (system, custom)


def test_plus_is_never_decoded_as_space() -> None:
    assert decode_properties("a=1+2&%24.mid=x+y") == ({"$.mid": "x+y"}, {"a": "1+2"})


def test_a_key_without_equals_decodes_to_empty_string() -> None:
    assert decode_properties("flag&a=1") == ({}, {"flag": "", "a": "1"})


def test_a_raw_equals_in_a_value_splits_only_on_the_first() -> None:
    assert decode_properties("a=b=c") == ({}, {"a": "b=c"})


def test_empty_pairs_are_skipped() -> None:
    assert decode_properties("&a=1&&b=2&") == ({}, {"a": "1", "b": "2"})


def test_unknown_system_keys_are_kept_after_the_sdk_ones() -> None:
    segment = encode_properties({"$.custom": "c", "$.on": "out"}, {})
    assert segment == "%24.on=out&%24.custom=c"
    assert decode_properties(segment) == ({"$.on": "out", "$.custom": "c"}, {})


@pytest.mark.parametrize(
    ("system", "custom", "message"),
    [
        ({"mid": "1"}, {}, r"must start with '\$\.'"),
        ({}, {"$.mid": "1"}, "would decode as a system property"),
    ],
)
def test_keys_that_would_not_round_trip_are_refused(
    system: dict[str, str], custom: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_properties(system, custom)
    with pytest.raises(ValueError, match=message):
        encode_input_properties(system, custom)


def test_input_properties_are_read_back_by_the_sdk() -> None:
    system = {
        "$.cmid": "loader",
        "$.cdid": "edgedev1",
        "$.mid": TRICKY,
        "$.cid": "c=1",
        "$.uid": "user/1",
        "$.ct": "application/json",
        "$.ce": "utf-8",
    }
    custom = {"modelVersion": "2/beta & more", "x=y": "a&b"}
    segment = encode_input_properties(system, custom)
    assert segment.startswith("%24.mid=")
    assert "%24.cdid=edgedev1&%24.cmid=loader&modelVersion=" in segment
    topic = f"devices/edgedev1/modules/inference/inputs/DLModelInput/{segment}"
    assert len(topic.split("/")) == 7
    received = SDK_MESSAGE(b"")
    SDK_TOPICS.extract_message_properties_from_topic(topic, received)
    assert received.message_id == TRICKY
    assert received.correlation_id == "c=1"
    assert received.user_id == "user/1"
    assert received.content_type == "application/json"
    assert received.content_encoding == "utf-8"
    assert received.custom_properties == {
        "$.cdid": "edgedev1",
        "$.cmid": "loader",
        "modelVersion": "2/beta & more",
        "x=y": "a&b",
    }


_text = st.text(max_size=20)
_system_keys = st.sampled_from(["$.on", "$.mid", "$.cid", "$.uid", "$.ct", "$.ce"])
_custom_keys = _text.filter(lambda key: not key.startswith("$."))


@given(
    system=st.dictionaries(_system_keys, _text.filter(bool)),
    custom=st.dictionaries(_custom_keys, _text, max_size=6),
)
def test_codec_round_trips_and_matches_the_sdk(system: dict[str, str], custom: dict[str, str]) -> None:
    segment = encode_properties(system, custom)
    assert set(segment) <= ENCODED_ALPHABET
    assert decode_properties(segment) == (system, custom)
    # The SDK skips empty system values, hence the filter(bool) above.
    assert EVENTS_PREFIX + segment == sdk_topic(system, custom)
    assert decode_properties(encode_input_properties(system, custom)) == (system, custom)
