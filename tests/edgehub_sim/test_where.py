"""The WHERE subset: every construct selects and rejects; undefined counts as false; the rest is refused."""

import json

import pytest

from edgehub_sim.routing import RoutableMessage, RouteError
from edgehub_sim.routing.evaluate import UNDEFINED, EvalContext, evaluate, matches
from edgehub_sim.routing.where import parse_where


def make_message(
    app: dict[str, str] | None = None,
    system: dict[str, str] | None = None,
    body: bytes = b"",
) -> RoutableMessage:
    return RoutableMessage(
        device_id="edgedev1",
        module_id="loader",
        output="DLModelOutput",
        body=body,
        system_properties={"$.on": "DLModelOutput", **(system or {})},
        app_properties=app or {},
    )


def json_message(
    document: object, encoding: str = "utf-8", content_type: str = "application/json"
) -> RoutableMessage:
    codec = {"utf-8": "utf-8", "utf-16": "utf-16", "utf-32": "utf-32"}.get(encoding.lower(), "utf-8")
    return make_message(
        system={"$.ct": content_type, "$.ce": encoding},
        body=json.dumps(document).encode(codec),
    )


def selects(condition: str, message: RoutableMessage) -> bool:
    return matches(parse_where(condition), EvalContext(message))


APP = make_message(app={"kind": "model", "tier": "gold", "count": "5"})


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("kind = 'model'", True),
        ("kind = 'status'", False),
        ('kind = "model"', True),
        ("kind != 'status'", True),
        ("kind != 'model'", False),
        ("kind <> 'status'", True),
        ("kind <> 'model'", False),
        ("kind = 'model' AND tier = 'gold'", True),
        ("kind = 'model' AND tier = 'silver'", False),
        ("kind = 'status' OR tier = 'gold'", True),
        ("kind = 'status' OR tier = 'silver'", False),
        ("NOT kind = 'status'", True),
        ("NOT kind = 'model'", False),
        ("NOT NOT kind = 'model'", True),
        ("kind = 'model' and tier = 'gold' or kind = 'x'", True),
        ("not (kind = 'model')", False),
        # AND binds tighter than OR; parentheses override it.
        ("kind = 'status' AND tier = 'x' OR tier = 'gold'", True),
        ("kind = 'status' AND (tier = 'x' OR tier = 'gold')", False),
        ("(kind = 'model' OR kind = 'x') AND tier = 'gold'", True),
        ("true", True),
        ("false", False),
        ("TRUE", True),
        ("NOT false", True),
        ("IS_DEFINED(kind)", True),
        ("is_defined(missing)", False),
        ("NOT IS_DEFINED(missing)", True),
        ("'model' = kind", True),
        ("kind = 'MODEL'", False),  # string comparison is case-sensitive
    ],
)
def test_application_properties_and_logic(condition: str, expected: bool) -> None:
    assert selects(condition, APP) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "missing = 'x'",
        "missing != 'x'",
        "missing <> 'x'",
        "NOT missing = 'x'",
        "NOT (missing != 'x')",
        "missing = missing",
        "missing = 'x' AND kind = 'model'",
        "missing = 'x' OR kind = 'status'",
        "NOT (missing = 'x' AND kind = 'model')",
        "count = 5",  # application properties are strings: a number never equals them
        "count != 5",
        "kind = true",
        "kind",  # a string is not a boolean
        "NOT kind",
    ],
)
def test_undefined_and_mismatched_types_count_as_false(condition: str) -> None:
    assert selects(condition, APP) is False


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("missing = 'x' OR kind = 'model'", True),  # true OR undefined is true
        ("missing = 'x' AND kind = 'status'", False),  # false AND undefined is false
        ("NOT (missing = 'x' AND kind = 'status')", True),
    ],
)
def test_three_valued_logic(condition: str, expected: bool) -> None:
    assert selects(condition, APP) is expected


SYSTEM = make_message(
    system={
        "$.ct": "application/json",
        "$.ce": "utf-8",
        "$.mid": "m-1",
        "$.cid": "c-1",
        "$.uid": "u-1",
    }
)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("$contentType", "application/json"),
        ("$contentEncoding", "utf-8"),
        ("$messageId", "m-1"),
        ("$correlationId", "c-1"),
        ("$userId", "u-1"),
        ("$connectionDeviceId", "edgedev1"),
        ("$connectionModuleId", "loader"),
        ("$CONNECTIONMODULEID", "loader"),
    ],
)
def test_system_properties_select_and_reject(name: str, value: str) -> None:
    assert selects(f"{name} = '{value}'", SYSTEM)
    assert selects(f"{{{name}}} = '{value}'", SYSTEM)
    assert not selects(f"{name} = 'other'", SYSTEM)
    assert selects(f"IS_DEFINED({name})", SYSTEM)


def test_unset_system_properties_are_undefined() -> None:
    bare = make_message()
    assert not selects("$messageId = 'm-1'", bare)
    assert not selects("$messageId != 'm-1'", bare)
    assert selects("NOT IS_DEFINED($contentType)", bare)


DOCUMENT = {
    "model": {"version": "1.1", "files": ["a.onnx", "labels.txt"], "size": 5, "ratio": 0.5},
    "ready": True,
    "failed": False,
    "error": None,
    "weird key": "w",
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("$body.model.version = '1.1'", True),
        ("$body.model.version = '2.0'", False),
        ("$body.model.files[0] = 'a.onnx'", True),
        ("$body.model.files[1] = 'a.onnx'", False),
        ("$body.model.files[5] = 'a.onnx'", False),
        ("$body['weird key'] = 'w'", True),
        ("$body.model['version'] = '1.1'", True),
        ("$body.model.size = 5", True),
        ("$body.model.size = 5.0", True),
        ("$body.model.size = '5'", False),
        ("$body.model.size != 6", True),
        ("$body.model.ratio = 0.5", True),
        ("$body.model.size = -5", False),
        ("$body.ready = true", True),
        ("$body.ready", True),
        ("$body.failed", False),
        ("NOT $body.failed", True),
        ("$body.failed = false", True),
        ("$body.ready = 1", False),  # a boolean is not a number
        ("$body.error = null", True),
        ("$body.ready = null", False),
        ("$body.missing = null", False),
        ("$body.error", False),  # null counts as false
        ("NOT $body.error", False),  # NOT null is undefined, not true
        ("IS_DEFINED($body.error)", True),
        ("IS_DEFINED($body.model)", True),
        ("IS_DEFINED($body.model.missing)", False),
        ("IS_DEFINED($body)", True),
        ("$body.model = $body.model", False),  # objects do not compare
        ("$body.model.version.deeper = 'x'", False),
        ("$body.model[0] = 'x'", False),
    ],
)
def test_body_paths_on_json_messages(condition: str, expected: bool) -> None:
    assert selects(condition, json_message(DOCUMENT)) is expected


@pytest.mark.parametrize("encoding", ["utf-8", "UTF-8", "utf-16", "UTF-16", "utf-32", "Utf-32"])
def test_body_paths_accept_each_unicode_encoding_case_insensitively(encoding: str) -> None:
    message = json_message({"name": "déjà"}, encoding=encoding, content_type="Application/JSON")
    assert selects("$body.name = 'déjà'", message)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_body_without_byte_order_mark_is_read_as_little_endian(encoding: str) -> None:
    message = make_message(
        system={"$.ct": "application/json", "$.ce": encoding},
        body=json.dumps({"a": "b"}).encode(f"{encoding}-le"),
    )
    assert selects("$body.a = 'b'", message)


@pytest.mark.parametrize(
    "message",
    [
        make_message(body=b'{"a": "b"}'),  # no content type
        make_message(system={"$.ct": "application/json"}, body=b'{"a": "b"}'),  # no encoding
        make_message(system={"$.ct": "text/plain", "$.ce": "utf-8"}, body=b'{"a": "b"}'),
        make_message(system={"$.ct": "application/json", "$.ce": "latin-1"}, body=b'{"a": "b"}'),
        make_message(system={"$.ct": "application/json", "$.ce": "utf-8"}, body=b'{"a": '),
        make_message(system={"$.ct": "application/json", "$.ce": "utf-8"}, body=b"\xff\xfe\x00"),
    ],
    ids=["no-content-type", "no-encoding", "not-json", "other-encoding", "bad-json", "bad-bytes"],
)
def test_body_paths_are_undefined_unless_the_body_is_readable_json(message: RoutableMessage) -> None:
    assert not selects("$body.a = 'b'", message)
    assert not selects("$body.a != 'b'", message)
    assert selects("NOT IS_DEFINED($body)", message)


def test_the_body_is_parsed_once_per_message() -> None:
    ctx = EvalContext(json_message({"a": "b"}))
    first = evaluate(parse_where("$body"), ctx)
    assert first == {"a": "b"}
    assert evaluate(parse_where("$body"), ctx) is first
    assert evaluate(parse_where("$body.missing"), ctx) is UNDEFINED


@pytest.mark.parametrize(
    ("condition", "value"),
    [
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'tab\\tnew\\nline\\\\'", "tab\tnew\nline\\"),
        ("'\\u00e9'", "é"),
        ("'a/b'", "a/b"),
        ("42", 42),
        ("-3.5", -3.5),
        ("1e3", 1000.0),
        ("null", None),
        ("FALSE", False),
    ],
)
def test_literals(condition: str, value: object) -> None:
    assert evaluate(parse_where(condition), EvalContext(APP)) == value


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("count < 5", "operator '<' is not supported"),
        ("count <= 5", "operator '<=' is not supported"),
        ("count > 5", "operator '>' is not supported"),
        ("count >= 5", "operator '>=' is not supported"),
        ("a || b", "operator '||' is not supported"),
        ("a ?? b", "operator '\\?\\?' is not supported"),
        ("count + 1 = 2", "operator '\\+' is not supported"),
        ("a = 'x' * 2", "operator '\\*' is not supported"),
        ("-count = 1", "unary '-' is only supported before a number"),
        ("STARTS_WITH(kind, 'm')", "function STARTS_WITH\\(\\) is not supported"),
        ("LOWER(kind) = 'model'", "function LOWER\\(\\) is not supported"),
        ("IS_NULL($body.a)", "function IS_NULL\\(\\) is not supported"),
        ("IS_DEFINED(a, b)", "exactly one argument"),
        ("IS_DEFINED(a", "expected '\\)' to close IS_DEFINED"),
        ("$to = 'x'", "system property \\$to is not supported"),
        ("{$body} = 'x'", "system property \\$body is not supported"),
        ("{kind} = 'x'", "expected a system property after"),
        ("{$messageId = 'x'", "expected '}' to close"),
        ("a.b = 'x'", "nested application property"),
        ("$body. = 'x'", "expected a name after '\\$body.'"),
        ("$body[x] = 'x'", "expected an integer or string index"),
        ("$body[0 = 'x'", "expected '\\]' to close"),
        ("(kind = 'x'", "expected '\\)' to close"),
        ("kind = ", "unexpected end of condition"),
        ("kind = 'x' tier", "unexpected 'tier'"),
        ("kind = 'x' = 'y'", "unexpected '='"),
        ("AND kind = 'x'", "unexpected keyword 'AND'"),
        ("kind = 'unterminated", "unterminated string"),
        ("kind = 'bad \\q escape'", "invalid escape"),
        ("kind = #", "unexpected character '#'"),
        ("$ = 'x'", "not followed by a property name"),
        ("", "empty WHERE condition"),
        ("   ", "empty WHERE condition"),
    ],
)
def test_unsupported_or_malformed_conditions_are_refused(condition: str, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        parse_where(condition)
