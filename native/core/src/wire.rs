//! Protobuf wire-format decoding into a reusable arena, with the semantics of protobuf's own
//! decoder (upb, which the Python `protobuf` package runs):
//!
//! - the last occurrence of a scalar wins; occurrences of a singular message merge; repeated
//!   messages append; a map entry's key and value default to 0 and the last entry for a key wins;
//!   an entry holding an unknown field is not in the map (protobuf keeps it as an unknown field);
//! - setting a member of a oneof clears its other members;
//! - a known field number with another wire type is an unknown field; unknown fields (groups
//!   included) are skipped but must be well formed;
//! - strings must be valid UTF-8 (proto3); varints take at most 10 bytes, tags at most 5 and 32
//!   bits; wire types 6 and 7, a stray end-group and truncation are errors; so is field number 0,
//!   but (as upb) only directly in a message that has fields: in a message without fields
//!   (`Heartbeat`) and inside an unknown group it is skipped like any unknown field;
//! - nesting (messages and groups) deeper than 100 is an error.
//!
//! Any of these errors rejects the whole input, as `FromString` would.

use crate::plan::{FieldKind, Plan};
use std::fmt;

/// Nesting limit of protobuf's decoder (upb's default depth).
pub const DEPTH_LIMIT: i32 = 100;

/// Bytes that are not a valid protobuf encoding of the expected message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn malformed<T>(what: &str, at: usize) -> Result<T, DecodeError> {
    Err(DecodeError(format!("malformed protobuf: {what} at byte {at}")))
}

/// What one field of one decoded message holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Empty,
    /// A scalar's raw wire value (varint, or fixed-width little-endian).
    Value(u64),
    /// A string: byte range of the input.
    Bytes(u32, u32),
    /// A singular message: its node.
    Child(u32),
    /// A repeated message: index into `lists`.
    List(u32),
    /// A `map<int64, int64>`: index into `pairs`.
    Pairs(u32),
}

#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// First slot of the node in `slots`.
    pub base: u32,
    /// Byte range of the message's (first) occurrence in the input.
    pub raw: (u32, u32),
}

/// The decoded form of one input, reused from call to call.
#[derive(Debug, Default)]
pub struct Decoded {
    pub slots: Vec<Slot>,
    pub nodes: Vec<Node>,
    pub lists: Vec<Vec<u32>>,
    lists_used: usize,
    pub pairs: Vec<Vec<(i64, i64)>>,
    pairs_used: usize,
    /// (node, start, end): later occurrences of a merged singular message.
    pub extra_raw: Vec<(u32, u32, u32)>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        // One byte: most tags, lengths, enums and small numbers.
        if self.pos < self.end {
            let byte = self.data[self.pos];
            if byte < 0x80 {
                self.pos += 1;
                return Ok(u64::from(byte));
            }
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for index in 0..10 {
            let Some(&byte) = self.data.get(self.pos).filter(|_| self.pos < self.end) else {
                return malformed("truncated varint", start);
            };
            self.pos += 1;
            // Bits beyond 64 of a tenth byte are dropped, as protobuf does.
            value |= u64::from(byte & 0x7F).wrapping_shl(7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        malformed("varint longer than 10 bytes", start)
    }

    #[inline]
    fn tag(&mut self) -> Result<(u32, u32), DecodeError> {
        let start = self.pos;
        let value = self.varint()?;
        if self.pos - start > 5 || value > u64::from(u32::MAX) {
            return malformed("tag", start);
        }
        // Field number 0 is checked by the caller: protobuf refuses it in a message with fields
        // only (not in one without, nor inside an unknown group).
        Ok(((value >> 3) as u32, (value & 7) as u32))
    }

    #[inline]
    fn fixed(&mut self, width: usize) -> Result<u64, DecodeError> {
        if self.end - self.pos < width {
            return malformed("truncated fixed-width value", self.pos);
        }
        let mut value = 0u64;
        for (index, &byte) in self.data[self.pos..self.pos + width].iter().enumerate() {
            value |= u64::from(byte) << (8 * index);
        }
        self.pos += width;
        Ok(value)
    }

    /// A length prefix and the range it covers.
    #[inline]
    fn delimited(&mut self) -> Result<(usize, usize), DecodeError> {
        let at = self.pos;
        let length = self.varint()?;
        if length >= i32::MAX as u64 || length > (self.end - self.pos) as u64 {
            return malformed("length beyond the end", at);
        }
        let start = self.pos;
        self.pos += length as usize;
        Ok((start, self.pos))
    }

    /// Skip one unknown field whose tag was just read.
    fn skip(&mut self, number: u32, wire: u32, depth: i32) -> Result<(), DecodeError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.fixed(8).map(|_| ()),
            2 => self.delimited().map(|_| ()),
            5 => self.fixed(4).map(|_| ()),
            3 => {
                let depth = depth - 1;
                if depth < 0 {
                    return malformed("nesting deeper than 100", self.pos);
                }
                loop {
                    if self.pos >= self.end {
                        return malformed("unterminated group", self.pos);
                    }
                    let at = self.pos;
                    let (inner, inner_wire) = self.tag()?;
                    if inner_wire == 4 {
                        return if inner == number { Ok(()) } else { malformed("mismatched end group", at) };
                    }
                    self.skip(inner, inner_wire, depth)?;
                }
            }
            4 => malformed("end group outside a group", self.pos),
            _ => malformed("wire type 6 or 7", self.pos),
        }
    }
}

/// Scratch memory kept between calls (about what a few hundred executions need).
pub const KEEP_BYTES: usize = 1 << 20;

impl Decoded {
    /// Give back what a huge input made the arena grow to.
    pub fn trim(&mut self) {
        let slot_limit = KEEP_BYTES / std::mem::size_of::<Slot>();
        if self.slots.capacity() > slot_limit {
            self.slots = Vec::new();
        }
        if self.nodes.capacity() > slot_limit / 8 {
            self.nodes = Vec::new();
        }
        if self.lists.len() > 1024 || self.lists.iter().any(|list| list.capacity() > slot_limit / 4) {
            self.lists = Vec::new();
            self.lists_used = 0;
        }
        if self.pairs.len() > 1024 {
            self.pairs = Vec::new();
            self.pairs_used = 0;
        }
        if self.extra_raw.capacity() > slot_limit / 8 {
            self.extra_raw = Vec::new();
        }
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.nodes.clear();
        self.lists_used = 0;
        self.pairs_used = 0;
        self.extra_raw.clear();
    }

    fn new_node(&mut self, fields: usize, raw: (usize, usize)) -> u32 {
        let base = self.slots.len() as u32;
        self.slots.resize(self.slots.len() + fields, Slot::Empty);
        self.nodes.push(Node { base, raw: (raw.0 as u32, raw.1 as u32) });
        (self.nodes.len() - 1) as u32
    }

    fn new_list(&mut self) -> u32 {
        if self.lists_used == self.lists.len() {
            self.lists.push(Vec::new());
        } else {
            self.lists[self.lists_used].clear();
        }
        self.lists_used += 1;
        (self.lists_used - 1) as u32
    }

    fn new_pairs(&mut self) -> u32 {
        if self.pairs_used == self.pairs.len() {
            self.pairs.push(Vec::new());
        } else {
            self.pairs[self.pairs_used].clear();
        }
        self.pairs_used += 1;
        (self.pairs_used - 1) as u32
    }

    #[inline]
    pub fn slot(&self, node: u32, slot: usize) -> Slot {
        self.slots[self.nodes[node as usize].base as usize + slot]
    }

    /// Decode a whole input as a message of plan `message`; returns the root node.
    pub fn decode_root(&mut self, plan: &Plan, message: usize, data: &[u8]) -> Result<u32, DecodeError> {
        self.clear();
        if data.len() >= i32::MAX as usize {
            return malformed("message larger than 2 GiB", 0);
        }
        let root = self.new_node(plan.messages[message].fields.len(), (0, data.len()));
        self.decode(plan, message, data, 0, data.len(), root, DEPTH_LIMIT)?;
        Ok(root)
    }

    #[allow(clippy::too_many_arguments)]
    fn decode(
        &mut self,
        plan: &Plan,
        message: usize,
        data: &[u8],
        start: usize,
        end: usize,
        node: u32,
        depth: i32,
    ) -> Result<(), DecodeError> {
        let message_plan = &plan.messages[message];
        let base = self.nodes[node as usize].base as usize;
        let mut reader = Reader { data, pos: start, end };
        while reader.pos < end {
            let at = reader.pos;
            let (number, wire) = reader.tag()?;
            if number == 0 && !message_plan.fields.is_empty() {
                return malformed("field number 0", at);
            }
            let Some(slot) = message_plan.slot_of(number) else {
                reader.skip(number, wire, depth)?;
                continue;
            };
            let field = &message_plan.fields[slot];
            if field.wire != wire {
                reader.skip(number, wire, depth)?;
                continue;
            }
            let index = base + slot;
            let value = match field.kind {
                FieldKind::String => {
                    let (from, to) = reader.delimited()?;
                    if std::str::from_utf8(&data[from..to]).is_err() {
                        return malformed("string field is not valid UTF-8", at);
                    }
                    Slot::Bytes(from as u32, to as u32)
                }
                FieldKind::Message => {
                    let (from, to) = reader.delimited()?;
                    if depth <= 0 {
                        return malformed("nesting deeper than 100", at);
                    }
                    let child_plan = field.message.unwrap_or(0);
                    let child = match self.slots[index] {
                        Slot::Child(child) => {
                            self.extra_raw.push((child, from as u32, to as u32));
                            child
                        }
                        _ => self.new_node(plan.messages[child_plan].fields.len(), (from, to)),
                    };
                    self.decode(plan, child_plan, data, from, to, child, depth - 1)?;
                    Slot::Child(child)
                }
                FieldKind::RepeatedMessage => {
                    let (from, to) = reader.delimited()?;
                    if depth <= 0 {
                        return malformed("nesting deeper than 100", at);
                    }
                    let child_plan = field.message.unwrap_or(0);
                    let child = self.new_node(plan.messages[child_plan].fields.len(), (from, to));
                    self.decode(plan, child_plan, data, from, to, child, depth - 1)?;
                    let list = match self.slots[index] {
                        Slot::List(list) => list,
                        _ => self.new_list(),
                    };
                    self.lists[list as usize].push(child);
                    Slot::List(list)
                }
                FieldKind::MapInt64Int64 => {
                    let (from, to) = reader.delimited()?;
                    if depth <= 0 {
                        return malformed("nesting deeper than 100", at);
                    }
                    let entry = Self::map_entry(data, from, to, depth - 1)?;
                    let pairs = match self.slots[index] {
                        Slot::Pairs(pairs) => pairs,
                        _ => self.new_pairs(),
                    };
                    if let Some(entry) = entry {
                        self.pairs[pairs as usize].push(entry);
                    }
                    Slot::Pairs(pairs)
                }
                FieldKind::Sfixed64 => Slot::Value(reader.fixed(8)?),
                FieldKind::Sfixed32 | FieldKind::Fixed32 => Slot::Value(reader.fixed(4)?),
                _ => Slot::Value(reader.varint()?),
            };
            self.slots[index] = value;
            if field.clears {
                for &other in &message_plan.oneof_others[slot] {
                    self.slots[base + usize::from(other)] = Slot::Empty;
                }
            }
        }
        Ok(())
    }

    /// A map entry's (key, value); None for an entry with an unknown field, which protobuf keeps
    /// among the parent's unknown fields instead of in the map.
    fn map_entry(
        data: &[u8],
        start: usize,
        end: usize,
        depth: i32,
    ) -> Result<Option<(i64, i64)>, DecodeError> {
        let mut reader = Reader { data, pos: start, end };
        let (mut key, mut value, mut unknown) = (0i64, 0i64, false);
        while reader.pos < end {
            let at = reader.pos;
            let (number, wire) = reader.tag()?;
            match (number, wire) {
                (0, _) => return malformed("field number 0", at),
                (1, 0) => key = reader.varint()? as i64,
                (2, 0) => value = reader.varint()? as i64,
                _ => {
                    reader.skip(number, wire, depth)?;
                    unknown = true;
                }
            }
        }
        Ok(if unknown { None } else { Some((key, value)) })
    }
}
