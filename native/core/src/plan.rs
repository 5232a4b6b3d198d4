//! The plan: what to read from which protobuf field and how to write it as Avro.
//!
//! The plan is not written by hand: `connector/core/transcoder.py` builds it at start-up, as JSON,
//! from the protobuf descriptors of `connector._pb` and the committed `.avsc` files, so a proto or
//! schema change reaches the native code without regenerating or recompiling it. This module parses
//! that JSON and checks every index and every kind, so that a wrong plan is refused here with a
//! reason instead of misbehaving later.

use serde::Deserialize;
use std::fmt;

/// A plan that cannot be used (a bug in the plan builder, never venue data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a protobuf field is read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Int64,
    Int32,
    Uint32,
    Sint32,
    Sint64,
    Sfixed32,
    Sfixed64,
    Fixed32,
    Bool,
    Enum,
    String,
    Message,
    RepeatedMessage,
    /// `map<int64, int64>`: entries (key = 1, value = 2), kept as pairs.
    MapInt64Int64,
}

impl FieldKind {
    /// The wire type the field is read from (another wire type makes it an unknown field).
    pub fn wire_type(self) -> u32 {
        match self {
            FieldKind::Int64
            | FieldKind::Int32
            | FieldKind::Uint32
            | FieldKind::Sint32
            | FieldKind::Sint64
            | FieldKind::Bool
            | FieldKind::Enum => 0,
            FieldKind::Sfixed64 => 1,
            FieldKind::Sfixed32 | FieldKind::Fixed32 => 5,
            FieldKind::String
            | FieldKind::Message
            | FieldKind::RepeatedMessage
            | FieldKind::MapInt64Int64 => 2,
        }
    }

    fn is_integer(self) -> bool {
        self.wire_type() != 2
    }

    /// Integer kinds whose every value fits an Avro `int`.
    fn fits_int(self) -> bool {
        matches!(
            self,
            FieldKind::Int32 | FieldKind::Sint32 | FieldKind::Sfixed32 | FieldKind::Enum | FieldKind::Bool
        )
    }

    /// The value of a decoded scalar, as protobuf's own decoder turns the wire value into it.
    #[inline]
    pub fn convert(self, raw: u64) -> i64 {
        match self {
            FieldKind::Int32 | FieldKind::Sfixed32 | FieldKind::Enum => i64::from(raw as u32 as i32),
            FieldKind::Uint32 | FieldKind::Fixed32 => i64::from(raw as u32),
            FieldKind::Sint32 => {
                let value = raw as u32;
                i64::from(((value >> 1) as i32) ^ -((value & 1) as i32))
            }
            FieldKind::Sint64 => ((raw >> 1) as i64) ^ -((raw & 1) as i64),
            FieldKind::Bool => i64::from(raw != 0),
            _ => raw as i64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldPlan {
    pub name: String,
    pub number: u32,
    pub kind: FieldKind,
    /// The message plan of a message, repeated message or map entry field.
    #[serde(default)]
    pub message: Option<usize>,
    /// The oneof the field belongs to (setting it clears the oneof's other fields).
    #[serde(default)]
    pub oneof: Option<usize>,
    /// `kind.wire_type()`, resolved once.
    #[serde(skip)]
    pub wire: u32,
    /// Whether setting it clears other fields (a oneof with other members).
    #[serde(skip)]
    pub clears: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessagePlan {
    pub name: String,
    pub fields: Vec<FieldPlan>,
    /// Field number -> slot + 1 (0: unknown), for numbers below its length.
    #[serde(skip)]
    pub dense: Vec<u16>,
    /// (number, slot) of the numbers beyond `dense`, sorted.
    #[serde(skip)]
    pub sparse: Vec<(u32, u16)>,
    /// For each slot, the other slots of its oneof.
    #[serde(skip)]
    pub oneof_others: Vec<Vec<u16>>,
}

const DENSE_LIMIT: u32 = 4096;

impl MessagePlan {
    #[inline]
    pub fn slot_of(&self, number: u32) -> Option<usize> {
        if let Some(&entry) = self.dense.get(number as usize) {
            return if entry == 0 { None } else { Some(usize::from(entry) - 1) };
        }
        self.sparse
            .binary_search_by_key(&number, |&(n, _)| n)
            .ok()
            .map(|index| usize::from(self.sparse[index].1))
    }
}

/// One step of writing an Avro record from a decoded message.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    String {
        slot: usize,
    },
    Long {
        slot: usize,
    },
    Int {
        slot: usize,
    },
    Boolean {
        slot: usize,
    },
    /// An Avro enum: the symbol index of the venue number (`dense[n]` for 0 <= n < len, else
    /// `sparse`), or `unknown` for a number the schema does not know.
    Enum {
        slot: usize,
        dense: Vec<u32>,
        sparse: Vec<(i64, u32)>,
        unknown: u32,
    },
    /// `[null, timestamp-nanos]` from a `google.protobuf.Timestamp`; `clamp` for a deadline.
    Timestamp {
        slot: usize,
        field: String,
        clamp: bool,
        null_first: bool,
    },
    /// `[null, record]` from a singular message.
    Record {
        slot: usize,
        writer: usize,
        null_first: bool,
    },
    /// An array of records from a repeated message.
    Array {
        slot: usize,
        writer: usize,
    },
    /// An array of two-long records from a `map<int64, int64>`, sorted by key.
    Pairs {
        slot: usize,
        key_first: bool,
    },
    /// Bytes written as they are (the Avro encoding of a default).
    Constant {
        hex: String,
    },
    /// A field the connector supplies (see [`Envelope`]).
    Envelope {
        field: Envelope,
        #[serde(default)]
        null_first: Option<bool>,
    },
    /// The whole event message, written with another writer (a non-null record).
    Body {
        writer: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    ExecutionId,
    OrderId,
    TransactTime,
    Source,
    SessionId,
    ProcessedSentTime,
    ReceivedTime,
    Connector,
    SnapshotId,
    SnapshotPosition,
    SnapshotSize,
}

/// An [`Op`] resolved against its message: constants decoded, kinds known.
#[derive(Debug, Clone)]
pub enum Step {
    String(usize),
    Integer { slot: usize, kind: FieldKind, int: bool },
    Boolean(usize),
    Enum { slot: usize, dense: Vec<u32>, sparse: Vec<(i64, u32)>, unknown: u32 },
    Timestamp { slot: usize, field: String, clamp: bool, null_first: bool },
    Record { slot: usize, writer: usize, null_first: bool },
    Array { slot: usize, writer: usize },
    Pairs { slot: usize, key_first: bool },
    Constant(Vec<u8>),
    Envelope { field: Envelope, null_first: bool },
    Body(usize),
}

#[derive(Debug, Clone, Deserialize)]
pub struct WriterPlan {
    pub message: usize,
    pub ops: Vec<Op>,
    #[serde(skip)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TimestampPlan {
    pub message: usize,
    pub seconds: usize,
    pub nanos: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResponsePlan {
    pub message: usize,
    pub heartbeat: Option<usize>,
    pub snapshot: Option<usize>,
    pub update: Option<usize>,
    pub session_id: Option<usize>,
    pub processed_sent_time: Option<usize>,
    /// In the snapshot message.
    pub orders: Option<usize>,
    /// In the update message.
    pub executions: Option<usize>,
    pub cancel_reject: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExecutionPlan {
    pub message: usize,
    pub id: Option<usize>,
    pub order: Option<usize>,
    /// In the order message.
    pub order_id: Option<usize>,
    pub transact_time: Option<usize>,
    pub writer: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderPlan {
    pub message: usize,
    pub id: Option<usize>,
    pub writer: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CancelRejectPlan {
    pub message: usize,
    pub order_id: Option<usize>,
    pub clord_id: Option<usize>,
    pub transact_time: Option<usize>,
    pub writer: usize,
}

/// Avro enum index of each `Source` symbol in the event schemas.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceSymbols {
    pub stream: u32,
    pub snapshot: u32,
    pub backfill: u32,
    pub drop_copy: u32,
}

pub const PLAN_VERSION: u32 = 2;

#[derive(Debug, Clone, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub messages: Vec<MessagePlan>,
    pub writers: Vec<WriterPlan>,
    pub timestamp: TimestampPlan,
    pub response: ResponsePlan,
    pub execution: ExecutionPlan,
    pub snapshot_order: OrderPlan,
    pub cancel_reject: CancelRejectPlan,
    pub source_symbols: SourceSymbols,
}

fn error<T>(message: String) -> Result<T, PlanError> {
    Err(PlanError(message))
}

impl Plan {
    /// Parse and check a plan.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let mut plan: Plan = serde_json::from_str(text).map_err(|e| PlanError(format!("plan JSON: {e}")))?;
        if plan.version != PLAN_VERSION {
            return error(format!("plan version {} (this build reads {PLAN_VERSION})", plan.version));
        }
        plan.index_messages()?;
        plan.check_roots()?;
        plan.resolve_writers()?;
        Ok(plan)
    }

    fn index_messages(&mut self) -> Result<(), PlanError> {
        let count = self.messages.len();
        for message in &mut self.messages {
            if message.fields.len() >= usize::from(u16::MAX) {
                return error(format!("{}: too many fields", message.name));
            }
            let mut numbers: Vec<u32> = message.fields.iter().map(|f| f.number).collect();
            numbers.sort_unstable();
            if numbers.windows(2).any(|pair| pair[0] == pair[1]) {
                return error(format!("{}: a field number twice", message.name));
            }
            let max_dense = numbers.iter().copied().filter(|&n| n < DENSE_LIMIT).max().unwrap_or(0);
            message.dense = vec![0; max_dense as usize + 1];
            message.sparse.clear();
            for (slot, field) in message.fields.iter().enumerate() {
                if field.number == 0 || field.number > 536_870_911 {
                    return error(format!("{}.{}: field number {}", message.name, field.name, field.number));
                }
                let needs_message = matches!(field.kind, FieldKind::Message | FieldKind::RepeatedMessage);
                match field.message {
                    Some(index) if index >= count => {
                        return error(format!("{}.{}: message {index}", message.name, field.name))
                    }
                    None if needs_message => {
                        return error(format!("{}.{}: no message plan", message.name, field.name))
                    }
                    _ => {}
                }
                let entry = slot as u16 + 1;
                if field.number < DENSE_LIMIT {
                    message.dense[field.number as usize] = entry;
                } else {
                    message.sparse.push((field.number, entry - 1));
                }
            }
            message.sparse.sort_unstable();
            for field in &mut message.fields {
                field.wire = field.kind.wire_type();
            }
            message.oneof_others = message
                .fields
                .iter()
                .enumerate()
                .map(|(slot, field)| match field.oneof {
                    None => Vec::new(),
                    Some(oneof) => message
                        .fields
                        .iter()
                        .enumerate()
                        .filter(|(other, f)| *other != slot && f.oneof == Some(oneof))
                        .map(|(other, _)| other as u16)
                        .collect(),
                })
                .collect();
            for (field, others) in message.fields.iter_mut().zip(&message.oneof_others) {
                field.clears = !others.is_empty();
            }
        }
        Ok(())
    }

    fn field(&self, message: usize, slot: usize, what: &str) -> Result<&FieldPlan, PlanError> {
        let plan =
            self.messages.get(message).ok_or_else(|| PlanError(format!("{what}: message {message}")))?;
        plan.fields.get(slot).ok_or_else(|| PlanError(format!("{what}: {} has no slot {slot}", plan.name)))
    }

    fn expect(
        &self,
        message: usize,
        slot: Option<usize>,
        kinds: &[FieldKind],
        what: &str,
    ) -> Result<Option<usize>, PlanError> {
        let Some(slot) = slot else { return Ok(None) };
        let field = self.field(message, slot, what)?;
        if !kinds.contains(&field.kind) {
            return error(format!("{what}: {} is {:?}", field.name, field.kind));
        }
        Ok(field.message)
    }

    fn check_roots(&self) -> Result<(), PlanError> {
        let ts = &self.timestamp;
        self.expect(ts.message, Some(ts.seconds), &[FieldKind::Int64], "timestamp seconds")?;
        self.expect(ts.message, Some(ts.nanos), &[FieldKind::Int32], "timestamp nanos")?;
        let r = &self.response;
        let message = &[FieldKind::Message];
        self.expect(r.message, r.heartbeat, message, "response heartbeat")?;
        let snapshot = self.expect(r.message, r.snapshot, message, "response snapshot")?;
        let update = self.expect(r.message, r.update, message, "response update")?;
        self.expect(r.message, r.session_id, &[FieldKind::String], "response session_id")?;
        let stamp = self.expect(r.message, r.processed_sent_time, message, "response processed_sent_time")?;
        self.same(stamp, ts.message, "processed_sent_time")?;
        if let Some(snapshot) = snapshot {
            let orders = self.expect(snapshot, r.orders, &[FieldKind::RepeatedMessage], "snapshot orders")?;
            self.same(orders, self.snapshot_order.message, "snapshot orders")?;
        }
        if let Some(update) = update {
            let executions =
                self.expect(update, r.executions, &[FieldKind::RepeatedMessage], "update executions")?;
            self.same(executions, self.execution.message, "update executions")?;
            let reject = self.expect(update, r.cancel_reject, message, "update cancel_reject")?;
            self.same(reject, self.cancel_reject.message, "update cancel_reject")?;
        }
        let e = &self.execution;
        self.expect(e.message, e.id, &[FieldKind::String], "execution id")?;
        let order = self.expect(e.message, e.order, message, "execution order")?;
        if let Some(order) = order {
            self.expect(order, e.order_id, &[FieldKind::String], "execution order id")?;
        }
        let stamp = self.expect(e.message, e.transact_time, message, "execution transact_time")?;
        self.same(stamp, ts.message, "execution transact_time")?;
        let o = &self.snapshot_order;
        self.expect(o.message, o.id, &[FieldKind::String], "order id")?;
        let c = &self.cancel_reject;
        self.expect(c.message, c.order_id, &[FieldKind::String], "cancel reject order_id")?;
        self.expect(c.message, c.clord_id, &[FieldKind::String], "cancel reject clord_id")?;
        let stamp = self.expect(c.message, c.transact_time, message, "cancel reject transact_time")?;
        self.same(stamp, ts.message, "cancel reject transact_time")?;
        for (writer, message, what) in [
            (e.writer, e.message, "execution writer"),
            (o.writer, o.message, "order writer"),
            (c.writer, c.message, "cancel reject writer"),
        ] {
            match self.writers.get(writer) {
                Some(plan) if plan.message == message => {}
                _ => return error(format!("{what}: writer {writer} is not for message {message}")),
            }
        }
        Ok(())
    }

    fn same(&self, found: Option<usize>, expected: usize, what: &str) -> Result<(), PlanError> {
        match found {
            Some(found) if found != expected => {
                error(format!("{what}: message {found}, expected {expected}"))
            }
            _ => Ok(()),
        }
    }

    fn resolve_writers(&mut self) -> Result<(), PlanError> {
        let mut resolved = Vec::with_capacity(self.writers.len());
        for writer in &self.writers {
            if writer.message >= self.messages.len() {
                return error(format!("writer for message {}", writer.message));
            }
            let steps = writer
                .ops
                .iter()
                .map(|op| self.resolve(writer.message, op))
                .collect::<Result<Vec<_>, _>>()?;
            resolved.push(steps);
        }
        for (writer, steps) in self.writers.iter_mut().zip(resolved) {
            writer.steps = steps;
        }
        Ok(())
    }

    fn writer_for(&self, writer: usize, message: Option<usize>, what: &str) -> Result<usize, PlanError> {
        match self.writers.get(writer) {
            Some(plan) if Some(plan.message) == message => Ok(writer),
            _ => error(format!("{what}: writer {writer} does not write message {message:?}")),
        }
    }

    fn resolve(&self, message: usize, op: &Op) -> Result<Step, PlanError> {
        let name = &self.messages[message].name;
        let kind = |slot: usize| self.field(message, slot, name).map(|f| f.kind);
        Ok(match op {
            Op::String { slot } => {
                self.expect(message, Some(*slot), &[FieldKind::String], name)?;
                Step::String(*slot)
            }
            Op::Long { slot } => {
                let kind = kind(*slot)?;
                if !kind.is_integer() {
                    return error(format!("{name}: long from {kind:?}"));
                }
                Step::Integer { slot: *slot, kind, int: false }
            }
            Op::Int { slot } => {
                let kind = kind(*slot)?;
                if !kind.fits_int() {
                    return error(format!("{name}: int from {kind:?}"));
                }
                Step::Integer { slot: *slot, kind, int: true }
            }
            Op::Boolean { slot } => {
                self.expect(message, Some(*slot), &[FieldKind::Bool], name)?;
                Step::Boolean(*slot)
            }
            Op::Enum { slot, dense, sparse, unknown } => {
                self.expect(message, Some(*slot), &[FieldKind::Enum], name)?;
                Step::Enum { slot: *slot, dense: dense.clone(), sparse: sparse.clone(), unknown: *unknown }
            }
            Op::Timestamp { slot, field, clamp, null_first } => {
                let stamp = self.expect(message, Some(*slot), &[FieldKind::Message], name)?;
                self.same(stamp, self.timestamp.message, field)?;
                Step::Timestamp { slot: *slot, field: field.clone(), clamp: *clamp, null_first: *null_first }
            }
            Op::Record { slot, writer, null_first } => {
                let child = self.expect(message, Some(*slot), &[FieldKind::Message], name)?;
                Step::Record {
                    slot: *slot,
                    writer: self.writer_for(*writer, child, name)?,
                    null_first: *null_first,
                }
            }
            Op::Array { slot, writer } => {
                let child = self.expect(message, Some(*slot), &[FieldKind::RepeatedMessage], name)?;
                Step::Array { slot: *slot, writer: self.writer_for(*writer, child, name)? }
            }
            Op::Pairs { slot, key_first } => {
                self.expect(message, Some(*slot), &[FieldKind::MapInt64Int64], name)?;
                Step::Pairs { slot: *slot, key_first: *key_first }
            }
            Op::Constant { hex } => Step::Constant(decode_hex(hex)?),
            Op::Envelope { field, null_first } => {
                let nullable = matches!(field, Envelope::TransactTime | Envelope::ProcessedSentTime);
                if nullable != null_first.is_some() {
                    return error(format!("{name}: envelope {field:?} nullability"));
                }
                Step::Envelope { field: *field, null_first: null_first.unwrap_or(false) }
            }
            Op::Body { writer } => Step::Body(self.writer_for(*writer, Some(message), name)?),
        })
    }
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, PlanError> {
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return error(format!("constant {hex:?} is not hex"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| PlanError(e.to_string())))
        .collect()
}
