"""A fast Avro binary writer, generated once per schema from the ``.avsc`` (the encoding hot path).

``fastavro.schemaless_writer`` is general: per call it sets up a writer and, for every union, checks
which branch the value matches, validating a whole nested record to pick the ``Order`` branch. The
connector's schemas are known at start-up, so :func:`compile_writer` turns one schema into the Python
source of straight-line functions (one per record type: one statement per field), compiles it once,
and returns ``record -> bytes``. The output is the Avro binary encoding, byte for byte what fastavro
writes (a hypothesis test holds them equal), without the single-object or registry framing.

Supported: every primitive type, records, enums, arrays, maps, fixed, unions of ``null`` and one other
type (the only unions the connector's schemas use), and the integer-based logical types. Anything else
raises :class:`UnsupportedSchema` at compile time, and the caller keeps fastavro for that schema.

Errors, like fastavro's: a value of the wrong type raises ``TypeError``; a ``long`` outside 64 bits
raises ``OverflowError``; an ``int`` outside 32 bits too (fastavro writes it; Avro readers would not
read it back); an unknown enum symbol, a fixed of the wrong size or a missing field without default
raise ``ValueError``.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

import fastavro

LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1
INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1
# Zig-zag varints of the small integers, looked up instead of computed (defaults, enums, quantities,
# string lengths): 2**14 keeps every value that fits in two varint bytes, about 2 MB.
SMALL_LIMIT: Final = 2**14
INTEGER_LOGICAL_TYPES: Final = frozenset(
    {
        "date",
        "time-millis",
        "time-micros",
        "timestamp-millis",
        "timestamp-micros",
        "timestamp-nanos",
        "local-timestamp-millis",
        "local-timestamp-micros",
        "local-timestamp-nanos",
    }
)

RecordWriter = Callable[[Mapping[str, Any]], bytes]


class UnsupportedSchema(ValueError):
    """The schema uses a construct this writer does not generate code for (use fastavro)."""


def _varint(unsigned: int) -> bytes:
    out = bytearray()
    while unsigned > 0x7F:
        out.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    out.append(unsigned)
    return bytes(out)


def _zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


SMALL_VARINTS: Final[dict[int, bytes]] = {
    value: _varint(_zigzag(value)) for value in range(-SMALL_LIMIT, SMALL_LIMIT)
}
# Large values (timestamps: nine varint bytes) are written as two 14-bit chunks from this table, each
# byte with its continuation bit, then the varint of the bits above 28, which nearby timestamps share
# (it changes every 2**27 ns, about 0.13 s), from a small cache.
_CONTINUED_14_BITS: Final = tuple(
    bytes(((chunk & 0x7F) | 0x80, (chunk >> 7) | 0x80)) for chunk in range(2**14)
)
_HIGH_BITS_CACHE_SIZE: Final = 4096
_high_bits: dict[int, bytes] = {}


def encode_long(value: int) -> bytes:
    """Return the Avro encoding (zig-zag varint) of a 64-bit integer.

    Raises:
        TypeError: the value is not an integer.
        OverflowError: the value does not fit in 64 signed bits.
    """
    if not LONG_MIN <= value <= LONG_MAX:  # a non-number fails the comparison with a TypeError
        msg = f"{value} does not fit in an Avro long"
        raise OverflowError(msg)
    unsigned = (value << 1) ^ (value >> 63)  # a float fails the shift with a TypeError
    if unsigned < 2**28:
        return _varint(unsigned)
    high = unsigned >> 28
    tail = _high_bits.get(high)
    if tail is None:
        if len(_high_bits) >= _HIGH_BITS_CACHE_SIZE:
            _high_bits.clear()
        tail = _high_bits[high] = _varint(high)
    return _CONTINUED_14_BITS[unsigned & 0x3FFF] + _CONTINUED_14_BITS[(unsigned >> 14) & 0x3FFF] + tail


def encode_int(value: int) -> bytes:
    """Return the Avro encoding of a 32-bit integer.

    Raises:
        TypeError: the value is not an integer.
        OverflowError: the value does not fit in 32 signed bits.
    """
    if not INT_MIN <= value <= INT_MAX:
        msg = f"{value} does not fit in an Avro int"
        raise OverflowError(msg)
    return encode_long(value)


def _bad_enum(name: str, value: object) -> bytes:
    msg = f"{value!r} is not a symbol of enum {name}"
    raise ValueError(msg)


def _bad_fixed(name: str, size: int, value: bytes) -> bytes:
    msg = f"fixed {name} takes {size} bytes, got {len(value)}"
    raise ValueError(msg)


def _bad_boolean(value: object) -> bytes:
    msg = f"a boolean is required, got {type(value).__name__}"
    raise TypeError(msg)


_FLOAT: Final = struct.Struct("<f").pack
_DOUBLE: Final = struct.Struct("<d").pack
_BOOLEANS: Final = {True: b"\x01", False: b"\x00"}


class _Generator:
    """Emits one function per record (and array or map) type, each one ``b"".join`` of expressions."""

    def __init__(self) -> None:
        self.functions: list[str] = []
        self.constants: dict[str, Any] = {
            "_small": SMALL_VARINTS,
            "_long": encode_long,
            "_int": encode_int,
            "_bad_enum": _bad_enum,
            "_bad_fixed": _bad_fixed,
            "_bad_boolean": _bad_boolean,
            "_float": _FLOAT,
            "_double": _DOUBLE,
            "_booleans": _BOOLEANS,
        }
        self.named: dict[str, Any] = {}
        self.record_functions: dict[str, str] = {}
        self._counter = 0

    def fresh(self, stem: str) -> str:
        """A new unique name for a variable, constant or function of the generated code."""
        self._counter += 1
        return f"_{stem}{self._counter}"

    def constant(self, value: Any, stem: str) -> str:
        """Make a value available to the generated code under a new name."""
        name = self.fresh(stem)
        self.constants[name] = value
        return name

    def record_function(self, schema: Mapping[str, Any]) -> str:
        """Return the name of the function writing this record type, generating it on first use."""
        full_name: str = schema["name"]
        if full_name in self.record_functions:
            return self.record_functions[full_name]
        function = self.fresh("write_" + "".join(c if c.isalnum() else "_" for c in full_name))
        self.record_functions[full_name] = function
        self.named[full_name] = schema
        parts = [self.write(field["type"], f"record[{field['name']!r}]") for field in schema["fields"]]
        body = "".join(f"        {part},\n" for part in parts)
        self.functions.append(f"def {function}(record):\n    return b''.join((\n{body}    ))")
        return function

    def write(self, avro_type: Any, value: str) -> str:  # noqa: PLR0911 - one branch per Avro type
        """Return an expression: the encoding of the expression ``value`` of ``avro_type``."""
        if isinstance(avro_type, str) and avro_type in self.named:
            avro_type = self.named[avro_type]
        if isinstance(avro_type, list):
            return self._union(avro_type, value)
        kind = avro_type["type"] if isinstance(avro_type, dict) else avro_type
        logical = avro_type.get("logicalType") if isinstance(avro_type, dict) else None
        if logical is not None and logical not in INTEGER_LOGICAL_TYPES:
            msg = f"logical type {logical} is not supported"
            raise UnsupportedSchema(msg)
        if kind in _SIMPLE:
            return _SIMPLE[kind].format(value=value, bound=self.fresh("v"))
        if kind == "fixed":
            bound, size, name = self.fresh("v"), int(avro_type["size"]), avro_type["name"]
            return (
                f"({bound} if len({bound} := {value}) == {size} else _bad_fixed({name!r}, {size}, {bound}))"
            )
        if kind == "enum":
            self.named[avro_type["name"]] = avro_type
            indexes = {symbol: SMALL_VARINTS[index] for index, symbol in enumerate(avro_type["symbols"])}
            table, bound = self.constant(indexes, "enum"), self.fresh("v")
            return f"({table}.get({bound} := {value}) or _bad_enum({avro_type['name']!r}, {bound}))"
        if kind == "record":
            return f"{self.record_function(avro_type)}({value})"
        if kind == "array":
            return f"{self._block_function(avro_type['items'], None)}({value})"
        if kind == "map":
            return f"{self._block_function('string', avro_type['values'])}({value})"
        msg = f"Avro type {kind!r} is not supported"
        raise UnsupportedSchema(msg)

    def _union(self, branches: list[Any], value: str) -> str:
        others = [branch for branch in branches if branch != "null"]
        if len(others) != 1 or len(branches) != 2:
            msg = f"union {json.dumps(branches)} is not null plus one type"
            raise UnsupportedSchema(msg)
        null_index, other_index = (b"\x00", b"\x02") if branches[0] == "null" else (b"\x02", b"\x00")
        bound = self.fresh("v")
        other = self.write(others[0], bound)
        return f"({null_index!r} if ({bound} := {value}) is None else {other_index!r} + {other})"

    def _block_function(self, first: Any, second: Any | None) -> str:
        """A function writing an array (``first``: the items) or a map (string keys, ``second`` values)."""
        function = self.fresh("write_block")
        if second is None:
            entries = f"*[{self.write(first, 'item')} for item in items]"
        else:
            key, value = self.write(first, "key"), self.write(second, "value")
            entries = f"*[part for key, value in items.items() for part in ({key}, {value})]"
        self.functions.append(
            f"def {function}(items):\n"
            f"    if not items:\n"
            f"        return b'\\x00'\n"
            f"    return b''.join((_small.get(len(items)) or _long(len(items)), {entries}, b'\\x00'))"
        )
        return function


# Expressions for the types written without a helper ({value}: the value, {bound}: a fresh name).
_SIMPLE: Final = {
    "null": "(b'' if {value} is None else _bad_null())",
    "boolean": "(_booleans.get({bound} := {value}) or _bad_boolean({bound}))",
    "int": "(_small.get({bound} := {value}) or _int({bound}))",
    "long": "(_small.get({bound} := {value}) or _long({bound}))",
    "float": "_float({value})",
    "double": "_double({value})",
    "string": "(_small.get(len({bound} := {value}.encode())) or _long(len({bound}))) + {bound}",
    "bytes": "(_small.get(len({bound} := {value})) or _long(len({bound}))) + {bound}",
}


def compile_writer(schema: Mapping[str, Any]) -> RecordWriter:
    """Generate and compile the writer of one record schema; return ``record -> Avro binary body``.

    A record that lacks a field (so that its default applies) is written by fastavro instead: the
    generated code serves the connector's records, which always carry every field.

    Raises:
        UnsupportedSchema: the schema is not a record or uses something not generated (see module doc).
    """
    parsed = fastavro.parse_schema(dict(schema))
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        msg = "only record schemas are compiled"
        raise UnsupportedSchema(msg)
    generator = _Generator()
    top = generator.record_function(parsed)
    source = "\n\n".join(generator.functions)
    namespace: dict[str, Any] = dict(generator.constants)
    namespace["_bad_null"] = _bad_null
    exec(compile(source, f"<avro writer for {parsed['name']}>", "exec"), namespace)  # noqa: S102 - source generated above from the schema
    write_body: Callable[[Mapping[str, Any]], bytes] = namespace[top]

    def write(record: Mapping[str, Any]) -> bytes:
        try:
            return write_body(record)
        except KeyError:  # a field left to its default
            return fastavro_body(parsed, record)
        except AttributeError as exc:  # e.g. .encode() of a non-string
            msg = f"a value of the wrong type: {exc}"
            raise TypeError(msg) from None

    write.__doc__ = source  # the generated code, for whoever debugs it
    return write


def _bad_null() -> bytes:
    msg = "null expected"
    raise TypeError(msg)


def fastavro_body(parsed: Any, record: Mapping[str, Any]) -> bytes:
    """The Avro binary body of a record as fastavro writes it (``parsed``: a parsed schema)."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record)
    return buffer.getvalue()
