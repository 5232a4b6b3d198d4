"""Avro schema evolution: can a reader with the new schema read data written with the old one?

This is the Avro specification's schema-resolution rules ("Schema Resolution"), applied to a pair
of schemas instead of to data, with the new schema as the *reader* and the released one as the
*writer*: BACKWARD compatibility, the rule every change to ``schemas/*.avsc`` must keep
(DESIGN.md §5). It answers with a list of problems, each naming the path of the field at fault
(``ExecutionEvent.execution.order.price``), so a failing test or ``schemas --check`` says what to fix.

The rules, writer → reader:

- the same primitive type; or a promotion: ``int`` → ``long``/``float``/``double``,
  ``long`` → ``float``/``double``, ``float`` → ``double``, ``string`` ↔ ``bytes``;
- records of the same *unqualified* name (or a reader alias naming the writer's full name): every
  reader field either exists in the writer (by name or reader alias) and resolves, or has a
  default; writer fields the reader dropped are skipped;
- enums of the same unqualified name (or alias): every writer symbol is a reader symbol, or the
  reader has a default symbol;
- fixed of the same unqualified name (or alias) and size; arrays by items; maps by values;
- unions: every branch of a writer union must resolve against the reader; a non-union writer must
  resolve against some branch of a reader union; a reader non-union accepts a writer union only if
  every writer branch resolves against it.

Names are compared as the specification's resolution rules say ("both schemas are records with the
same (unqualified) name"), as Avro's Java reference implementation does: moving a named type to
another namespace is compatible. Aliases are full names (resolved against the reader's namespace),
matched against the writer's full name.

Stricter than the specification in one respect: a changed ``logicalType`` (``timestamp-micros`` →
``timestamp-nanos``) is reported, because the bytes still resolve but every value would be misread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

PRIMITIVES: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED_TYPES: Final = frozenset({"record", "error", "enum", "fixed"})
_BUILT_IN_TYPES: Final = PRIMITIVES | NAMED_TYPES | {"array", "map"}
# writer type -> reader types that can read it (the specification's promotions)
PROMOTIONS: Final[Mapping[str, frozenset[str]]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason a reader cannot read a writer's data: where, and why."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def backward_incompatibilities(new: Any, old: Any) -> list[Incompatibility]:
    """List why a reader with ``new`` cannot read data written with ``old`` (empty: compatible).

    Args:
        new: the new schema (parsed JSON), the reader.
        old: the released schema (parsed JSON), the writer.
    """
    return _Resolution(new, old).problems()


def is_backward_compatible(new: Any, old: Any) -> bool:
    """Whether a reader with ``new`` can read every datum written with ``old``."""
    return not backward_incompatibilities(new, old)


class _Names:
    """The named types (records, enums, fixed) a schema defines, by full name."""

    def __init__(self, schema: Any) -> None:
        self.by_name: dict[str, Mapping[str, Any]] = {}
        self._collect(schema, "")

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
            return
        if not isinstance(schema, Mapping):
            return
        kind = schema.get("type")
        if kind in NAMED_TYPES:
            full = full_name(schema, namespace)
            self.by_name[full] = schema
            namespace = full.rpartition(".")[0]
        if kind in {"record", "error"}:
            for field in schema.get("fields", []):
                self._collect(field["type"], namespace)
        elif kind == "array":
            self._collect(schema["items"], namespace)
        elif kind == "map":
            self._collect(schema["values"], namespace)
        elif isinstance(kind, (Mapping, list)):
            self._collect(kind, namespace)

    def resolve(self, schema: Any, namespace: str) -> tuple[Any, str]:
        """Replace a reference to a named type by its definition; return it and its namespace."""
        if isinstance(schema, str) and schema not in PRIMITIVES:
            for candidate in (f"{namespace}.{schema}" if namespace and "." not in schema else "", schema):
                if candidate and candidate in self.by_name:
                    return self.by_name[candidate], candidate.rpartition(".")[0]
            msg = f"unknown type name {schema!r}"
            raise ValueError(msg)
        if isinstance(schema, Mapping) and (
            isinstance(schema.get("type"), (Mapping, list)) or schema.get("type") not in _BUILT_IN_TYPES
        ):
            return self.resolve(schema["type"], namespace)  # {"type": X} wraps a schema or a name
        if isinstance(schema, Mapping) and schema.get("type") in NAMED_TYPES:
            return schema, full_name(schema, namespace).rpartition(".")[0]
        return schema, namespace


def full_name(schema: Mapping[str, Any], namespace: str) -> str:
    """The full name of a named type, given the enclosing namespace."""
    name = str(schema["name"])
    if "." in name:
        return name
    own = schema.get("namespace", namespace)
    return f"{own}.{name}" if own else name


def _type_of(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    kind = schema.get("type")
    return kind if isinstance(kind, str) else "union"


def _describe(schema: Any, namespace: str) -> str:
    kind = _type_of(schema)
    if kind in NAMED_TYPES and isinstance(schema, Mapping):
        return f"{kind} {full_name(schema, namespace)}"
    if kind == "union":
        return "union"
    logical = schema.get("logicalType") if isinstance(schema, Mapping) else None
    return f"{kind} ({logical})" if logical else kind


class _Resolution:
    """One reader/writer pair being resolved."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self._reader = reader
        self._writer = writer
        self._reader_names = _Names(reader)
        self._writer_names = _Names(writer)
        self._in_progress: set[tuple[str, str]] = set()
        self._found: list[Incompatibility] = []

    def problems(self) -> list[Incompatibility]:
        reader, reader_ns = self._reader_names.resolve(self._reader, "")
        writer, writer_ns = self._writer_names.resolve(self._writer, "")
        root = reader.get("name", _type_of(reader)) if isinstance(reader, Mapping) else _type_of(reader)
        self._check(reader, reader_ns, writer, writer_ns, str(root))
        return list(self._found)

    def _fail(self, path: str, problem: str) -> None:
        self._found.append(Incompatibility(path, problem))

    def _resolves(self, reader: Any, reader_ns: str, writer: Any, writer_ns: str, path: str) -> bool:
        """Whether the pair resolves, without recording problems (for choosing union branches)."""
        saved = self._found
        self._found = []
        try:
            self._check(reader, reader_ns, writer, writer_ns, path)
            return not self._found
        finally:
            self._found = saved

    def _check(self, reader: Any, reader_ns: str, writer: Any, writer_ns: str, path: str) -> None:
        reader, reader_ns = self._reader_names.resolve(reader, reader_ns)
        writer, writer_ns = self._writer_names.resolve(writer, writer_ns)
        reader_type, writer_type = _type_of(reader), _type_of(writer)
        if writer_type == "union":
            self._writer_union(reader, reader_ns, writer, writer_ns, path)
        elif reader_type == "union":
            self._reader_union(reader, reader_ns, writer, writer_ns, path)
        elif reader_type != writer_type:
            if reader_type not in PROMOTIONS.get(writer_type, frozenset()):
                old, new = _describe(writer, writer_ns), _describe(reader, reader_ns)
                self._fail(path, f"type changed from {old} to {new}, which is not a promotion")
        elif reader_type in {"record", "error"}:
            self._record(reader, reader_ns, writer, writer_ns, path)
        elif reader_type == "enum":
            self._enum(reader, reader_ns, writer, writer_ns, path)
        elif reader_type == "fixed":
            self._fixed(reader, reader_ns, writer, writer_ns, path)
        elif reader_type == "array":
            self._check(reader["items"], reader_ns, writer["items"], writer_ns, f"{path}[]")
        elif reader_type == "map":
            self._check(reader["values"], reader_ns, writer["values"], writer_ns, f"{path}{{}}")
        self._logical_type(reader, writer, path)

    def _logical_type(self, reader: Any, writer: Any, path: str) -> None:
        reader_logical = reader.get("logicalType") if isinstance(reader, Mapping) else None
        writer_logical = writer.get("logicalType") if isinstance(writer, Mapping) else None
        if reader_logical != writer_logical and _type_of(reader) == _type_of(writer):
            self._fail(
                path,
                f"logicalType changed from {writer_logical or 'none'} to {reader_logical or 'none'}: "
                "old values would be misread",
            )

    def _writer_union(self, reader: Any, reader_ns: str, writer: Any, writer_ns: str, path: str) -> None:
        branches = writer if isinstance(writer, list) else writer["type"]
        for branch in branches:
            if self._resolves(reader, reader_ns, branch, writer_ns, path):
                continue
            resolved, branch_ns = self._writer_names.resolve(branch, writer_ns)
            if _type_of(reader) == "union" or self._same_kind(reader, reader_ns, resolved, branch_ns):
                self._check(reader, reader_ns, resolved, branch_ns, path)  # say what inside fails
            else:
                old, new = _describe(resolved, branch_ns), _describe(reader, reader_ns)
                self._fail(path, f"the old union's branch {old} cannot be read as {new}")

    def _reader_union(self, reader: Any, reader_ns: str, writer: Any, writer_ns: str, path: str) -> None:
        """A non-union writer resolves against the first reader branch that can read it."""
        branches = reader if isinstance(reader, list) else reader["type"]
        if any(self._resolves(branch, reader_ns, writer, writer_ns, path) for branch in branches):
            return
        for branch in branches:
            resolved, branch_ns = self._reader_names.resolve(branch, reader_ns)
            if self._same_kind(resolved, branch_ns, writer, writer_ns):
                self._check(resolved, branch_ns, writer, writer_ns, path)  # say what inside fails
                return
        self._fail(path, f"no branch of the new union can read the old {_describe(writer, writer_ns)}")

    def _same_kind(self, reader: Any, reader_ns: str, writer: Any, writer_ns: str) -> bool:
        """Whether the reader is meant to read the writer: same type, and same name if named."""
        if _type_of(reader) != _type_of(writer):
            return False
        if _type_of(reader) in NAMED_TYPES:
            return self._same_name(reader, reader_ns, writer, writer_ns)
        return True

    def _same_name(
        self, reader: Mapping[str, Any], reader_ns: str, writer: Mapping[str, Any], writer_ns: str
    ) -> bool:
        """The same unqualified name, or a reader alias naming the writer's full name (the spec's rule)."""
        reader_full, writer_full = full_name(reader, reader_ns), full_name(writer, writer_ns)
        if reader_full.rpartition(".")[2] == writer_full.rpartition(".")[2]:
            return True
        aliases = {
            alias if "." in alias else f"{reader_full.rpartition('.')[0]}.{alias}".lstrip(".")
            for alias in reader.get("aliases", [])
        }
        return writer_full in aliases

    def _record(
        self, reader: Mapping[str, Any], reader_ns: str, writer: Mapping[str, Any], writer_ns: str, path: str
    ) -> None:
        if not self._same_name(reader, reader_ns, writer, writer_ns):
            self._fail(
                path,
                f"record renamed from {full_name(writer, writer_ns)} to {full_name(reader, reader_ns)} "
                "without an alias for the old name",
            )
            return
        pair = (full_name(reader, reader_ns), full_name(writer, writer_ns))
        if pair in self._in_progress:
            return  # a recursive type: assume compatible while the outer check runs
        self._in_progress.add(pair)
        try:
            reader_ns = full_name(reader, reader_ns).rpartition(".")[0]
            writer_ns = full_name(writer, writer_ns).rpartition(".")[0]
            writer_fields = {field["name"]: field for field in writer.get("fields", [])}
            for field in reader.get("fields", []):
                field_path = f"{path}.{field['name']}"
                old = _matching_field(field, writer_fields)
                if old is not None:
                    self._check(field["type"], reader_ns, old["type"], writer_ns, field_path)
                elif "default" not in field:
                    self._fail(field_path, "field added without a default; old records have no value for it")
        finally:
            self._in_progress.discard(pair)

    def _enum(
        self, reader: Mapping[str, Any], reader_ns: str, writer: Mapping[str, Any], writer_ns: str, path: str
    ) -> None:
        if not self._same_name(reader, reader_ns, writer, writer_ns):
            self._fail(
                path,
                f"enum renamed from {full_name(writer, writer_ns)} to {full_name(reader, reader_ns)} "
                "without an alias for the old name",
            )
            return
        missing = [symbol for symbol in writer["symbols"] if symbol not in reader["symbols"]]
        if missing and "default" not in reader:
            self._fail(
                path,
                f"enum symbols {', '.join(missing)} removed and the new enum has no default symbol",
            )

    def _fixed(
        self, reader: Mapping[str, Any], reader_ns: str, writer: Mapping[str, Any], writer_ns: str, path: str
    ) -> None:
        if not self._same_name(reader, reader_ns, writer, writer_ns):
            self._fail(
                path, f"fixed renamed from {full_name(writer, writer_ns)} to {full_name(reader, reader_ns)}"
            )
        elif reader["size"] != writer["size"]:
            self._fail(path, f"fixed size changed from {writer['size']} to {reader['size']}")


def _matching_field(
    reader_field: Mapping[str, Any], writer_fields: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    for name in (reader_field["name"], *reader_field.get("aliases", [])):
        if name in writer_fields:
            return writer_fields[name]
    return None


def describe(problems: Sequence[Incompatibility]) -> str:
    """Render problems as one line each."""
    return "\n".join(str(problem) for problem in problems)
