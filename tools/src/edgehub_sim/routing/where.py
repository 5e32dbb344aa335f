"""The supported subset of IoT Hub's query language: syntax tree and recursive-descent parser.

Two dialects share it. ``route`` is edgeHub's routing condition over a message (below). ``twin`` is the
language of automatic-deployment target conditions and twin queries over a twin document: bare or dotted
names are twin paths (``deviceId``, ``tags.ring``, ``properties.reported.a.b``), ``< <= > >=`` are
allowed, and system properties, ``$body`` and ``IN [...]`` are refused.

Supported: ``=``, ``!=``/``<>``, ``AND``, ``OR``, ``NOT``, parentheses, string/number/boolean/null
literals, ``IS_DEFINED(x)``, system properties (``$contentType`` or ``{$contentType}``), application
properties as bare names, and ``$body.a.b[0]``. Anything else (other functions, ``<``, ``||``,
arithmetic, unknown system properties) is refused with a ``RouteError``: a route the simulator cannot
evaluate faithfully must fail at load, not silently route differently from edgeHub.

Grammar (keywords case-insensitive)::

    condition  := or_expr
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | comparison
    comparison := operand (("=" | "!=" | "<>") operand)?
    operand    := "(" or_expr ")" | literal | "-" number | "IS_DEFINED" "(" or_expr ")"
                | sysprop | "{" sysprop "}" | "$body" step* | app_property
    step       := "." identifier | "[" (integer | string) "]"
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal as TypingLiteral
from typing import NoReturn

from edgehub_sim.routing.errors import RouteError
from edgehub_sim.routing.lexer import Kind, Lexer, Token

Scalar = str | int | float | bool | None

#: Query-language name (lower case) -> key in RoutableMessage.system_properties, or the special
#: ``@device``/``@module`` for the connection ids, which come from the sender's identity.
SYSTEM_PROPERTIES: Mapping[str, str] = MappingProxyType(
    {
        "contenttype": "$.ct",
        "contentencoding": "$.ce",
        "messageid": "$.mid",
        "correlationid": "$.cid",
        "userid": "$.uid",
        "connectiondeviceid": "@device",
        "connectionmoduleid": "@module",
    }
)

_UNSUPPORTED_OPERATORS = frozenset({"<", "<=", ">", ">=", "||", "??", "+", "-", "*", "/", "%", "!"})


@dataclass(frozen=True)
class Literal:
    value: Scalar


@dataclass(frozen=True)
class SystemProperty:
    name: str  # the query-language name as written, e.g. "$contentType"
    key: str  # see SYSTEM_PROPERTIES


@dataclass(frozen=True)
class AppProperty:
    name: str


@dataclass(frozen=True)
class BodyPath:
    steps: tuple[str | int, ...]


@dataclass(frozen=True)
class TwinPath:
    steps: tuple[str, ...]


@dataclass(frozen=True)
class IsDefined:
    operand: "Expr"


@dataclass(frozen=True)
class Compare:
    op: TypingLiteral["=", "!=", "<", "<=", ">", ">="]
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Not:
    operand: "Expr"


@dataclass(frozen=True)
class And:
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Or:
    left: "Expr"
    right: "Expr"


Expr = Literal | SystemProperty | AppProperty | BodyPath | TwinPath | IsDefined | Compare | Not | And | Or

Dialect = TypingLiteral["route", "twin"]
_ORDERING = ("<", "<=", ">", ">=")

_KEYWORDS = frozenset({"and", "or", "not", "true", "false", "null", "into"})


class _Parser:
    def __init__(self, text: str, start: int, stop_at_into: bool, dialect: Dialect = "route") -> None:
        self._lexer = Lexer(text, start)
        self._stop_at_into = stop_at_into
        self._twin = dialect == "twin"
        self._token = self._lexer.next_token()

    def _advance(self) -> Token:
        token = self._token
        self._token = self._lexer.next_token()
        return token

    def _is_keyword(self, word: str) -> bool:
        return self._token.kind is Kind.IDENT and self._token.text.lower() == word

    def _is_punct(self, char: str) -> bool:
        return self._token.kind is Kind.PUNCT and self._token.text == char

    def _expect_punct(self, char: str, context: str) -> None:
        if not self._is_punct(char):
            raise RouteError(f"expected {char!r} {context}, found {self._token.describe()}")
        self._advance()

    def _at_end(self) -> bool:
        return self._token.kind is Kind.EOF

    def parse(self) -> tuple[Expr, int]:
        if self._at_end():
            raise RouteError("empty condition" if self._twin else "empty WHERE condition")
        expr = self._or()
        if self._stop_at_into and self._is_keyword("into"):
            return expr, self._token.start
        if not self._at_end():
            self._unexpected("after a complete condition")
        if self._stop_at_into:
            raise RouteError("missing INTO <sink> after the WHERE condition")
        return expr, self._token.start

    def _unexpected(self, context: str) -> NoReturn:
        token = self._token
        if self._twin and token.kind is Kind.IDENT and token.text.lower() == "in":
            raise RouteError("IN [...] is not supported in target conditions: use OR")
        if token.kind is Kind.OP and token.text in _UNSUPPORTED_OPERATORS:
            if not self._twin:
                raise RouteError(f"operator {token.text!r} is not supported (supported: =, !=, <>)")
            if token.text not in _ORDERING:
                raise RouteError(
                    f"operator {token.text!r} is not supported (supported: =, !=, <>, <, <=, >, >=)"
                )
        raise RouteError(f"unexpected {token.describe()} at offset {token.start} {context}")

    def _or(self) -> Expr:
        expr = self._and()
        while self._is_keyword("or"):
            self._advance()
            expr = Or(expr, self._and())
        return expr

    def _and(self) -> Expr:
        expr = self._not()
        while self._is_keyword("and"):
            self._advance()
            expr = And(expr, self._not())
        return expr

    def _not(self) -> Expr:
        if self._is_keyword("not"):
            self._advance()
            return Not(self._not())
        return self._comparison()

    def _comparison(self) -> Expr:
        left = self._operand()
        token = self._token
        if token.kind is Kind.OP and token.text in ("=", "!=", "<>"):
            self._advance()
            return Compare("=" if token.text == "=" else "!=", left, self._operand())
        if self._twin and token.kind is Kind.OP and token.text in _ORDERING:
            self._advance()
            op: TypingLiteral["<", "<=", ">", ">="] = (
                "<"
                if token.text == "<"
                else "<="
                if token.text == "<="
                else ">"
                if token.text == ">"
                else ">="
            )
            return Compare(op, left, self._operand())
        if token.kind is Kind.OP:
            self._unexpected("after an operand")
        return left

    def _operand(self) -> Expr:
        token = self._token
        if self._is_punct("("):
            self._advance()
            expr = self._or()
            self._expect_punct(")", "to close '('")
            return expr
        if self._twin and (self._is_punct("{") or token.kind is Kind.SYSPROP):
            raise RouteError(
                f"{token.describe()} at offset {token.start}: system properties and $body are not part of "
                "twin conditions (use deviceId, moduleId, tags.<name>, properties.desired|reported.<path>)"
            )
        if self._is_punct("{"):
            self._advance()
            if self._token.kind is not Kind.SYSPROP:
                raise RouteError(f"expected a system property after '{{', found {self._token.describe()}")
            expr = self._system_property(self._advance(), braced=True)
            self._expect_punct("}", "to close '{'")
            return expr
        if token.kind is Kind.STRING or token.kind is Kind.NUMBER:
            self._advance()
            return Literal(token.value)
        if token.kind is Kind.OP and token.text == "-":
            self._advance()
            number = self._token
            if number.kind is not Kind.NUMBER or not isinstance(number.value, int | float):
                raise RouteError("unary '-' is only supported before a number literal")
            self._advance()
            return Literal(-number.value)
        if token.kind is Kind.SYSPROP:
            return self._system_property(self._advance(), braced=False)
        if token.kind is Kind.IDENT:
            return self._identifier()
        self._unexpected("where an operand was expected")

    def _identifier(self) -> Expr:
        token = self._advance()
        word = token.text.lower()
        if self._is_punct("("):
            if word != "is_defined":
                raise RouteError(f"function {token.text}() is not supported (supported: IS_DEFINED)")
            self._advance()
            operand = self._or()
            if self._is_punct(","):
                raise RouteError("IS_DEFINED takes exactly one argument")
            self._expect_punct(")", "to close IS_DEFINED(")
            return IsDefined(operand)
        if word in ("true", "false"):
            return Literal(word == "true")
        if word == "null":
            return Literal(None)
        if word in _KEYWORDS:
            raise RouteError(f"unexpected keyword {token.text!r} at offset {token.start}")
        if self._twin:
            return TwinPath((token.text, *self._dotted_steps()))
        if self._is_punct(".") or self._is_punct("["):
            raise RouteError(
                f"nested application property {token.text}{self._token.text}... is not supported"
            )
        return AppProperty(token.text)

    def _system_property(self, token: Token, *, braced: bool) -> Expr:
        name = token.text[1:].lower()
        if name == "body" and not braced:
            return BodyPath(self._body_steps())
        key = SYSTEM_PROPERTIES.get(name)
        if key is None:
            supported = ", $body, ".join(f"${n}" for n in SYSTEM_PROPERTIES)
            raise RouteError(f"system property {token.text} is not supported (supported: {supported})")
        return SystemProperty(token.text, key)

    def _dotted_steps(self) -> tuple[str, ...]:
        steps: list[str] = []
        while self._is_punct("."):
            self._advance()
            if self._token.kind is not Kind.IDENT:
                raise RouteError(f"expected a property name after '.', found {self._token.describe()}")
            steps.append(self._advance().text)
        if self._is_punct("["):
            raise RouteError(f"'[' at offset {self._token.start}: indexing is not supported in twin paths")
        return tuple(steps)

    def _body_steps(self) -> tuple[str | int, ...]:
        steps: list[str | int] = []
        while True:
            if self._is_punct("."):
                self._advance()
                if self._token.kind is not Kind.IDENT:
                    raise RouteError(f"expected a name after '$body.', found {self._token.describe()}")
                steps.append(self._advance().text)
            elif self._is_punct("["):
                self._advance()
                index = self._advance()
                if index.kind is Kind.STRING and isinstance(index.value, str):
                    steps.append(index.value)
                elif index.kind is Kind.NUMBER and isinstance(index.value, int):
                    steps.append(index.value)
                else:
                    raise RouteError(f"expected an integer or string index, found {index.describe()}")
                self._expect_punct("]", "to close '['")
            else:
                return tuple(steps)


def parse_where(text: str) -> Expr:
    """Parse a complete WHERE condition (without the ``WHERE`` keyword)."""
    return _Parser(text, 0, stop_at_into=False).parse()[0]


def parse_twin_condition(text: str) -> Expr:
    """Parse a condition over a twin document (target conditions, twin queries): the ``twin`` dialect."""
    return _Parser(text, 0, stop_at_into=False, dialect="twin").parse()[0]


def parse_where_until_into(text: str, start: int) -> tuple[Expr, int]:
    """Parse the condition starting at ``start`` up to an ``INTO`` keyword; return it and INTO's offset."""
    return _Parser(text, start, stop_at_into=True).parse()
