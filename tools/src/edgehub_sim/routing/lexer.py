"""Tokens of IoT Hub's routing query language, produced lazily.

Lazily, because a WHERE condition is followed by ``INTO <sink>`` whose text is not part of the query
language: the parser stops pulling tokens at ``INTO`` and the statement parser reads the sink itself.
Operators the simulator does not support (``<``, ``||``, ``+``, ...) are still tokenized so that the
parser can name them in its error.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from edgehub_sim.routing.errors import RouteError


class Kind(Enum):
    IDENT = "identifier"
    SYSPROP = "system property"
    STRING = "string"
    NUMBER = "number"
    OP = "operator"
    PUNCT = "punctuation"
    EOF = "end of condition"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    start: int
    value: str | int | float | None = None

    def describe(self) -> str:
        """How an error message names this token."""
        return "end of condition" if self.kind is Kind.EOF else repr(self.text)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?")
# Longest first, so "<=" is not read as "<" then "=".
_OPERATORS = ("!=", "<>", "<=", ">=", "||", "??", "=", "<", ">", "+", "-", "*", "/", "%", "!")
_PUNCT = "()[]{}.,"
_ESCAPES: Mapping[str, str] = MappingProxyType(
    {"'": "'", '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
)


class Lexer:
    """Reads tokens from ``text`` one at a time, starting at ``start``."""

    def __init__(self, text: str, start: int = 0) -> None:
        self._text = text
        self._pos = start

    def next_token(self) -> Token:
        text = self._text
        while self._pos < len(text) and text[self._pos].isspace():
            self._pos += 1
        start = self._pos
        if start >= len(text):
            return Token(Kind.EOF, "", start)
        char = text[start]
        if char in "'\"":
            return self._string(char)
        if char == "$":
            match = _IDENT.match(text, start + 1)
            if match is None:
                raise RouteError(f"'$' at offset {start} is not followed by a property name")
            self._pos = match.end()
            return Token(Kind.SYSPROP, text[start : self._pos], start)
        if (match := _IDENT.match(text, start)) is not None:
            self._pos = match.end()
            return Token(Kind.IDENT, match.group(), start)
        if (match := _NUMBER.match(text, start)) is not None:
            self._pos = match.end()
            literal = match.group()
            number: int | float = float(literal) if match.group(1) or match.group(2) else int(literal)
            return Token(Kind.NUMBER, literal, start, number)
        for op in _OPERATORS:
            if text.startswith(op, start):
                self._pos = start + len(op)
                return Token(Kind.OP, op, start)
        if char in _PUNCT:
            self._pos = start + 1
            return Token(Kind.PUNCT, char, start)
        raise RouteError(f"unexpected character {char!r} at offset {start}")

    def _string(self, quote_char: str) -> Token:
        text = self._text
        start = self._pos
        pos = start + 1
        chars: list[str] = []
        while pos < len(text):
            char = text[pos]
            if char == quote_char:
                self._pos = pos + 1
                return Token(Kind.STRING, text[start : self._pos], start, "".join(chars))
            if char == "\\":
                pos, decoded = self._escape(pos)
                chars.append(decoded)
                continue
            chars.append(char)
            pos += 1
        raise RouteError(f"unterminated string starting at offset {start}")

    def _escape(self, pos: int) -> tuple[int, str]:
        """Decode the escape at ``pos`` (a backslash); return the position after it and its text."""
        text = self._text
        code = text[pos + 1 : pos + 2]
        if code in _ESCAPES:
            return pos + 2, _ESCAPES[code]
        hex_digits = text[pos + 2 : pos + 6]
        if code == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", hex_digits):
            return pos + 6, chr(int(hex_digits, 16))
        raise RouteError(f"invalid escape {text[pos : pos + 2]!r} at offset {pos}")
