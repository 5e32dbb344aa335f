"""Evaluation of a parsed WHERE condition against one message, with the query language's undefined.

Semantics follow IoT Hub's query language: a missing property is *undefined*; comparing undefined, or
values of different types (``'5' = 5``), gives undefined; ``AND``/``OR``/``NOT`` are three-valued
(``false AND undefined`` is false, ``true OR undefined`` is true, ``NOT undefined`` is undefined); and
a route matches only when its condition is exactly ``true``, so undefined and null count as false.
Objects and arrays from ``$body`` can be tested with ``IS_DEFINED`` but compare as undefined.
"""

import codecs
import json
import logging
import operator
from dataclasses import dataclass, field
from typing import Final

from edgehub_sim.routing.message import RoutableMessage
from edgehub_sim.routing.where import (
    And,
    AppProperty,
    BodyPath,
    Compare,
    Expr,
    IsDefined,
    Literal,
    Not,
    Or,
    SystemProperty,
    TwinPath,
)

_log = logging.getLogger(__name__)


class _Undefined:
    """The query language's *undefined*: distinct from JSON null."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()

_JSON_ENCODINGS = ("utf-8", "utf-16", "utf-32")


def _type_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "structured"


def _decode_text(body: bytes, encoding: str) -> str:
    """Decode with the named Unicode encoding, honouring a byte-order mark (little-endian without)."""
    if encoding == "utf-8":
        return body.decode("utf-8-sig")
    boms = (
        (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
        if encoding == "utf-32"
        else (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    )
    if body.startswith(boms):
        return body.decode(encoding)
    return body.decode(f"{encoding}-le")


@dataclass
class EvalContext:
    """One message under evaluation; parses the JSON body at most once across all routes."""

    message: RoutableMessage
    _body: object = field(default=None, init=False)
    _body_parsed: bool = field(default=False, init=False)

    def body(self) -> object:
        """The body as JSON, or UNDEFINED unless content type is JSON in a UTF-8/16/32 encoding."""
        if not self._body_parsed:
            self._body_parsed = True
            self._body = self._parse_body()
        return self._body

    def _parse_body(self) -> object:
        props = self.message.system_properties
        content_type = props.get("$.ct", "").strip().lower()
        encoding = props.get("$.ce", "").strip().lower()
        if content_type != "application/json" or encoding not in _JSON_ENCODINGS:
            return UNDEFINED
        try:
            parsed: object = json.loads(_decode_text(self.message.body, encoding))
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both derive from ValueError
            _log.debug("body of a JSON message from %s is not valid JSON", self.message.module_id)
            return UNDEFINED
        return parsed


@dataclass(frozen=True)
class TwinContext:
    """A twin document (IoT Hub's JSON form) under evaluation by a target condition or twin query."""

    document: object


def _value(expr: Expr, ctx: "EvalContext | TwinContext") -> object:
    match expr:
        case Literal(value=value):
            return value
        case TwinPath(steps=path):
            return _walk(ctx.document, path) if isinstance(ctx, TwinContext) else UNDEFINED
        case IsDefined(operand=operand):
            return _value(operand, ctx) is not UNDEFINED
        case Compare(op=op, left=left, right=right):
            return _compare(op, _value(left, ctx), _value(right, ctx))
        case Not(operand=operand):
            inner = _value(operand, ctx)
            return (not inner) if isinstance(inner, bool) else UNDEFINED
        case And(left=left, right=right):
            return _and(_value(left, ctx), _value(right, ctx))
        case Or(left=left, right=right):
            return _or(_value(left, ctx), _value(right, ctx))
    if isinstance(ctx, TwinContext):  # the twin dialect's parser never builds message leaves
        return UNDEFINED
    match expr:
        case SystemProperty(key="@device"):
            return ctx.message.device_id
        case SystemProperty(key="@module"):
            return ctx.message.module_id
        case SystemProperty(key=key):
            return ctx.message.system_properties.get(key, UNDEFINED)
        case AppProperty(name=name):
            return ctx.message.app_properties.get(name, UNDEFINED)
        case BodyPath(steps=steps):
            return _walk(ctx.body(), steps)
    raise AssertionError(f"unknown expression {expr!r}")  # pragma: no cover


_ORDER: Final = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _walk(node: object, steps: tuple[str | int, ...]) -> object:
    for step in steps:
        if isinstance(step, str) and isinstance(node, dict):
            node = node.get(step, UNDEFINED)
        elif isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node):
            node = node[step]
        else:
            return UNDEFINED
    return node


def _compare(op: str, left: object, right: object) -> object:
    kind = _type_of(left)
    if left is UNDEFINED or right is UNDEFINED or kind == "structured" or kind != _type_of(right):
        return UNDEFINED
    if op in ("=", "!="):
        equal = left == right
        return equal if op == "=" else not equal
    if isinstance(left, str) and isinstance(right, str):
        return _ORDER[op](left, right)
    if kind == "number" and isinstance(left, int | float) and isinstance(right, int | float):
        return _ORDER[op](left, right)
    return UNDEFINED  # booleans and null have no order


def _and(left: object, right: object) -> object:
    if left is False or right is False:
        return False
    if left is True and right is True:
        return True
    return UNDEFINED


def _or(left: object, right: object) -> object:
    if left is True or right is True:
        return True
    if left is False and right is False:
        return False
    return UNDEFINED


def value_at(document: object, path: tuple[str, ...]) -> object:
    """The value at a twin path, or UNDEFINED (for projections of twin queries)."""
    return _walk(document, path)


def evaluate(expr: Expr, ctx: EvalContext | TwinContext) -> object:
    """The condition's value: a scalar, a JSON structure, or UNDEFINED."""
    return _value(expr, ctx)


def matches(expr: Expr, ctx: EvalContext | TwinContext) -> bool:
    """True only if the condition evaluates to exactly ``true``."""
    return _value(expr, ctx) is True
