"""Schema evolution: the committed schemas stay BACKWARD compatible with the released ones.

The ``Source`` enum is FORWARD compatible too: a consumer still on a released schema reads a source
added since as the released enum's default, ``UNKNOWN``.

The checker itself is tested with deliberate changes, compatible and not, each failing with a
message that names the field; and against fastavro's own schema resolution: whenever the checker
says "compatible", fastavro must read data written with the old schema using the new one.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import fastavro.utils
import pytest

from connector.core.mapping import Source
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.schema_compat import backward_incompatibilities, describe, is_backward_compatible

RELEASED = Path(__file__).resolve().parents[2] / "connector" / "schemas" / "released"
NEW_SINCE_LAST_RELEASE = {RecordType.GAP_DETECTED}
Schema = dict[str, Any]


def released_versions() -> list[Path]:
    return sorted(path for path in RELEASED.iterdir() if path.is_dir())


def test_there_is_a_released_baseline() -> None:
    assert [path.name for path in released_versions()] != []
    assert (RELEASED / "0.1.0" / "ExecutionEvent.avsc").is_file()


@pytest.mark.parametrize("version", released_versions(), ids=lambda path: path.name)
def test_every_released_schema_still_exists(version: Path) -> None:
    released = {path.stem for path in version.glob("*.avsc")}
    assert released <= {record_type.value for record_type in RecordType}, "a released schema was removed"


@pytest.mark.parametrize("record_type", list(RecordType))
def test_committed_schema_reads_every_released_version(record_type: RecordType) -> None:
    versions = [v / f"{record_type.value}.avsc" for v in released_versions()]
    found = [path for path in versions if path.exists()]
    if record_type in NEW_SINCE_LAST_RELEASE:
        assert not found, f"{record_type.value} was released: remove it from NEW_SINCE_LAST_RELEASE"
    else:
        assert found, f"{record_type.value} has no released version; add it to NEW_SINCE_LAST_RELEASE"
    for path in found:
        problems = backward_incompatibilities(schema_dict(record_type), json.loads(path.read_text()))
        assert problems == [], f"{record_type.value} vs {path.parent.name}:\n{describe(problems)}"


SOURCE_RECORD_TYPES = (RecordType.EXECUTION, RecordType.ORDER_SNAPSHOT, RecordType.CANCEL_REJECT)


def source_enum(schema: Schema) -> Schema:
    enum_schema: Schema = field(schema["fields"], "source")["type"]
    return enum_schema


@pytest.mark.parametrize("record_type", SOURCE_RECORD_TYPES)
def test_the_source_enum_is_every_source_then_the_unknown_default(record_type: RecordType) -> None:
    enum_schema = source_enum(schema_dict(record_type))
    assert enum_schema["symbols"] == [*(source.value for source in Source), "UNKNOWN"]
    assert enum_schema["default"] == "UNKNOWN"


@pytest.mark.parametrize("record_type", SOURCE_RECORD_TYPES)
def test_a_consumer_on_a_released_schema_reads_a_newer_source_as_unknown(record_type: RecordType) -> None:
    # FORWARD for the enum: the released Source is the reader, the committed one the writer.
    new = source_enum(schema_dict(record_type))
    for version in released_versions():
        old = source_enum(json.loads((version / f"{record_type.value}.avsc").read_text()))
        assert backward_incompatibilities(old, new) == [], version.name
        writer, reader = fastavro.parse_schema(copy.deepcopy(new)), fastavro.parse_schema(copy.deepcopy(old))
        for source in Source:
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, writer, source.value)
            buffer.seek(0)
            expected = source.value if source.value in old["symbols"] else "UNKNOWN"
            assert fastavro.schemaless_reader(buffer, writer, reader) == expected, version.name


# --------------------------------------------------------------------------- deliberate changes


def order_fields(schema: Schema) -> list[dict[str, Any]]:
    """The fields of the Order record nested in ExecutionEvent.execution.order (a nullable union)."""
    execution = next(f for f in schema["fields"] if f["name"] == "execution")["type"]
    order_union = next(f for f in execution["fields"] if f["name"] == "order")["type"]
    fields: list[dict[str, Any]] = order_union[1]["fields"]
    return fields


def field(fields: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(f for f in fields if f["name"] == name)


def changed(edit: Callable[[Schema], None]) -> Schema:
    schema = schema_dict(RecordType.EXECUTION)
    edit(schema)
    return schema


def add_order_field(default: bool) -> Callable[[Schema], None]:
    def edit(schema: Schema) -> None:
        new: dict[str, Any] = {"name": "venue_flag", "type": "long"}
        if default:
            new["default"] = 0
        order_fields(schema).append(new)

    return edit


KEEP, DROP = object(), object()


def set_order_field_type(name: str, avro_type: Any, default: Any = KEEP) -> Callable[[Schema], None]:
    """Change a field's type; ``default`` replaces its default (DROP removes it) so the schema stays valid."""

    def edit(schema: Schema) -> None:
        changed_field = field(order_fields(schema), name)
        changed_field["type"] = avro_type
        if default is DROP:
            changed_field.pop("default", None)
        elif default is not KEEP:
            changed_field["default"] = default

    return edit


def drop_side_symbol(keep_default: bool) -> Callable[[Schema], None]:
    def edit(schema: Schema) -> None:
        side = field(order_fields(schema), "side")["type"]
        side["symbols"].remove("SIDE_SELL")
        if not keep_default:
            del side["default"]

    return edit


def rename_order(alias: bool) -> Callable[[Schema], None]:
    def edit(schema: Schema) -> None:
        execution = next(f for f in schema["fields"] if f["name"] == "execution")["type"]
        order = next(f for f in execution["fields"] if f["name"] == "order")["type"][1]
        order["name"] = "VenueOrder"
        if alias:
            order["aliases"] = ["pmx.connector.v1.Order"]

    return edit


def remove_top_field(name: str) -> Callable[[Schema], None]:
    def edit(schema: Schema) -> None:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != name]

    return edit


def rename_top_field(old: str, new: str, alias: bool) -> Callable[[Schema], None]:
    def edit(schema: Schema) -> None:
        renamed = field(schema["fields"], old)
        renamed["name"] = new
        if alias:
            renamed["aliases"] = [old]

    return edit


NANOS = {"type": "long", "logicalType": "timestamp-nanos"}
MICROS = {"type": "long", "logicalType": "timestamp-micros"}

COMPATIBLE_CHANGES: dict[str, Callable[[Schema], None]] = {
    "field added with a default": add_order_field(default=True),
    "field removed": remove_top_field("connector"),
    "int promoted to long": set_order_field_type("type_number", "long"),
    "int promoted to double": set_order_field_type("side_number", "double"),
    "long promoted to double": set_order_field_type("price", "double"),
    "string read as bytes": set_order_field_type("symbol", "bytes"),
    "plain type widened to a union": set_order_field_type("price", ["long", "null"]),  # default 0: long first
    "union branch added": set_order_field_type("insert_time", ["null", NANOS, "string"]),
    "enum symbol added": lambda s: field(order_fields(s), "side")["type"]["symbols"].insert(3, "SIDE_SHORT"),
    "enum symbol removed, default kept": drop_side_symbol(keep_default=True),
    "record renamed with an alias": rename_order(alias=True),
    "field renamed with an alias": rename_top_field("session_id", "venue_session_id", alias=True),
    "nothing changed": lambda _s: None,
}

INCOMPATIBLE_CHANGES: dict[str, tuple[Callable[[Schema], None], str]] = {
    "field added without a default": (
        add_order_field(default=False),
        "ExecutionEvent.execution.order.venue_flag: field added without a default",
    ),
    "long narrowed to int": (
        set_order_field_type("price", "int"),
        "ExecutionEvent.execution.order.price: type changed from long to int",
    ),
    "long to string": (
        set_order_field_type("cum_qty", "string", default="0"),
        "ExecutionEvent.execution.order.cum_qty: type changed from long to string",
    ),
    "union narrowed to one branch": (
        set_order_field_type("good_till_time", NANOS, default=DROP),
        "ExecutionEvent.execution.order.good_till_time: the old union's branch null cannot be read as long",
    ),
    "enum symbol removed without a default": (
        drop_side_symbol(keep_default=False),
        "ExecutionEvent.execution.order.side: enum symbols SIDE_SELL removed and the new enum has no default",
    ),
    "record renamed without an alias": (
        rename_order(alias=False),
        "ExecutionEvent.execution.order: no branch of the new union can read the old record "
        "pmx.connector.v1.Order",
    ),
    "field renamed without an alias (no default)": (
        rename_top_field("received_time", "receipt_time", alias=False),
        "ExecutionEvent.receipt_time: field added without a default",
    ),
    "logical type changed": (
        set_order_field_type("create_time", ["null", MICROS]),
        "ExecutionEvent.execution.order.create_time: logicalType changed from timestamp-nanos to "
        "timestamp-micros",
    ),
}


@pytest.mark.parametrize("name", list(COMPATIBLE_CHANGES))
def test_compatible_changes_pass(name: str) -> None:
    old = schema_dict(RecordType.EXECUTION)
    new = changed(COMPATIBLE_CHANGES[name])
    assert backward_incompatibilities(new, old) == []
    assert_fastavro_reads_old_data_with(new, old)


@pytest.mark.parametrize("name", list(INCOMPATIBLE_CHANGES))
def test_incompatible_changes_fail_naming_the_field(name: str) -> None:
    edit, expected = INCOMPATIBLE_CHANGES[name]
    problems = backward_incompatibilities(changed(edit), schema_dict(RecordType.EXECUTION))
    assert problems, name
    assert describe(problems).startswith(expected), describe(problems)


def test_forward_direction_is_a_different_question() -> None:
    # A field added with a default is fine for new readers; old readers ignore it. A field *removed*
    # is fine for new readers too, but the reverse pair (old reads new) must then have a default.
    old = schema_dict(RecordType.EXECUTION)
    new = changed(add_order_field(default=False))
    assert not is_backward_compatible(new, old)
    assert is_backward_compatible(old, new)


@pytest.mark.parametrize(
    ("writer", "reader", "compatible"),
    [
        ("int", "long", True),
        ("long", "int", False),
        ("float", "double", True),
        ("double", "float", False),
        ("bytes", "string", True),
        ("string", "bytes", True),
        ("null", ["null", "string"], True),
        (["null", "string"], "string", False),
        (["int", "string"], ["string", "long"], True),
        ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 8}, False),
        ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 4}, True),
        ({"type": "array", "items": "int"}, {"type": "array", "items": "long"}, True),
        ({"type": "map", "values": "long"}, {"type": "map", "values": "int"}, False),
        (
            {"type": "enum", "name": "E", "symbols": ["A", "B"]},
            {"type": "enum", "name": "E", "symbols": ["A"], "default": "A"},
            True,
        ),
    ],
)
def test_resolution_rules_on_small_schemas(writer: Any, reader: Any, compatible: bool) -> None:
    assert is_backward_compatible(reader, writer) is compatible
    if compatible and writer != "bytes":  # random bytes are rarely UTF-8: the spec allows it anyway
        assert_fastavro_reads_old_data_with(reader, writer)


def test_recursive_records_terminate() -> None:
    node = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"], "default": None}, {"name": "v", "type": "int"}],
    }
    widened = copy.deepcopy(node)
    widened["fields"][1]["type"] = "long"
    assert is_backward_compatible(widened, node)
    assert not is_backward_compatible(node, widened)


def assert_fastavro_reads_old_data_with(new: Any, old: Any) -> None:
    """An independent resolver (fastavro) agrees: data written with ``old`` reads with ``new``."""
    writer = fastavro.parse_schema(copy.deepcopy(old))
    reader = fastavro.parse_schema(copy.deepcopy(new))
    for datum in fastavro.utils.generate_many(writer, 20):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, writer, datum)
        buffer.seek(0)
        fastavro.schemaless_reader(buffer, writer, reader)


# --------------------------------------------------------------------------- the Avro project's cases
# The reader/writer pairs of Apache Avro's Java test suite (TestSchemaCompatibility and its
# TestSchemaCompatibility{TypeMismatch,NameMismatch,FixedSizeMismatch,MissingEnumSymbols,
# MissingUnionBranch,ReaderFieldMissingDefaultValue} classes), written here as JSON schemas with
# the names that suite gives them, and the kind of incompatibility it expects.


def record(name: str, *fields: dict[str, Any], namespace: str | None = None) -> Schema:
    schema: Schema = {"type": "record", "name": name, "fields": list(fields)}
    if namespace is not None:
        schema["namespace"] = namespace
    return schema


def fld(name: str, kind: Any, **default: Any) -> dict[str, Any]:
    return {"name": name, "type": copy.deepcopy(kind), **default}


def enum(name: str, symbols: str, default: str | None = None, namespace: str | None = None) -> Schema:
    schema: Schema = {"type": "enum", "name": name, "symbols": list(symbols)}
    if default is not None:
        schema["default"] = default
    if namespace is not None:
        schema["namespace"] = namespace
    return schema


def fixed(name: str, size: int, namespace: str | None = None) -> Schema:
    schema: Schema = {"type": "fixed", "name": name, "size": size}
    if namespace is not None:
        schema["namespace"] = namespace
    return schema


NULL, BOOLEAN, INT, LONG, FLOAT, DOUBLE, STRING, BYTES = (
    "null", "boolean", "int", "long", "float", "double", "string", "bytes",
)  # fmt: skip
INT_ARRAY, LONG_ARRAY = {"type": "array", "items": INT}, {"type": "array", "items": LONG}
INT_MAP, LONG_MAP = {"type": "map", "values": INT}, {"type": "map", "values": LONG}
ENUM1_AB, ENUM1_ABC, ENUM1_BC, ENUM2_AB = (
    enum("Enum1", "AB"),
    enum("Enum1", "ABC"),
    enum("Enum1", "BC"),
    enum("Enum2", "AB"),
)
FIXED_4, FIXED_8, FIXED_4_ANOTHER_NAME = fixed("Fixed", 4), fixed("Fixed", 8), fixed("AnotherName", 4)
EMPTY_UNION: list[Any] = []
INT_UNION, LONG_UNION, FLOAT_UNION, DOUBLE_UNION = [INT], [LONG], [FLOAT], [DOUBLE]
STRING_UNION, BYTES_UNION = [STRING], [BYTES]
INT_STRING_UNION, STRING_INT_UNION = [INT, STRING], [STRING, INT]
INT_FLOAT_UNION, INT_LONG_UNION = [INT, FLOAT], [INT, LONG]
INT_LONG_FLOAT_DOUBLE_UNION = [INT, LONG, FLOAT, DOUBLE]
EMPTY_RECORD1, EMPTY_RECORD2 = record("Record1"), record("Record2")
A_INT_RECORD1 = record("Record1", fld("a", INT))
A_LONG_RECORD1 = record("Record1", fld("a", LONG))
A_INT_B_INT_RECORD1 = record("Record1", fld("a", INT), fld("b", INT))
A_DINT_RECORD1 = record("Record1", fld("a", INT, default=0))
A_INT_B_DINT_RECORD1 = record("Record1", fld("a", INT), fld("b", INT, default=0))
A_DINT_B_DINT_RECORD1 = record("Record1", fld("a", INT, default=0), fld("b", INT, default=0))
A_DINT_B_DFIXED_4_BYTES_RECORD1 = record("Record1", fld("a", INT, default=0), fld("b", FIXED_4))
A_DINT_B_DFIXED_8_BYTES_RECORD1 = record("Record1", fld("a", INT, default=0), fld("b", FIXED_8))
A_DINT_B_DINT_STRING_UNION_RECORD1 = record(
    "Record1", fld("a", INT, default=0), fld("b", INT_STRING_UNION, default=0)
)
A_DINT_B_DINT_UNION_RECORD1 = record("Record1", fld("a", INT, default=0), fld("b", INT_UNION, default=0))
A_DINT_B_DENUM_1_RECORD1 = record("Record1", fld("a", INT, default=0), fld("b", ENUM1_AB))
A_DINT_B_DENUM_2_RECORD1 = record("Record1", fld("a", INT, default=0), fld("b", ENUM2_AB))
INT_LIST_RECORD = record("List", fld("head", INT), fld("tail", "List"))
LONG_LIST_RECORD = record("List", fld("head", LONG), fld("tail", "List"))
ENUM_ABC_ENUM_DEFAULT_A_RECORD = record("Record", fld("Field", enum("Schema", "ABC", default="A")))
ENUM_AB_ENUM_DEFAULT_A_RECORD = record("Record", fld("Field", enum("Schema", "AB", default="A")))
ENUM_ABC_FIELD_DEFAULT_B_ENUM_DEFAULT_A_RECORD = record(
    "Record", fld("Field", enum("Schema", "ABC", default="A"), default="B")
)
ENUM_AB_FIELD_DEFAULT_A_ENUM_DEFAULT_B_RECORD = record(
    "Record", fld("Field", enum("Schema", "AB", default="B"), default="A")
)
# Two records whose inner record (in an array, in a union) lives in different namespaces.
NS_RECORD1 = record(
    "Record1",
    fld("f1", [NULL, {"type": "array", "items": record("InnerRecord1", fld("a", INT), namespace="ns1")}]),
)
NS_RECORD2 = record(
    "Record1",
    fld("f1", [NULL, {"type": "array", "items": record("InnerRecord1", fld("a", INT), namespace="ns2")}]),
)
ENUM1_AB_NAMESPACE_1, ENUM1_AB_NAMESPACE_2 = (
    enum("Enum1", "AB", namespace="namespace1"),
    enum("Enum1", "AB", namespace="namespace2"),
)
FIXED_4_NAMESPACE_V1 = fixed("Fixed", 4, namespace="org.apache.avro.tests.v_1_0")
FIXED_4_NAMESPACE_V2 = fixed("Fixed", 4, namespace="org.apache.avro.tests.v_2_0")
WITH_NS, WITHOUT_NS = record("ns.Record", fld("f1", INT)), record("Record", fld("f1", INT))
RECORD1_WITH_INT, RECORD2_WITH_INT = (
    record("Record1", fld("field1", INT)),
    record("Record2", fld("field1", INT)),
)
RECORD1_WITH_ENUM_AB = record("Record1", fld("field1", ENUM1_AB))
RECORD1_WITH_ENUM_ABC = record("Record1", fld("field1", ENUM1_ABC))

# (name, reader, writer)
AVRO_COMPATIBLE: list[tuple[str, Any, Any]] = [
    (f"{reader_name} reads {writer_name}", globals()[reader_name], globals()[writer_name])
    for reader_name, writer_name in (
        ("BOOLEAN", "BOOLEAN"), ("INT", "INT"), ("LONG", "INT"), ("LONG", "LONG"),
        ("FLOAT", "INT"), ("FLOAT", "LONG"), ("DOUBLE", "LONG"), ("DOUBLE", "INT"), ("DOUBLE", "FLOAT"),
        ("STRING", "STRING"), ("BYTES", "BYTES"),
        ("INT_ARRAY", "INT_ARRAY"), ("LONG_ARRAY", "INT_ARRAY"),
        ("INT_MAP", "INT_MAP"), ("LONG_MAP", "INT_MAP"),
        ("ENUM1_AB", "ENUM1_AB"), ("ENUM1_ABC", "ENUM1_AB"),
        ("STRING", "BYTES"), ("BYTES", "STRING"),
        ("EMPTY_UNION", "EMPTY_UNION"), ("FLOAT_UNION", "EMPTY_UNION"), ("FLOAT_UNION", "INT_UNION"),
        ("FLOAT_UNION", "LONG_UNION"), ("FLOAT_UNION", "INT_LONG_UNION"), ("INT_UNION", "INT_UNION"),
        ("INT_STRING_UNION", "STRING_INT_UNION"), ("INT_UNION", "EMPTY_UNION"), ("LONG_UNION", "EMPTY_UNION"),
        ("LONG_UNION", "INT_UNION"), ("DOUBLE_UNION", "INT_UNION"), ("DOUBLE_UNION", "LONG_UNION"),
        ("DOUBLE_UNION", "FLOAT_UNION"), ("STRING_UNION", "EMPTY_UNION"), ("STRING_UNION", "BYTES_UNION"),
        ("BYTES_UNION", "EMPTY_UNION"), ("BYTES_UNION", "STRING_UNION"), ("DOUBLE_UNION", "INT_FLOAT_UNION"),
        ("FLOAT", "INT_FLOAT_UNION"), ("LONG", "INT_LONG_UNION"), ("DOUBLE", "INT_FLOAT_UNION"),
        ("DOUBLE", "INT_LONG_FLOAT_DOUBLE_UNION"),
        ("FLOAT", "FLOAT_UNION"), ("INT_UNION", "INT"), ("INT", "INT_UNION"),
        ("FIXED_4", "FIXED_4"),
        ("EMPTY_RECORD1", "EMPTY_RECORD1"), ("EMPTY_RECORD1", "A_INT_RECORD1"),
        ("A_INT_RECORD1", "A_INT_RECORD1"), ("A_DINT_RECORD1", "A_INT_RECORD1"),
        ("A_DINT_RECORD1", "A_DINT_RECORD1"), ("A_INT_RECORD1", "A_DINT_RECORD1"),
        ("A_LONG_RECORD1", "A_INT_RECORD1"),
        ("A_INT_RECORD1", "A_INT_B_INT_RECORD1"), ("A_DINT_RECORD1", "A_INT_B_INT_RECORD1"),
        ("A_INT_B_DINT_RECORD1", "A_INT_RECORD1"), ("A_DINT_B_DINT_RECORD1", "EMPTY_RECORD1"),
        ("A_DINT_B_DINT_RECORD1", "A_INT_RECORD1"), ("A_INT_B_INT_RECORD1", "A_DINT_B_DINT_RECORD1"),
        ("INT_LIST_RECORD", "INT_LIST_RECORD"), ("LONG_LIST_RECORD", "LONG_LIST_RECORD"),
        ("LONG_LIST_RECORD", "INT_LIST_RECORD"),
        ("NULL", "NULL"),
        ("ENUM_AB_ENUM_DEFAULT_A_RECORD", "ENUM_ABC_ENUM_DEFAULT_A_RECORD"),
        ("ENUM_AB_FIELD_DEFAULT_A_ENUM_DEFAULT_B_RECORD", "ENUM_ABC_FIELD_DEFAULT_B_ENUM_DEFAULT_A_RECORD"),
        # namespaces do not take part in name matching (Avro 1.10+; the fixed pair was once a mismatch)
        ("NS_RECORD1", "NS_RECORD2"), ("ENUM1_AB_NAMESPACE_1", "ENUM1_AB_NAMESPACE_2"),
        ("FIXED_4_NAMESPACE_V1", "FIXED_4_NAMESPACE_V2"),
        ("WITH_NS", "WITHOUT_NS"), ("WITHOUT_NS", "WITH_NS"),
    )
]  # fmt: skip

TYPE_MISMATCH, NAME_MISMATCH, FIXED_SIZE, ENUM_SYMBOLS, UNION_BRANCH, NO_DEFAULT = (
    "type", "renamed", "fixed size changed", "enum symbols", "union", "without a default",
)  # fmt: skip
UNION_INT_RECORD1, UNION_INT_RECORD2 = [INT, RECORD1_WITH_INT], [INT, RECORD2_WITH_INT]
UNION_INT_ENUM1_AB, UNION_INT_FIXED_4_BYTES = [INT, ENUM1_AB], [INT, FIXED_4]
UNION_INT_BOOLEAN, UNION_INT_NULL = [INT, BOOLEAN], [INT, NULL]
UNION_INT_ARRAY_INT, UNION_INT_MAP_INT = [INT, INT_ARRAY], [INT, INT_MAP]
INT_STRING_LONG_UNION = [INT, STRING, LONG]

# (name, reader, writer, what our message says)
AVRO_INCOMPATIBLE: list[tuple[str, Any, Any, str]] = [
    (f"{reader_name} cannot read {writer_name}", globals()[reader_name], globals()[writer_name], kind)
    for reader_name, writer_name, kind in (
        ("NULL", "INT", TYPE_MISMATCH), ("NULL", "LONG", TYPE_MISMATCH), ("BOOLEAN", "INT", TYPE_MISMATCH),
        ("INT", "NULL", TYPE_MISMATCH), ("INT", "BOOLEAN", TYPE_MISMATCH), ("INT", "LONG", TYPE_MISMATCH),
        ("INT", "FLOAT", TYPE_MISMATCH), ("INT", "DOUBLE", TYPE_MISMATCH), ("LONG", "FLOAT", TYPE_MISMATCH),
        ("LONG", "DOUBLE", TYPE_MISMATCH),
        ("FLOAT", "DOUBLE", TYPE_MISMATCH), ("DOUBLE", "STRING", TYPE_MISMATCH),
        ("FIXED_4", "STRING", TYPE_MISMATCH),
        ("STRING", "BOOLEAN", TYPE_MISMATCH), ("STRING", "INT", TYPE_MISMATCH),
        ("BYTES", "NULL", TYPE_MISMATCH),
        ("BYTES", "INT", TYPE_MISMATCH), ("A_INT_RECORD1", "INT", TYPE_MISMATCH),
        ("INT_ARRAY", "LONG_ARRAY", TYPE_MISMATCH), ("INT_MAP", "INT_ARRAY", TYPE_MISMATCH),
        ("INT_ARRAY", "INT_MAP", TYPE_MISMATCH), ("INT_MAP", "LONG_MAP", TYPE_MISMATCH),
        ("INT", "ENUM2_AB", TYPE_MISMATCH), ("ENUM2_AB", "INT", TYPE_MISMATCH),
        ("FLOAT", "INT_LONG_FLOAT_DOUBLE_UNION", UNION_BRANCH), ("LONG", "INT_FLOAT_UNION", UNION_BRANCH),
        ("INT", "INT_FLOAT_UNION", UNION_BRANCH), ("INT_LIST_RECORD", "LONG_LIST_RECORD", TYPE_MISMATCH),
        ("ENUM1_AB", "ENUM2_AB", NAME_MISMATCH), ("EMPTY_RECORD2", "EMPTY_RECORD1", NAME_MISMATCH),
        ("FIXED_4", "FIXED_4_ANOTHER_NAME", NAME_MISMATCH),
        ("A_DINT_B_DENUM_1_RECORD1", "A_DINT_B_DENUM_2_RECORD1", NAME_MISMATCH),
        ("FIXED_4", "FIXED_8", FIXED_SIZE), ("FIXED_8", "FIXED_4", FIXED_SIZE),
        ("A_DINT_B_DFIXED_8_BYTES_RECORD1", "A_DINT_B_DFIXED_4_BYTES_RECORD1", FIXED_SIZE),
        ("A_DINT_B_DFIXED_4_BYTES_RECORD1", "A_DINT_B_DFIXED_8_BYTES_RECORD1", FIXED_SIZE),
        ("ENUM1_AB", "ENUM1_ABC", ENUM_SYMBOLS), ("ENUM1_BC", "ENUM1_ABC", ENUM_SYMBOLS),
        ("RECORD1_WITH_ENUM_AB", "RECORD1_WITH_ENUM_ABC", ENUM_SYMBOLS),
        ("INT_UNION", "INT_STRING_UNION", UNION_BRANCH), ("STRING_UNION", "INT_STRING_UNION", UNION_BRANCH),
        ("INT_UNION", "UNION_INT_RECORD1", UNION_BRANCH), ("INT_UNION", "UNION_INT_RECORD2", UNION_BRANCH),
        ("UNION_INT_RECORD1", "UNION_INT_RECORD2", UNION_BRANCH),
        ("INT_UNION", "UNION_INT_ENUM1_AB", UNION_BRANCH),
        ("INT_UNION", "UNION_INT_FIXED_4_BYTES", UNION_BRANCH),
        ("INT_UNION", "UNION_INT_BOOLEAN", UNION_BRANCH), ("INT_UNION", "LONG_UNION", UNION_BRANCH),
        ("INT_UNION", "FLOAT_UNION", UNION_BRANCH), ("INT_UNION", "DOUBLE_UNION", UNION_BRANCH),
        ("INT_UNION", "BYTES_UNION", UNION_BRANCH), ("INT_UNION", "UNION_INT_ARRAY_INT", UNION_BRANCH),
        ("INT_UNION", "UNION_INT_MAP_INT", UNION_BRANCH), ("INT_UNION", "UNION_INT_NULL", UNION_BRANCH),
        ("INT_UNION", "INT_LONG_FLOAT_DOUBLE_UNION", UNION_BRANCH),
        ("A_DINT_B_DINT_UNION_RECORD1", "A_DINT_B_DINT_STRING_UNION_RECORD1", UNION_BRANCH),
        ("INT_STRING_UNION", "INT_STRING_LONG_UNION", UNION_BRANCH),
        ("A_INT_RECORD1", "EMPTY_RECORD1", NO_DEFAULT), ("A_INT_B_DINT_RECORD1", "EMPTY_RECORD1", NO_DEFAULT),
    )
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "reader", "writer"), AVRO_COMPATIBLE, ids=[case[0] for case in AVRO_COMPATIBLE]
)
def test_the_avro_projects_compatible_pairs(name: str, reader: Any, writer: Any) -> None:
    assert backward_incompatibilities(reader, writer) == [], name


@pytest.mark.parametrize(
    ("name", "reader", "writer", "kind"), AVRO_INCOMPATIBLE, ids=[case[0] for case in AVRO_INCOMPATIBLE]
)
def test_the_avro_projects_incompatible_pairs(name: str, reader: Any, writer: Any, kind: str) -> None:
    problems = backward_incompatibilities(reader, writer)
    assert problems, name
    assert kind in describe(problems), describe(problems)


def test_a_reader_alias_names_the_writers_full_name() -> None:
    old = record("Old", fld("a", INT), namespace="ns1")
    assert not is_backward_compatible(record("New", fld("a", INT), namespace="ns2"), old)
    assert is_backward_compatible(
        {**record("New", fld("a", INT), namespace="ns2"), "aliases": ["ns1.Old"]}, old
    )
    assert is_backward_compatible({**record("New", fld("a", INT), namespace="ns1"), "aliases": ["Old"]}, old)


def test_a_namespace_move_of_our_own_records_is_compatible() -> None:
    old = schema_dict(RecordType.EXECUTION)
    new = copy.deepcopy(old)
    new["namespace"] = "com.example.moved"
    assert backward_incompatibilities(new, old) == []
