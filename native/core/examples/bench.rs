//! The Rust core alone, without Python objects: `cargo run --release --example bench -- PLAN FRAMES
//! EXECUTIONS_PER_FRAME REPEATS`, FRAMES being length-prefixed (4 bytes, little-endian) responses.
//! Prints the best CPU-independent wall time per execution in ns (tests/perf/transcoder_bench.py
//! runs it beside the Python variants).

use pmx_transcoder::{EventType, Failure, Plan, Sink, Source, Transcoder};
use std::time::Instant;

/// Touches what a real sink would read, so nothing is optimised away.
#[derive(Default)]
struct Counting {
    bytes: usize,
    records: usize,
}

impl Sink for Counting {
    fn execution(&mut self, id: &str, key: &[u8], _time: Option<i64>, value: &[u8]) {
        self.bytes += id.len() + key.len() + value.len();
        self.records += 1;
    }
    fn snapshot_order(&mut self, key: &[u8], value: &[u8]) {
        self.bytes += key.len() + value.len();
        self.records += 1;
    }
    fn cancel_reject(&mut self, key: &[u8], _time: Option<i64>, value: &[u8]) {
        self.bytes += key.len() + value.len();
        self.records += 1;
    }
    fn dead_letter(
        &mut self,
        _event: EventType,
        _position: usize,
        raw: &[u8],
        _key: &[u8],
        _failure: Failure,
    ) {
        self.bytes += raw.len();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let plan = Plan::from_json(&std::fs::read_to_string(&args[1]).expect("plan file")).expect("plan");
    let data = std::fs::read(&args[2]).expect("frames file");
    let per_frame: usize = args[3].parse().expect("executions per frame");
    let repeats: usize = args[4].parse().expect("repeats");
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let length = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        frames.push(&data[at + 4..at + 4 + length]);
        at += 4 + length;
    }
    let transcoder =
        Transcoder::new(plan, [b"\xc3\x01ABCDEFGH".to_vec(), b"S".to_vec(), b"C".to_vec()], "bench".into());
    let mut best = f64::INFINITY;
    let mut sink = Counting::default();
    for _ in 0..repeats {
        let started = Instant::now();
        for frame in &frames {
            transcoder.response(frame, 1, Source::Stream, &mut sink).expect("valid frames");
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    assert_eq!(sink.records, frames.len() * per_frame * repeats);
    println!("{:.1}", best / (frames.len() * per_frame) as f64 * 1e9);
}
