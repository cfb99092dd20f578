"""GitHub Actions' expression language (``${{ ... }}``), as GitHub documents it: literals,
context property access, ``!``, comparisons with GitHub's loose equality (strings compared
case-insensitively, mixed types as numbers), ``&&``/``||`` returning an operand, and the
functions the workflows use. Anything else is an :class:`ExpressionError`, never a guess.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?))
  | (?P<str>'(?:[^']|'')*')
  | (?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\].,*])
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
)""", re.VERBOSE)
_STATUS = ("success", "failure", "cancelled", "always")


class ExpressionError(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def truthy(v: Any) -> bool:
    if isinstance(v, float) and math.isnan(v):
        return False
    return v not in (None, False, 0, "") and v != 0.0


def _number(v: Any) -> float:
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(int(v, 16)) if v.strip().lower().startswith("0x") else float(v.strip() or 0)
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) or (isinstance(a, int | float) and isinstance(b, int | float)
                              and not isinstance(a, bool) and not isinstance(b, bool)):
        return a == b if not isinstance(a, dict | list) else a is b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return _number(a) == _number(b)


def to_string(v: Any) -> str:
    """How GitHub turns a value into text inside a string."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, dict | list):
        return json.dumps(v, indent=2)
    return str(v)


class _Parser:
    def __init__(self, text: str, contexts: Mapping[str, Any], status: Callable[[str], bool]):
        self.text, self.toks, self.i = text, _tokens(text), 0
        self.contexts, self.status = contexts, status

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise ExpressionError(f"expected {value or 'more'} in {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        v = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return v

    def or_(self) -> Any:
        v = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            v = v if truthy(v) else right
        return v

    def and_(self) -> Any:
        v = self.eq()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.eq()
            v = right if truthy(v) else v
        return v

    def eq(self) -> Any:
        v = self.cmp()
        while self.peek() in (("op", "=="), ("op", "!=")):
            op = self.take()[1]
            right = self.cmp()
            v = _equal(v, right) if op == "==" else not _equal(v, right)
        return v

    def cmp(self) -> Any:
        v = self.unary()
        while self.peek() in (("op", "<"), ("op", ">"), ("op", "<="), ("op", ">=")):
            op = self.take()[1]
            a, b = v, self.unary()
            if not (isinstance(a, str) and isinstance(b, str)):
                a, b = _number(a), _number(b)
            else:
                a, b = a.lower(), b.lower()
            v = {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return v

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        v = self.primary()
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name":
                    raise ExpressionError(f"expected a property name in {self.text!r}")
                v = _index(v, name)
            else:
                key = self.or_()
                self.take("]")
                v = _index(v, key)
        return v

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "num":
            return float(int(value, 16)) if "x" in value.lower() else float(value)
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if value == "(":
            v = self.or_()
            self.take(")")
            return v
        if kind != "name":
            raise ExpressionError(f"unexpected {value!r} in {self.text!r}")
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        if self.peek() == ("op", "("):
            self.take()
            args = []
            while self.peek() != ("op", ")"):
                args.append(self.or_())
                if self.peek() == ("op", ","):
                    self.take()
            self.take(")")
            return self.call(value, args)
        if value not in self.contexts:
            raise ExpressionError(f"unknown context {value!r} in {self.text!r}")
        return self.contexts[value]

    def call(self, name: str, args: list[Any]) -> Any:
        fn = name.lower()
        if fn in _STATUS:
            if args:
                raise ExpressionError(f"{name}() takes no arguments")
            return self.status(fn)
        if fn == "contains":
            hay, needle = args
            if isinstance(hay, list):
                return any(_equal(x, needle) for x in hay)
            return to_string(needle).lower() in to_string(hay).lower()
        if fn in ("startswith", "endswith"):
            a, b = (to_string(x).lower() for x in args)
            return a.startswith(b) if fn == "startswith" else a.endswith(b)
        if fn == "format":
            text, *rest = args
            return re.sub(r"\{(\d+)\}", lambda m: to_string(rest[int(m.group(1))]),
                          to_string(text)).replace("{{", "{").replace("}}", "}")
        if fn == "join":
            items, sep = args[0], (args[1] if len(args) > 1 else ",")
            return to_string(sep).join(map(to_string, items)) if isinstance(items, list) else to_string(items)
        if fn == "tojson":
            return json.dumps(args[0], indent=2)
        if fn == "fromjson":
            return json.loads(to_string(args[0]))
        raise ExpressionError(f"function {name}() is not emulated")


def _index(v: Any, key: Any) -> Any:
    if isinstance(v, dict):
        if key == "*":
            return list(v.values())
        for k, item in v.items():  # GitHub's property names are case-insensitive
            if isinstance(key, str) and k.lower() == key.lower():
                return item
        return None
    if isinstance(v, list) and isinstance(key, float | int) and 0 <= int(key) < len(v):
        return v[int(key)]
    return None


def evaluate(text: str, contexts: Mapping[str, Any],
             status: Callable[[str], bool] | None = None) -> Any:
    """The value of one expression (the text inside ``${{ }}``)."""
    def no_status(fn: str) -> bool:
        raise ExpressionError(f"{fn}() is only allowed in if:")
    return _Parser(text, contexts, status or no_status).parse()


_EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def interpolate(value: Any, contexts: Mapping[str, Any]) -> Any:
    """A workflow value with its ``${{ }}`` replaced: a value that is one expression keeps its
    type (GitHub's rule), text around expressions makes a string."""
    if not isinstance(value, str):
        return value
    whole = _EMBEDDED.fullmatch(value.strip())
    if whole:
        return evaluate(whole.group(1), contexts)
    return _EMBEDDED.sub(lambda m: to_string(evaluate(m.group(1), contexts)), value)


def condition(value: Any, contexts: Mapping[str, Any], status: Callable[[str], bool]) -> bool:
    """An ``if:``: the expression with or without ``${{ }}``; without a status function it
    means ``success() && (...)``."""
    if value is None:
        return status("success")
    if isinstance(value, bool):
        return value and status("success")
    text = str(value).strip()
    whole = _EMBEDDED.fullmatch(text)
    text = whole.group(1) if whole else text
    if not any(re.search(rf"\b{fn}\s*\(", text, re.IGNORECASE) for fn in _STATUS):
        text = f"success() && ({text})"
    return truthy(evaluate(text, contexts, status))
