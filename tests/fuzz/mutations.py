"""Hypothesis strategies that turn a realistic signed delivery into a hostile one.

Each `Mutation` is a small, printable description (so a failing example shrinks to
something readable) applied by `apply` to a fresh delivery from the vendor's simulator.
`expect` holds the status the ingress must answer (docs/architecture.md, "Failure handling";
docs/guarantees.md) when one is certain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

from callhook.vendors import VENDORS
from tests.fuzz.conftest import MAX_BODY_BYTES

Headers = list[tuple[str, str]]

#: values that break naive readers of times, numbers and ids
ODD_SCALARS: tuple[Any, ...] = (
    0,
    -1,
    2**63,
    2**64 + 1,
    -(2**63) - 1,
    10**30,
    1e308,
    -1e308,
    5e-324,
    1e20,
    253402300800,
    253402300800000,
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e300",
    "-0",
    "",
    " ",
    "\u0000",
    "\ud7ff\uffff",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+05:00",
    "2024-13-45T99:99:99Z",
    "00:00:00",
    "99999:99:99",
    True,
    False,
    None,
    [],
    {},
    [None],
    {"": None},
    "x" * 300,
)

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24)

#: JSON values of odd shapes: odd scalars, deep-ish containers, huge numbers
json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        _TEXT,
        st.sampled_from(ODD_SCALARS),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_TEXT, children, max_size=4),
    ),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """JSON the way a sloppy sender writes it: big integers kept, NaN allowed."""
    return json.dumps(value).encode()


@dataclass(frozen=True)
class Mutation:
    """One hostile change; `kind` names it, the other fields parameterise it."""

    kind: str
    args: tuple[Any, ...] = ()
    #: sign (or authenticate) the mutated body again, so parsing is reached
    resign: bool = True


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a parsed payload (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _drop(value: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1 and isinstance(value, dict):
        return {k: v for k, v in value.items() if k != path[0]}
    if len(path) == 1 and isinstance(value, list):
        return value[: path[0]] + value[path[0] + 1 :]
    if not path:
        return {}
    head = path[0]
    if isinstance(value, dict):
        return {**value, head: _drop(value[head], path[1:])}
    copy = list(value)
    copy[head] = _drop(copy[head], path[1:])
    return copy


def _nest(depth: int, inner: bytes, use_objects: bool) -> bytes:
    if use_objects:
        return b'{"a":' * depth + inner + b"}" * depth
    return b"[" * depth + inner + b"]" * depth


# --- body mutations --------------------------------------------------------------------


#: which value inside the payload a field mutation touches (modulo the number of paths)
_PATH = st.integers(0, 10**6)


#: field names that readers turn into times, durations, ids or types: where leniency breaks
_SENSITIVE = re.compile(r"(?i)(at|time|date|duration|id|type|status|trigger)$")


def _path(
    payload: Any, pick: int, *, root: bool = True, sensitive: bool = False
) -> tuple[Any, ...]:
    paths = _paths(payload)
    if sensitive:
        paths = [p for p in paths if p and isinstance(p[-1], str) and _SENSITIVE.search(p[-1])]
    if not root:
        paths = paths[1:] or paths
    return paths[pick % len(paths)] if paths else ()


def _body_mutations() -> list[st.SearchStrategy[Mutation]]:
    """Mutations of a realistic payload (fields picked by index) and of its bytes."""
    return [
        st.builds(
            lambda flips: Mutation("flip", (tuple(flips),)),
            st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4),
        ),
        st.builds(lambda cut: Mutation("truncate", (cut,)), st.integers(0, 10**6)),
        st.builds(
            lambda at, junk: Mutation("insert", (at, junk)),
            st.integers(0, 10**6),
            st.binary(min_size=1, max_size=8),
        ),
        st.builds(lambda v: Mutation("replace_body", (dumps(v),)), json_values),
        st.builds(lambda path, v: Mutation("set_field", (path, v)), _PATH, json_values),
        st.builds(
            lambda path, v: Mutation("set_field", (path, v)), _PATH, st.sampled_from(ODD_SCALARS)
        ),
        st.builds(
            lambda path, v: Mutation("set_sensitive", (path, v)),
            _PATH,
            st.sampled_from(ODD_SCALARS) | json_values,
        ),
        st.builds(lambda path: Mutation("drop_field", (path,)), _PATH),
        st.builds(
            lambda depth, objects, wrap: Mutation("nest", (depth, objects, wrap)),
            st.sampled_from((8, 64, 65, 100, 200, 253, 254, 255, 256, 500, 1023, 1024, 1025, 5000)),
            st.booleans(),
            st.booleans(),
        ),
        st.builds(
            lambda path, depth: Mutation("nest_field", (path, depth)),
            _PATH,
            st.sampled_from((50, 120, 250, 300, 900)),
        ),
        st.builds(
            lambda enc: Mutation("encode", (enc,)), st.sampled_from(("utf-16", "utf-32", "latin-1"))
        ),
        st.builds(
            lambda junk: Mutation("non_utf8_string", (junk,)),
            st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80")),
        ),
        st.builds(lambda raw: Mutation("replace_body", (raw,)), st.binary(max_size=64)),
        st.sampled_from(
            [
                Mutation("replace_body", (b"",)),
                Mutation("replace_body", (b"null",)),
                Mutation("replace_body", (b"[]",)),
                Mutation("replace_body", (b"{}",)),
                Mutation("replace_body", (b"NaN",)),
                Mutation("replace_body", (b"1e400",)),
                Mutation("replace_body", (b'{"a": 1e400}',)),
                Mutation("replace_body", (b'"\\ud800"',)),
                Mutation("replace_body", (b"\xef\xbb\xbf{}",)),
                Mutation("duplicate_keys"),
            ]
        ),
        st.builds(lambda extra: Mutation("oversize", (extra,)), st.integers(1, 4096)),
    ]


def _with(mutation: Mutation, resign: bool) -> Mutation:
    return Mutation(mutation.kind, mutation.args, resign)


#: one strategy per kind of body mutation, each also choosing whether to sign again.
#: Callers pick a kind uniformly (`pick`): a flat `one_of` leans heavily on few branches.
BODY_MUTATIONS: list[st.SearchStrategy[Mutation]] = [
    st.builds(_with, strategy, st.booleans()) for strategy in _body_mutations()
]


def pick(strategies: list[st.SearchStrategy[Mutation]]) -> st.SearchStrategy[Mutation]:
    """A kind chosen uniformly, then that kind's parameters."""
    return st.sampled_from(strategies).flatmap(lambda strategy: strategy)


def mutate_body(body: bytes, mutation: Mutation) -> bytes:
    kind, args = mutation.kind, mutation.args
    if kind == "flip":
        data = bytearray(body)
        for index, xor in args[0]:
            if data:
                data[index % len(data)] ^= xor
        return bytes(data)
    if kind == "truncate":
        return body[: args[0] % max(len(body), 1)]
    if kind == "insert":
        at = args[0] % (len(body) + 1)
        junk: bytes = args[1]
        return body[:at] + junk + body[at:]
    if kind == "replace_body":
        raw: bytes = args[0]
        return raw
    payload = orjson.loads(body)
    if kind == "set_field":
        return dumps(_replace(payload, _path(payload, args[0]), args[1]))
    if kind == "set_sensitive":
        return dumps(_replace(payload, _path(payload, args[0], sensitive=True), args[1]))
    if kind == "drop_field":
        return dumps(_drop(payload, _path(payload, args[0], root=False)))
    if kind == "nest":
        depth, objects, wrap = args
        inner = body if wrap else b"1"
        return _nest(depth, inner, objects)
    if kind == "nest_field":
        path, depth = _path(payload, args[0]), args[1]
        nested = orjson.loads(_nest(min(depth, 250), b"1", True)) if depth <= 250 else None
        if nested is None:
            text = dumps(_replace(payload, path, "__NEST__"))
            return text.replace(b'"__NEST__"', _nest(depth, b"1", False), 1)
        return dumps(_replace(payload, path, nested))
    if kind == "encode":
        return body.decode().encode(args[0])
    if kind == "non_utf8_string":
        text = dumps(_replace(payload, _first_string_path(payload), "__JUNK__"))
        invalid: bytes = args[0]
        return text.replace(b"__JUNK__", invalid, 1)
    if kind == "duplicate_keys":
        return body[:-1] + b"," + body[1:] if body.startswith(b"{") else body
    if kind == "oversize":
        return body + b" " * (MAX_BODY_BYTES + int(args[0]) - len(body))
    raise AssertionError(f"unknown mutation {kind}")


def _first_string_path(payload: Any) -> tuple[Any, ...]:
    for path in _paths(payload):
        value: Any = payload
        for step in path:
            value = value[step]
        if isinstance(value, str):
            return path
    return ()


# --- header mutations ------------------------------------------------------------------

_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
CONTENT_TYPES = (
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "application/xml",
    "",
    "*/*",
)


#: header names a mutation picks from: every header any vendor authenticates with (its
#: kit's `auth_headers`), the content type, and one nobody sends; sorted, so that a
#: derandomized run draws the same names whatever the hash seed
HEADER_NAMES = (
    *sorted({"content-type"}.union(*(vendor.kit.auth_headers for vendor in VENDORS.values()))),
    "x-unrelated",
)


def _header_mutations() -> list[st.SearchStrategy[Mutation]]:
    """Mutations of a delivery's headers (the body stays as signed)."""
    names = st.sampled_from(HEADER_NAMES)
    return [
        st.builds(lambda name: Mutation("drop_header", (name,)), names),
        st.builds(
            lambda name, value: Mutation("set_header", (name, value)),
            names,
            _HEADER_TEXT,
        ),
        st.builds(
            lambda name, value, first: Mutation("dup_header", (name, value, first)),
            names,
            _HEADER_TEXT,
            st.booleans(),
        ),
        st.builds(
            lambda name, edit: Mutation("edit_header", (name, edit)),
            names,
            st.sampled_from(("upper", "lower", "pad", "prefix_x", "suffix_x", "chop", "double")),
        ),
        st.builds(lambda ct: Mutation("content_type", (ct,)), st.sampled_from(CONTENT_TYPES)),
        st.just(Mutation("strip_auth")),
        st.just(Mutation("chunked")),
    ]


HEADER_MUTATIONS = _header_mutations()


def mutate_headers(headers: Headers, mutation: Mutation) -> Headers:
    kind, args = mutation.kind, mutation.args
    if kind == "drop_header":
        return [(k, v) for k, v in headers if k != args[0]]
    if kind == "set_header":
        return [(k, args[1] if k == args[0] else v) for k, v in headers]
    if kind == "dup_header":
        name, value, first = args
        extra = (name, value)
        return [extra, *headers] if first else [*headers, extra]
    if kind == "edit_header":
        name, edit = args
        edits: dict[str, Callable[[str], str]] = {
            "upper": str.upper,
            "lower": str.lower,
            "pad": lambda v: f"  {v}  ",
            "prefix_x": lambda v: "x" + v,
            "suffix_x": lambda v: v + "x",
            "chop": lambda v: v[:-1],
            "double": lambda v: f"{v}, {v}",
        }
        return [(k, edits[edit](v) if k == name else v) for k, v in headers]
    if kind == "content_type":
        kept = [(k, v) for k, v in headers if k != "content-type"]
        return [*kept, ("content-type", args[0])] if args[0] else kept
    if kind == "strip_auth":
        return [(k, v) for k, v in headers if k == "content-type"]
    if kind == "chunked":
        return headers
    raise AssertionError(f"unknown header mutation {kind}")
