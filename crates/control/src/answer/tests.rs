//! Every answer reads back as it was written, and an answer with a field
//! renamed (a node and a CLI of different versions) fails the read,
//! naming the field, instead of reading as zero.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::request::DirectionArg;

/// Reads some JSON as an answer: whether it gives back the body an
/// example was written from.
type ReadsBack = Box<dyn Fn(&Value) -> Result<bool, AnswerError>>;

/// An answer as the node writes it, and how to read it back.
struct Example {
    op: &'static str,
    answer: Value,
    reads_back: ReadsBack,
}

fn example<T: Body + PartialEq + 'static>(op: &'static str, body: T) -> Example {
    let answer = carried_out(&body);
    Example {
        op,
        answer,
        reads_back: Box::new(move |v| read::<T>(op, v).map(|b| b == body)),
    }
}

fn by_reason(pairs: &[(&str, u64)]) -> ByReason {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn sa(spi: u32, direction: DirectionArg, paired: bool) -> SaView {
    SaView {
        spi,
        direction,
        worker: 1,
        home: paired.then_some(1),
        owner: paired.then_some(2),
        mirror: paired.then_some(SaMirror {
            generation: 3,
            stored: Some(900),
            acked: None,
        }),
        state: if paired {
            SaState::Standby
        } else {
            SaState::Retiring
        },
        retire_in_ms: (!paired).then_some(2500),
        aead: Some("aes-128-gcm".into()),
        tunnel: Some(TunnelAddrs {
            src: "192.0.2.1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
        }),
        esn: Some(true),
        seq: 1000,
        lease_end: paired.then_some(1_000_000),
        packets: 999,
        bytes: 123_456,
        drops: by_reason(&[("replayed", 4)]),
        lifetime_left: LifetimeLeft {
            packets: Some(10),
            bytes: None,
            sequence: Some(4_000_000_000),
        },
    }
}

fn pair_view() -> PairView {
    PairView {
        node: Some(1),
        peer: Some(2),
        peer_alive: true,
        synced: false,
        holding: 3,
        standby: 4,
        queued: 5,
        frames_sent: 6,
        bytes_sent: 7,
        states_sent: 8,
        acks_sent: 9,
        frames_received: 10,
        records_ignored: 11,
        taken_over: 12,
        handed_back: 13,
        bulks_incomplete: 14,
        stall_alarms: 15,
        orphan_alarms: 16,
        reach_alarms: 17,
        rejected: by_reason(&[("forged", 0), ("stale_epoch", 2)]),
        flow_failed: true,
        peer_flow_failed: false,
        workers_stalled: 1,
    }
}

fn stats() -> Stats {
    let drops = by_reason(&[("policy", 1), ("standby", 0), ("arp_miss", 2)]);
    Stats {
        workers: vec![WorkerStats {
            worker: 0,
            rx: 1,
            tx: 2,
            encrypted: 3,
            decrypted: 4,
            bypassed: 5,
            handoff_in: 6,
            handoff_out: 7,
            arp_replies: 8,
            arp_requests: 9,
            icmp_errors: 10,
            commands: 11,
            progress: 12,
            progress_full: 13,
            punted: 14,
            punt_sent: 15,
            redirected: 16,
            held: 17,
            drops: drops.clone(),
            esp_drops_no_sa: by_reason(&[("lease_stall", 0), ("no_sa", 3)]),
            queues: BTreeMap::from([(
                "wan".to_string(),
                QueueCounts {
                    rx_packets: 1,
                    rx_bytes: 2,
                    tx_packets: 3,
                    tx_bytes: 4,
                    tx_full: 5,
                    rx_too_long: 6,
                    rx_csum_completed: 7,
                },
            )]),
            burst_ns: BurstNs {
                count: 100,
                mean: 1234.5,
                max: 9000,
                quantiles: BurstQuantiles {
                    p50: 1000,
                    p90: 2000,
                    p99: 4000,
                    p999: 8000,
                },
            },
        }],
        total: Totals {
            rx: 1,
            tx: 2,
            encrypted: 3,
            decrypted: 4,
            bypassed: 5,
            punted: 14,
            punt_sent: 15,
            redirected: 16,
            held: 17,
            drops,
            lease_stalls: 6,
            sa_events: BTreeMap::from([("soft_lifetime".into(), 8), ("seq_low".into(), 9)]),
            commands_pending: 7,
        },
    }
}

/// One answer of every kind the node writes.
fn examples() -> Vec<Example> {
    vec![
        example("status", Status::WaitingConfig),
        example(
            "status",
            Status::Running {
                node: "a".into(),
                uptime_ms: 1234,
                pair: Some(PairHealth {
                    epoch: 1_700_000_000_000,
                    peer_alive: true,
                    synced: true,
                    holding: 0,
                    standby: 2,
                    frames_sent: 10,
                    frames_received: 11,
                    rejected: 1,
                    flow_failed: false,
                }),
            },
        ),
        example(
            "status",
            Status::Running {
                node: "r".into(),
                uptime_ms: 5,
                pair: None,
            },
        ),
        example("fence", Done {}),
        example(
            "events",
            Events {
                events: vec!["event t=1 synced".into()],
            },
        ),
        example(
            "sa_list",
            SaList {
                sas: vec![
                    sa(0x1000, DirectionArg::Outbound, true),
                    sa(0x1001, DirectionArg::Inbound, false),
                ],
            },
        ),
        example("sa_add", SaAdded { sas: 1, rules: 2 }),
        example("spi_alloc", SpiAllocated { spi: 0xc000_0001 }),
        example(
            "sa_query",
            SaQueried {
                packets: 3,
                bytes: 300,
            },
        ),
        example("spd_put", Rules { rules: 2 }),
        example(
            "sa_rekey",
            SaRekeyed {
                new_spi: 0x1100,
                grace_ms: 5000,
            },
        ),
        example("stats", stats()),
        example("peer", Peer { mirror: None }),
        example(
            "peer",
            Peer {
                mirror: Some(pair_view()),
            },
        ),
        example(
            "metrics",
            MetricsText {
                text: "# HELP x An x.\n".into(),
            },
        ),
    ]
}

/// Objects keyed by names the node chooses (reasons, ports), not by
/// fields: a key of theirs renamed is another name, not a missing field.
const BY_NAME: [&str; 5] = [
    "drops",
    "esp_drops_no_sa",
    "rejected",
    "queues",
    "sa_events",
];

/// A step into a JSON value.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path of every field of `v` (keys of by-name objects excepted).
fn fields(v: &Value, at: &[Step], out: &mut Vec<Vec<Step>>) {
    let by_name = matches!(at.last(), Some(Step::Key(k)) if BY_NAME.contains(&k.as_str()));
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let here = [at, &[Step::Key(k.clone())]].concat();
                if !by_name {
                    out.push(here.clone());
                }
                fields(x, &here, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                fields(x, &[at, &[Step::Index(i)]].concat(), out);
            }
        }
        _ => {}
    }
}

/// `v` with the field at `path` renamed; the old name.
fn renamed(v: &Value, path: &[Step]) -> (Value, String) {
    let mut v = v.clone();
    let (last, parents) = path.split_last().expect("a field");
    let mut here = &mut v;
    for step in parents {
        here = match step {
            Step::Key(k) => &mut here[k.as_str()],
            Step::Index(i) => &mut here[*i],
        };
    }
    let Step::Key(name) = last else {
        unreachable!("a field's path ends with its key")
    };
    let m = here.as_object_mut().expect("an object");
    let x = m.remove(name).expect("the field");
    m.insert(format!("{name}_renamed"), x);
    (v, name.clone())
}

#[test]
fn every_answer_reads_back_as_it_was_written() {
    for e in examples() {
        let line = e.answer.to_string();
        let back: Value = serde_json::from_str(&line).unwrap();
        assert!(
            (e.reads_back)(&back).unwrap_or_else(|err| panic!("{line}: {err}")),
            "{} read back as another body: {line}",
            e.op
        );
    }
}

#[test]
fn every_field_renamed_fails_the_read_naming_it() {
    let mut tried = 0;
    for e in examples() {
        let mut paths = Vec::new();
        fields(&e.answer, &[], &mut paths);
        for path in paths {
            let (answer, name) = renamed(&e.answer, &path);
            let err = match (e.reads_back)(&answer) {
                Ok(_) => panic!("{}: {name} renamed still reads: {answer}", e.op),
                Err(err) => err.to_string(),
            };
            assert!(
                err.contains(&format!("missing field `{name}`")) && err.contains(e.op),
                "{}: {name} renamed: {err}",
                e.op
            );
            tried += 1;
        }
    }
    assert!(tried > 100, "only {tried} fields tried");
}

#[test]
fn a_renamed_field_is_an_error_naming_the_request_and_the_field() {
    let answer = carried_out(&SaList {
        sas: vec![sa(0x1000, DirectionArg::Outbound, true)],
    });
    let (answer, _) = renamed(
        &answer,
        &[
            Step::Key("sas".into()),
            Step::Index(0),
            Step::Key("seq".into()),
        ],
    );
    let err = read::<SaList>("sa_list", &answer).expect_err("seq was renamed");
    assert_eq!(
        err.to_string(),
        "cannot read the node's answer to sa_list at sas[0]: missing field `seq`"
    );
}

#[test]
fn the_envelope_and_the_bodies_without_fields_write_as_literals() {
    assert_eq!(carried_out(&Done {}).to_string(), r#"{"ok":true}"#);
    assert_eq!(
        carried_out(&Status::WaitingConfig).to_string(),
        r#"{"ok":true,"state":"waiting_config"}"#
    );
    assert_eq!(
        refusal("not configured yet").to_string(),
        r#"{"error":"not configured yet","ok":false}"#
    );
}

#[test]
fn a_refusal_reads_as_the_nodes_reason() {
    let no = refusal("not configured yet");
    assert_eq!(
        no.to_string(),
        r#"{"error":"not configured yet","ok":false}"#
    );
    assert!(matches!(
        read::<Done>("fence", &no),
        Err(AnswerError::Refused(why)) if why == "not configured yet"
    ));
    assert!(matches!(
        read::<Done>("fence", &serde_json::json!({ "ok": false })),
        Err(AnswerError::Refused(why)) if why == "the node refused without a reason"
    ));
}

fn any_direction() -> impl Strategy<Value = DirectionArg> {
    prop_oneof![Just(DirectionArg::Outbound), Just(DirectionArg::Inbound)]
}

fn any_state() -> impl Strategy<Value = SaState> {
    prop_oneof![
        Just(SaState::Active),
        Just(SaState::Standby),
        Just(SaState::Retiring)
    ]
}

proptest! {
    /// Any SA, its optional fields absent or not, reads back equal.
    #[test]
    fn any_sa_reads_back_equal(
        spi: u32,
        direction in any_direction(),
        state in any_state(),
        worker: usize,
        ids: (Option<u32>, Option<u32>),
        mirror: Option<(u64, Option<u64>, Option<u64>)>,
        retire_in_ms: Option<u64>,
        esn: Option<bool>,
        counters: (u64, Option<u64>, u64, u64),
        drops: BTreeMap<String, u64>,
        left: (Option<u64>, Option<u64>, Option<u64>),
    ) {
        let body = SaList { sas: vec![SaView {
            spi,
            direction,
            worker,
            home: ids.0,
            owner: ids.1,
            mirror: mirror.map(|(generation, stored, acked)| SaMirror { generation, stored, acked }),
            state,
            retire_in_ms,
            aead: esn.map(|_| "aes-256-gcm".to_string()),
            tunnel: esn.map(|_| TunnelAddrs { src: [10, 0, 0, 1].into(), dst: [10, 0, 0, 2].into() }),
            esn,
            seq: counters.0,
            lease_end: counters.1,
            packets: counters.2,
            bytes: counters.3,
            drops,
            lifetime_left: LifetimeLeft { packets: left.0, bytes: left.1, sequence: left.2 },
        }]};
        let line = carried_out(&body).to_string();
        let back = read::<SaList>("sa_list", &serde_json::from_str(&line).unwrap());
        prop_assert_eq!(back.ok(), Some(body), "{}", line);
    }
}
