//! Fuzz target: any bytes as a `CreateOrderSubscriptionResponse` and as one `Execution`.
//!
//! The plan is the connector's own (`PMX_TRANSCODER_PLAN`: the JSON file
//! `scripts/fuzz_transcoder.py` writes from `connector.core.transcoder`). A panic (an index out of
//! bounds, an arithmetic overflow: the build has overflow checks on) is a crash; so is a broken
//! invariant checked below: every value starts with its prefix, every record and dead letter has
//! the key of its order, and transcoding is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmx_transcoder::{Context, EventType, Failure, Plan, Sink, Source, Transcoder};
use std::sync::OnceLock;

const PREFIXES: [&[u8]; 3] = [b"\xc3\x01EXECUTE", b"\x00\x00\x00\x00\x07", b"CR"];

static TRANSCODER: OnceLock<Transcoder> = OnceLock::new();

#[derive(Default, PartialEq, Debug)]
struct Recording {
    records: Vec<(u8, Vec<u8>, Option<i64>, Vec<u8>)>,
    dead_letters: Vec<(EventType, usize, Vec<u8>, Vec<u8>, Failure)>,
}

impl Sink for Recording {
    fn execution(&mut self, execution_id: &str, key: &[u8], transact_time: Option<i64>, value: &[u8]) {
        assert!(!execution_id.is_empty() && !key.is_empty(), "an execution without its ids");
        assert!(value.starts_with(PREFIXES[0]));
        self.records.push((0, key.to_vec(), transact_time, value.to_vec()));
    }
    fn snapshot_order(&mut self, key: &[u8], value: &[u8]) {
        assert!(!key.is_empty() && value.starts_with(PREFIXES[1]));
        self.records.push((1, key.to_vec(), None, value.to_vec()));
    }
    fn cancel_reject(&mut self, key: &[u8], transact_time: Option<i64>, value: &[u8]) {
        assert!(!key.is_empty() && value.starts_with(PREFIXES[2]));
        self.records.push((2, key.to_vec(), transact_time, value.to_vec()));
    }
    fn dead_letter(&mut self, event: EventType, position: usize, raw: &[u8], key: &[u8], failure: Failure) {
        self.dead_letters.push((event, position, raw.to_vec(), key.to_vec(), failure));
    }
}

fuzz_target!(
    init: {
        let path = std::env::var("PMX_TRANSCODER_PLAN").expect("PMX_TRANSCODER_PLAN: the plan JSON file");
        let text = std::fs::read_to_string(path).expect("the plan JSON file");
        let plan = Plan::from_json(&text).expect("a valid plan");
        let prefixes = PREFIXES.map(|prefix| prefix.to_vec());
        TRANSCODER.set(Transcoder::new(plan, prefixes, "fuzz".into())).ok();
    },
    |data: &[u8]| {
        let transcoder = TRANSCODER.get().expect("initialised");
        let mut first = Recording::default();
        let summary = transcoder.response(data, 1_700_000_000_000_000_000, Source::Stream, &mut first);
        let mut second = Recording::default();
        let again = transcoder.response(data, 1_700_000_000_000_000_000, Source::Stream, &mut second);
        assert_eq!(summary, again);
        assert_eq!(first, second);
        if summary.is_err() {
            assert!(first.records.is_empty() && first.dead_letters.is_empty(), "records from invalid bytes");
        }
        let context = Context { source: Source::Backfill, session_id: "", processed_sent_time: None, received_time: -1 };
        let mut backfill = Recording::default();
        if transcoder.execution(data, &context, &mut backfill).is_ok() {
            assert_eq!(backfill.records.len() + backfill.dead_letters.len(), 1);
        }
    }
);
