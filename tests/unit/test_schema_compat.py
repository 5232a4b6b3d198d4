"""Schema evolution: the committed schemas stay BACKWARD compatible with the released ones.

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


def set_order_field_type(name: str, avro_type: Any) -> Callable[[Schema], None]:
    def edit(schema: Schema) -> None:
        field(order_fields(schema), name)["type"] = avro_type

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
        set_order_field_type("cum_qty", "string"),
        "ExecutionEvent.execution.order.cum_qty: type changed from long to string",
    ),
    "union narrowed to one branch": (
        set_order_field_type("good_till_time", NANOS),
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
