"""The small expression language of scenarios (docs/scenario-format.md,
*Expressions*): parsed with `ast`, evaluated by walking a whitelist of node
types. Nothing reaches `eval`; attribute access exists only on namespaces
the engine provides (`accounts.main.user`)."""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_BUILT_VALUE_OCTETS = 16 * 1024 * 1024  # "A" * n must not exhaust memory

FUNCTION_NAMES = frozenset(
    {
        "len",
        "sum",
        "min",
        "max",
        "sorted",
        "set",
        "unique",
        "upper",
        "header",
        "bodypart",
        "apop_digest",
        # SASL client side (conformance.core.sasl), provided by the engine
        "b64",
        "b64_octets",
        "unb64",
        "sasl_plain",
        "cram_md5",
        "scram_first",
        "scram_final",
        "scram_verify",
        "capa_args",
        "capa_number",
        "capa_has",
        "ehlo_keywords",
    }
)


class ExpressionSyntaxError(ValueError):
    """The expression text is not in the language; message says where."""


class ExpressionError(ValueError):
    """Evaluation failed: an unknown name, a wrong type, a bad index."""


class Namespace:
    """Attribute-style read-only access to a mapping (`accounts.main.user`)."""

    def __init__(self, label: str, values: Mapping[str, Any]) -> None:
        self._label = label
        self._values = dict(values)

    def get(self, name: str) -> Any:
        if name not in self._values:
            known = ", ".join(sorted(self._values))
            raise ExpressionError(f"{self._label} has no {name!r} (known: {known})")
        return self._values[name]

    def __repr__(self) -> str:
        return f"<{self._label}>"


_BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}

_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.BinOp,
    ast.UnaryOp,
    ast.USub,
    ast.Not,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Compare,
    ast.Subscript,
    ast.Slice,
    ast.Call,
    ast.Attribute,
    ast.List,
    ast.Tuple,
    *_BINARY_OPERATORS,
    *_COMPARISONS,
)


@dataclass(frozen=True)
class Expression:
    """A parsed expression; `names` are the free names it reads."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return _Evaluator(env).visit(self.tree.body)

    def describe_names(self, env: Mapping[str, Any]) -> str:
        """`octets = [1, 2], size = 3` for failure messages."""
        shown = []
        for name in sorted(self.names):
            value = _short_repr(env[name]) if name in env else "<undefined>"
            shown.append(f"{name} = {value}")
        return ", ".join(shown)


def parse_expression(text: str) -> Expression:
    """Parse and check `text`; raises ExpressionSyntaxError naming the problem."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionSyntaxError(f"invalid expression {text!r}: {exc.msg}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionSyntaxError(
                f"invalid expression {text!r}: {type(node).__name__} is not allowed"
            )
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTION_NAMES:
                allowed = " ".join(sorted(FUNCTION_NAMES))
                raise ExpressionSyntaxError(
                    f"invalid expression {text!r}: only these functions exist: {allowed}"
                )
            if node.keywords:
                raise ExpressionSyntaxError(f"invalid expression {text!r}: no keyword arguments")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionSyntaxError(
                f"invalid expression {text!r}: attribute {node.attr!r} is not allowed"
            )
        if isinstance(node, ast.Attribute) and not _is_name_chain(node):
            raise ExpressionSyntaxError(
                f"invalid expression {text!r}: attributes only on names (accounts.main.user)"
            )
        if isinstance(node, ast.Constant) and not isinstance(
            node.value, str | int | bytes | bool | type(None)
        ):
            raise ExpressionSyntaxError(f"invalid expression {text!r}: unsupported literal")
        if isinstance(node, ast.Name) and node.id not in FUNCTION_NAMES:
            names.add(node.id)
    return Expression(text.strip(), tree, frozenset(names))


def _is_name_chain(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _short_repr(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unique(values: Any) -> bool:
    items = list(values)
    return len(items) == len({_hashable(v) for v in items})


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def split_header(message: bytes) -> tuple[bytes, bytes]:
    """Split at the first empty line; the header keeps the blank line."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, rest = message.partition(separator)
        if found:
            return head + found, rest
    return message, b""


def apop_digest_of(timestamp: str, secret: str) -> str:
    """RFC 1939 §7 APOP: MD5 of the greeting timestamp followed by the secret."""
    return hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()


BUILTINS: dict[str, Callable[..., Any]] = {
    "len": len,
    "sum": sum,
    "min": min,
    "max": max,
    "sorted": sorted,
    "set": set,
    "unique": unique,
    "upper": lambda v: _upper(v),
    "header": lambda b: split_header(_as_bytes(b))[0],
    "bodypart": lambda b: split_header(_as_bytes(b))[1],
    "capa_args": lambda lines, tag: capa_args(lines, tag),
    "capa_number": lambda lines, tag: capa_number(lines, tag),
    "capa_has": lambda lines, tag: capa_has(lines, tag),
    "ehlo_keywords": lambda lines: ehlo_keywords(lines),
}

#: `capa_number` for EXPIRE NEVER (RFC 2449 §6.7): later than any day count.
CAPA_NEVER = 10**9


def capa_has(lines: Any, tag: Any) -> bool:
    """True if a CAPA line has this tag (case-insensitive, RFC 2449 §6)."""
    return _capa_line(lines, tag) is not None


def _capa_line(lines: Any, tag: Any) -> list[str] | None:
    if not isinstance(lines, list | tuple):
        raise ExpressionError(f"capa functions take the CAPA lines, not {type(lines).__name__}")
    for line in lines:
        words = str(line).split()
        if words and words[0].upper() == str(tag).upper():
            return words
    return None


def ehlo_keywords(lines: Any) -> list[str]:
    """The EHLO keywords of a saved 250 reply (its text lines after the
    first, which names the server), upper-cased, without the private 'X'
    ones (RFC 5321 §2.2.2)."""
    if not isinstance(lines, list | tuple):
        raise ExpressionError(f"ehlo_keywords takes the EHLO lines, not {type(lines).__name__}")
    words = [str(line).split()[:1] for line in lines[1:]]
    return [w[0].upper() for w in words if w and not w[0].upper().startswith("X")]


def capa_args(lines: Any, tag: Any) -> list[str]:
    """The parameters of the CAPA line with this tag (case-insensitive,
    RFC 2449 §6), [] when it has none or is absent."""
    words = _capa_line(lines, tag)
    return words[1:] if words else []


def capa_number(lines: Any, tag: Any) -> int:
    """The first parameter of that CAPA line as a number (EXPIRE NEVER is
    CAPA_NEVER); -1 when the line is absent or its parameter is no number."""
    args = capa_args(lines, tag)
    if not args:
        return -1
    if args[0].upper() == "NEVER":
        return CAPA_NEVER
    return int(args[0]) if args[0].isdigit() else -1


def _upper(value: Any) -> Any:
    """Upper-case a string, or each string of a list: for names RFC 2449 makes
    case-insensitive (capability tags, response codes)."""
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list | tuple):
        return [_upper(v) for v in value]
    raise ExpressionError(f"upper() takes text or a list of text, not {type(value).__name__}")


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ExpressionError(f"expected saved message bytes, got {type(value).__name__}")


class _Evaluator:
    def __init__(self, env: Mapping[str, Any]) -> None:
        self.env = env

    def visit(self, node: ast.expr) -> Any:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:  # parse_expression already refused it
            raise ExpressionError(f"{type(node).__name__} is not allowed")
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id not in self.env:
            raise ExpressionError(f"name {node.id!r} is not defined (not captured yet?)")
        return self.env[node.id]

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        base = self.visit(node.value)
        if not isinstance(base, Namespace):
            raise ExpressionError(f"{type(base).__name__} value has no attribute {node.attr!r}")
        return base.get(node.attr)

    def visit_List(self, node: ast.List) -> Any:
        return [self.visit(e) for e in node.elts]

    def visit_Tuple(self, node: ast.Tuple) -> Any:
        return tuple(self.visit(e) for e in node.elts)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not operand
        return self._guard(lambda: -operand)

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Mult):
            _check_repeat_size(left, right)
        operator = _BINARY_OPERATORS[type(node.op)]
        return self._guard(lambda: operator(left, right))

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        value: Any = is_and
        for operand in node.values:
            value = self.visit(operand)
            if bool(value) != is_and:
                return value
        return value

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.visit(comparator)
            if not self._compare(_COMPARISONS[type(op)], left, right):
                return False
            left = right
        return True

    def _compare(self, compare: Callable[[Any, Any], bool], left: Any, right: Any) -> bool:
        return bool(self._guard(lambda: compare(left, right)))

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        container = self.visit(node.value)
        if isinstance(node.slice, ast.Slice):
            parts = [
                None if p is None else self.visit(p)
                for p in (node.slice.lower, node.slice.upper, node.slice.step)
            ]
            return self._guard(lambda: container[slice(*parts)])
        index = self.visit(node.slice)
        return self._guard(lambda: container[index])

    def visit_Call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        function = self.env.get(f"__fn_{name}__") or BUILTINS.get(name)
        if function is None:
            raise ExpressionError(f"function {name}() is not available here")
        args = [self.visit(a) for a in node.args]
        return self._guard(lambda: function(*args))

    @staticmethod
    def _guard(compute: Callable[[], Any]) -> Any:
        try:
            return compute()
        except ExpressionError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError) as exc:
            raise ExpressionError(f"{type(exc).__name__}: {exc}") from None


def _check_repeat_size(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | bytes | list) and isinstance(times, int):
            if len(seq) * max(times, 0) > MAX_BUILT_VALUE_OCTETS:
                raise ExpressionError(
                    f"value would exceed {MAX_BUILT_VALUE_OCTETS} octets ({len(seq)} * {times})"
                )
