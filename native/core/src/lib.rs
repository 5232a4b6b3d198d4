//! pmx-transcoder: a venue `CreateOrderSubscriptionResponse` (or one `Execution`) in protobuf wire
//! bytes -> the framed Avro values of ExecutionEvent, OrderSnapshotEvent and CancelRejectEvent, in
//! one pass, with the semantics of the connector's reference mapping (`tests/reference_mapping.py`)
//! and fastavro's encoding.
//!
//! Everything schema-specific comes from a [`Plan`] that the Python side builds from the protobuf
//! descriptors and the `.avsc` files; this crate knows the wire formats and the envelope, nothing
//! of the venue's field names or numbers. Safe Rust only: invalid input is a [`DecodeError`] or a
//! [`Failure`] (the event goes to the dead-letter topic), never undefined behaviour.

#![forbid(unsafe_code)]

pub mod plan;
pub mod wire;

pub use plan::Plan;
use plan::{Envelope, FieldKind, Step};
use std::cell::RefCell;
use wire::{Decoded, Slot};

pub use plan::PlanError;
pub use wire::DecodeError;

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Where an event came from (the `source` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stream,
    Snapshot,
    Backfill,
    DropCopy,
}

/// The record types the transcoder writes (index into the prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Execution = 0,
    SnapshotOrder = 1,
    CancelReject = 2,
}

impl EventType {
    /// The name used in the `event_type` header and the dead-letter records.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Execution => "execution",
            EventType::SnapshotOrder => "snapshot_order",
            EventType::CancelReject => "cancel_reject",
        }
    }
}

/// Why a well-formed venue event cannot become a record (it goes to the dead-letter topic).
/// The texts are the reference mapping's; the binding formats them (with Python's `repr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    ExecutionWithoutId { order_id: String },
    ExecutionWithoutOrderId { execution_id: String },
    SnapshotOrderWithoutId { position: usize },
    CancelRejectWithoutOrderId { clord_id: String },
    TimestampOutOfRange { field: String, seconds: i64 },
}

/// The receiver of a transcoded input's records, in wire order per record type.
pub trait Sink {
    fn execution(&mut self, execution_id: &str, key: &[u8], transact_time: Option<i64>, value: &[u8]);
    fn snapshot_order(&mut self, key: &[u8], value: &[u8]);
    fn cancel_reject(&mut self, key: &[u8], transact_time: Option<i64>, value: &[u8]);
    /// `raw`: the event's protobuf bytes as received; `key`: its order id.
    fn dead_letter(&mut self, event: EventType, position: usize, raw: &[u8], key: &[u8], failure: Failure);
}

/// Which member of the response's `event` oneof is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    None,
    Heartbeat,
    Snapshot,
    Update,
}

/// What the engine needs of a response beyond its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary<'a> {
    pub kind: Kind,
    pub session_id: &'a str,
    /// None when absent or outside timestamp-nanos (as the reference pipeline).
    pub processed_sent_time: Option<i64>,
    /// `<session_id>@<processed_sent_time or received_time>`, for a snapshot.
    pub snapshot_id: String,
    pub snapshot_size: usize,
}

/// The connector's envelope of one event.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub source: Source,
    pub session_id: &'a str,
    pub processed_sent_time: Option<i64>,
    pub received_time: i64,
}

struct EventValues<'a> {
    execution_id: &'a str,
    order_id: &'a str,
    transact_time: Option<i64>,
    snapshot_id: &'a str,
    position: usize,
    size: usize,
}

/// Output buffers of the encoder.
#[derive(Default)]
struct Buffers {
    out: Vec<u8>,
    pairs: Vec<(i64, i64)>,
}

#[derive(Default)]
struct Scratch {
    decoded: Decoded,
    buffers: Buffers,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Run `work` with this thread's scratch buffers (fresh ones if they are in use: re-entry). What a
/// huge input grew (a 100,000-order snapshot: ~80 MB of slots) is given back afterwards.
fn with_scratch<R>(work: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let result = work(&mut scratch);
            scratch.decoded.trim();
            if scratch.buffers.out.capacity() > wire::KEEP_BYTES {
                scratch.buffers.out = Vec::new();
            }
            result
        }
        Err(_) => work(&mut Scratch::default()),
    })
}

/// The transcoder for one plan, framing prefixes and connector name.
pub struct Transcoder {
    plan: Plan,
    prefixes: [Vec<u8>; 3],
    connector: String,
}

impl Transcoder {
    /// `prefixes`: the framing header of ExecutionEvent, OrderSnapshotEvent and CancelRejectEvent.
    pub fn new(plan: Plan, prefixes: [Vec<u8>; 3], connector: String) -> Transcoder {
        Transcoder { plan, prefixes, connector }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Transcode one `CreateOrderSubscriptionResponse`: its records go to `sink`.
    ///
    /// Bytes that do not parse as the response are an error, before anything reaches the sink.
    pub fn response<'d, S: Sink>(
        &self,
        data: &'d [u8],
        received_time: i64,
        stream_source: Source,
        sink: &mut S,
    ) -> Result<Summary<'d>, DecodeError> {
        with_scratch(|scratch| {
            let plan = &self.plan;
            let r = &plan.response;
            let Scratch { decoded, buffers } = scratch;
            let root = decoded.decode_root(plan, r.message, data)?;
            let decoded: &Decoded = decoded;
            let session_id = string(decoded, data, root, r.session_id);
            let processed_sent_time = match r.processed_sent_time.map(|s| decoded.slot(root, s)) {
                Some(Slot::Child(stamp)) => self.timestamp(decoded, stamp).ok().map(|n| n as i64),
                _ => None,
            };
            let child = |slot: Option<usize>| match slot.map(|s| decoded.slot(root, s)) {
                Some(Slot::Child(node)) => Some(node),
                _ => None,
            };
            let context = Context { source: stream_source, session_id, processed_sent_time, received_time };
            let mut summary = Summary {
                kind: Kind::None,
                session_id,
                processed_sent_time,
                snapshot_id: String::new(),
                snapshot_size: 0,
            };
            if child(r.heartbeat).is_some() {
                summary.kind = Kind::Heartbeat;
            } else if let Some(snapshot) = child(r.snapshot) {
                summary.kind = Kind::Snapshot;
                let orders = list(decoded, snapshot, r.orders);
                let stamp = match processed_sent_time {
                    Some(time) if time != 0 => time,
                    _ => received_time,
                };
                summary.snapshot_id = format!("{session_id}@{stamp}");
                summary.snapshot_size = orders.len();
                let context = Context { source: Source::Snapshot, ..context };
                for (position, &order) in orders.iter().enumerate() {
                    self.snapshot_order(decoded, buffers, data, order, position, &summary, &context, sink);
                }
            } else if let Some(update) = child(r.update) {
                summary.kind = Kind::Update;
                for (position, &execution) in list(decoded, update, r.executions).iter().enumerate() {
                    self.execution_event(decoded, buffers, data, execution, position, &context, sink);
                }
                if let Some(Slot::Child(reject)) = r.cancel_reject.map(|s| decoded.slot(update, s)) {
                    self.cancel_reject_event(decoded, buffers, data, reject, &context, sink);
                }
            }
            Ok(summary)
        })
    }

    /// Transcode one `Execution` (a backfilled one): its record or dead letter goes to `sink`.
    pub fn execution<S: Sink>(
        &self,
        data: &[u8],
        context: &Context<'_>,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        with_scratch(|scratch| {
            let Scratch { decoded, buffers } = scratch;
            let root = decoded.decode_root(&self.plan, self.plan.execution.message, data)?;
            self.execution_event(decoded, buffers, data, root, 0, context, sink);
            Ok(())
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn execution_event<S: Sink>(
        &self,
        decoded: &Decoded,
        buffers: &mut Buffers,
        data: &[u8],
        node: u32,
        position: usize,
        context: &Context<'_>,
        sink: &mut S,
    ) {
        let e = &self.plan.execution;
        let execution_id = string(decoded, data, node, e.id);
        let order = match e.order.map(|s| decoded.slot(node, s)) {
            Some(Slot::Child(order)) => Some(order),
            _ => None,
        };
        let order_id = order.map_or("", |order| string(decoded, data, order, e.order_id));
        let transact_time = match e.transact_time.map(|s| decoded.slot(node, s)) {
            Some(Slot::Child(stamp)) => self.timestamp(decoded, stamp).ok().map(|n| n as i64),
            _ => None,
        };
        let values =
            EventValues { execution_id, order_id, transact_time, snapshot_id: "", position: 0, size: 0 };
        let prefix = &self.prefixes[EventType::Execution as usize];
        let result = self.encode(decoded, buffers, data, prefix, e.writer, node, &values, context);
        let failure = match result {
            Err(failure) => Some(failure),
            Ok(()) if execution_id.is_empty() => {
                Some(Failure::ExecutionWithoutId { order_id: order_id.into() })
            }
            Ok(()) if order_id.is_empty() => {
                Some(Failure::ExecutionWithoutOrderId { execution_id: execution_id.into() })
            }
            Ok(()) => None,
        };
        match failure {
            None => sink.execution(execution_id, order_id.as_bytes(), transact_time, &buffers.out),
            Some(failure) => {
                let raw = raw_bytes(decoded, data, node);
                sink.dead_letter(EventType::Execution, position, &raw, order_id.as_bytes(), failure);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn snapshot_order<S: Sink>(
        &self,
        decoded: &Decoded,
        buffers: &mut Buffers,
        data: &[u8],
        node: u32,
        position: usize,
        summary: &Summary<'_>,
        context: &Context<'_>,
        sink: &mut S,
    ) {
        let o = &self.plan.snapshot_order;
        let order_id = string(decoded, data, node, o.id);
        let failure = if order_id.is_empty() {
            Some(Failure::SnapshotOrderWithoutId { position })
        } else {
            let values = EventValues {
                execution_id: "",
                order_id,
                transact_time: None,
                snapshot_id: &summary.snapshot_id,
                position,
                size: summary.snapshot_size,
            };
            let prefix = &self.prefixes[EventType::SnapshotOrder as usize];
            self.encode(decoded, buffers, data, prefix, o.writer, node, &values, context).err()
        };
        match failure {
            None => sink.snapshot_order(order_id.as_bytes(), &buffers.out),
            Some(failure) => {
                let raw = raw_bytes(decoded, data, node);
                sink.dead_letter(EventType::SnapshotOrder, position, &raw, order_id.as_bytes(), failure);
            }
        }
    }

    fn cancel_reject_event<S: Sink>(
        &self,
        decoded: &Decoded,
        buffers: &mut Buffers,
        data: &[u8],
        node: u32,
        context: &Context<'_>,
        sink: &mut S,
    ) {
        let c = &self.plan.cancel_reject;
        let order_id = string(decoded, data, node, c.order_id);
        let transact_time = match c.transact_time.map(|s| decoded.slot(node, s)) {
            Some(Slot::Child(stamp)) => self.timestamp(decoded, stamp).ok().map(|n| n as i64),
            _ => None,
        };
        let values =
            EventValues { execution_id: "", order_id, transact_time, snapshot_id: "", position: 0, size: 0 };
        let prefix = &self.prefixes[EventType::CancelReject as usize];
        let failure = match self.encode(decoded, buffers, data, prefix, c.writer, node, &values, context) {
            Err(failure) => Some(failure),
            Ok(()) if order_id.is_empty() => Some(Failure::CancelRejectWithoutOrderId {
                clord_id: string(decoded, data, node, c.clord_id).into(),
            }),
            Ok(()) => None,
        };
        match failure {
            None => sink.cancel_reject(order_id.as_bytes(), transact_time, &buffers.out),
            Some(failure) => {
                let raw = raw_bytes(decoded, data, node);
                sink.dead_letter(EventType::CancelReject, 0, &raw, order_id.as_bytes(), failure);
            }
        }
    }

    /// A Timestamp node as nanoseconds (exact, possibly beyond 64 bits).
    #[inline]
    fn timestamp(&self, decoded: &Decoded, node: u32) -> Result<i128, i64> {
        let t = &self.plan.timestamp;
        let seconds = scalar(decoded, node, t.seconds, FieldKind::Int64);
        let nanos = scalar(decoded, node, t.nanos, FieldKind::Int32);
        let total = i128::from(seconds) * NANOS_PER_SECOND + i128::from(nanos);
        if total < i128::from(i64::MIN) || total > i128::from(i64::MAX) {
            Err(seconds)
        } else {
            Ok(total)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        decoded: &Decoded,
        buffers: &mut Buffers,
        data: &[u8],
        prefix: &[u8],
        writer: usize,
        node: u32,
        values: &EventValues<'_>,
        context: &Context<'_>,
    ) -> Result<(), Failure> {
        let Buffers { out, pairs } = buffers;
        out.clear();
        out.extend_from_slice(prefix);
        let mut encoder = Encoder { transcoder: self, decoded, data, out, pairs, values, context };
        encoder.record(writer, node)
    }
}

fn string<'d>(decoded: &Decoded, data: &'d [u8], node: u32, slot: Option<usize>) -> &'d str {
    match slot.map(|s| decoded.slot(node, s)) {
        // Validated as UTF-8 while decoding.
        Some(Slot::Bytes(from, to)) => std::str::from_utf8(&data[from as usize..to as usize]).unwrap_or(""),
        _ => "",
    }
}

fn list(decoded: &Decoded, node: u32, slot: Option<usize>) -> &[u32] {
    match slot.map(|s| decoded.slot(node, s)) {
        Some(Slot::List(list)) => &decoded.lists[list as usize],
        _ => &[],
    }
}

#[inline]
fn scalar(decoded: &Decoded, node: u32, slot: usize, kind: FieldKind) -> i64 {
    match decoded.slot(node, slot) {
        Slot::Value(raw) => kind.convert(raw),
        _ => 0,
    }
}

/// The event's bytes as received (every occurrence, for a message merged from several).
fn raw_bytes(decoded: &Decoded, data: &[u8], node: u32) -> Vec<u8> {
    let (start, end) = decoded.nodes[node as usize].raw;
    let mut raw = data[start as usize..end as usize].to_vec();
    for &(_, from, to) in decoded.extra_raw.iter().filter(|(n, _, _)| *n == node) {
        raw.extend_from_slice(&data[from as usize..to as usize]);
    }
    raw
}

struct Encoder<'e, 'd> {
    transcoder: &'e Transcoder,
    decoded: &'e Decoded,
    data: &'d [u8],
    out: &'e mut Vec<u8>,
    pairs: &'e mut Vec<(i64, i64)>,
    values: &'e EventValues<'e>,
    context: &'e Context<'e>,
}

#[inline]
fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n > 0x7F {
        out.push((n as u8 & 0x7F) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[inline]
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// Avro union branch index of `[null, T]` (`null_first`) or `[T, null]`.
#[inline]
fn put_branch(out: &mut Vec<u8>, null_first: bool, is_null: bool) {
    out.push(if null_first != is_null { 2 } else { 0 });
}

impl Encoder<'_, '_> {
    fn record(&mut self, writer: usize, node: u32) -> Result<(), Failure> {
        let plan = &self.transcoder.plan;
        let base = self.decoded.nodes[node as usize].base as usize;
        let slots = &self.decoded.slots[base..];
        for step in &plan.writers[writer].steps {
            match step {
                Step::String(slot) => match slots[*slot] {
                    Slot::Bytes(from, to) => put_bytes(self.out, &self.data[from as usize..to as usize]),
                    _ => self.out.push(0),
                },
                Step::Integer { slot, kind, .. } => {
                    let value = match slots[*slot] {
                        Slot::Value(raw) => kind.convert(raw),
                        _ => 0,
                    };
                    put_long(self.out, value);
                }
                Step::Boolean(slot) => {
                    let set = matches!(slots[*slot], Slot::Value(raw) if raw != 0);
                    self.out.push(u8::from(set));
                }
                Step::Enum { slot, dense, sparse, unknown } => {
                    let number = match slots[*slot] {
                        Slot::Value(raw) => FieldKind::Enum.convert(raw),
                        _ => 0,
                    };
                    let index = usize::try_from(number)
                        .ok()
                        .and_then(|n| dense.get(n).copied())
                        .filter(|&index| index != u32::MAX)
                        .or_else(|| sparse.iter().find(|(n, _)| *n == number).map(|&(_, index)| index))
                        .unwrap_or(*unknown);
                    put_long(self.out, i64::from(index));
                }
                Step::Timestamp { slot, field, clamp, null_first } => match slots[*slot] {
                    Slot::Child(stamp) => {
                        let nanos = match self.transcoder.timestamp(self.decoded, stamp) {
                            Ok(nanos) => nanos as i64,
                            Err(seconds) if *clamp => {
                                if seconds < 0 {
                                    i64::MIN
                                } else {
                                    i64::MAX
                                }
                            }
                            Err(seconds) => {
                                return Err(Failure::TimestampOutOfRange { field: field.clone(), seconds })
                            }
                        };
                        put_branch(self.out, *null_first, false);
                        put_long(self.out, nanos);
                    }
                    _ => put_branch(self.out, *null_first, true),
                },
                Step::Record { slot, writer, null_first } => match slots[*slot] {
                    Slot::Child(child) => {
                        put_branch(self.out, *null_first, false);
                        self.record(*writer, child)?;
                    }
                    _ => put_branch(self.out, *null_first, true),
                },
                Step::Array { slot, writer } => {
                    if let Slot::List(list) = slots[*slot] {
                        let items = &self.decoded.lists[list as usize];
                        put_long(self.out, items.len() as i64);
                        for &item in items {
                            self.record(*writer, item)?;
                        }
                    }
                    self.out.push(0);
                }
                Step::Pairs { slot, key_first } => {
                    if let Slot::Pairs(pairs) = slots[*slot] {
                        self.put_pairs(pairs, *key_first);
                    }
                    self.out.push(0);
                }
                Step::Constant(bytes) => self.out.extend_from_slice(bytes),
                Step::Envelope { field, null_first } => self.envelope(*field, *null_first),
                Step::Body(writer) => self.record(*writer, node)?,
            }
        }
        Ok(())
    }

    /// A map's entries, last value per key, sorted by key (as the reference's `sorted(map.items())`).
    fn put_pairs(&mut self, pairs: u32, key_first: bool) {
        self.pairs.clear();
        self.pairs.extend_from_slice(&self.decoded.pairs[pairs as usize]);
        // Stable: equal keys keep wire order, so the last of each run is the value protobuf keeps.
        self.pairs.sort_by_key(|&(key, _)| key);
        let mut unique = 0;
        for index in 0..self.pairs.len() {
            if unique > 0 && self.pairs[unique - 1].0 == self.pairs[index].0 {
                self.pairs[unique - 1] = self.pairs[index];
            } else {
                self.pairs[unique] = self.pairs[index];
                unique += 1;
            }
        }
        self.pairs.truncate(unique);
        if unique == 0 {
            return; // an empty array is its terminator alone
        }
        put_long(self.out, unique as i64);
        for &(key, value) in self.pairs.iter() {
            let (first, second) = if key_first { (key, value) } else { (value, key) };
            put_long(self.out, first);
            put_long(self.out, second);
        }
    }

    fn envelope(&mut self, field: Envelope, null_first: bool) {
        let (values, context) = (self.values, self.context);
        let optional = |out: &mut Vec<u8>, value: Option<i64>| {
            put_branch(out, null_first, value.is_none());
            if let Some(value) = value {
                put_long(out, value);
            }
        };
        match field {
            Envelope::ExecutionId => put_bytes(self.out, values.execution_id.as_bytes()),
            Envelope::OrderId => put_bytes(self.out, values.order_id.as_bytes()),
            Envelope::TransactTime => optional(self.out, values.transact_time),
            Envelope::Source => {
                let symbols = &self.transcoder.plan.source_symbols;
                let index = match context.source {
                    Source::Stream => symbols.stream,
                    Source::Snapshot => symbols.snapshot,
                    Source::Backfill => symbols.backfill,
                    Source::DropCopy => symbols.drop_copy,
                };
                put_long(self.out, i64::from(index));
            }
            Envelope::SessionId => put_bytes(self.out, context.session_id.as_bytes()),
            Envelope::ProcessedSentTime => optional(self.out, context.processed_sent_time),
            Envelope::ReceivedTime => put_long(self.out, context.received_time),
            Envelope::Connector => put_bytes(self.out, self.transcoder.connector.as_bytes()),
            Envelope::SnapshotId => put_bytes(self.out, values.snapshot_id.as_bytes()),
            Envelope::SnapshotPosition => put_long(self.out, values.position as i64),
            Envelope::SnapshotSize => put_long(self.out, values.size as i64),
        }
    }
}
