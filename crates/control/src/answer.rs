//! The control socket's answers, typed: the node writes them from these
//! structs and the CLI and the host read them back into the same structs,
//! so a field renamed on one side fails the read, naming the field, instead
//! of reading as nothing.
//!
//! Every answer is one JSON object with `ok`. A request carried out gets
//! `{"ok":true, ..its body's fields}` ([`carried_out`]); one refused gets
//! `{"ok":false,"error":"<why>"}` ([`refusal`]). [`read`] takes either
//! apart.
//!
//! | request | body |
//! |---|---|
//! | `status` | [`Status`] |
//! | `configure`, `take_over`, `hand_back`, `fence`, `sa_del` | [`Done`] |
//! | `events` | [`Events`] |
//! | `sa_list` | [`SaList`] |
//! | `sa_add` | [`SaAdded`] |
//! | `sa_rekey` | [`SaRekeyed`] |
//! | `spi_alloc` | [`SpiAllocated`] |
//! | `sa_query` | [`SaQueried`] |
//! | `spd_put`, `spd_del` | [`Rules`] |
//! | `watch` | [`Done`], then [`Event`]s |
//! | `stats` | [`Stats`] |
//! | `peer` | [`Peer`] |
//! | the metrics scrape (not on the socket) | [`MetricsText`] |
//!
//! A field the node always sends is required when read, `null` included:
//! an `Option` field reads `null` as `None` but refuses a missing key.
//! Unknown fields are read past, so a node that sends one more field still
//! answers an older CLI.

mod peer;
mod sa_list;
mod stats;
mod status;
#[cfg(test)]
mod tests;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::request::DirectionArg;

pub use peer::{PairView, Peer};
pub use sa_list::{LifetimeLeft, SaList, SaMirror, SaState, SaView, TunnelAddrs};
pub use stats::{BurstNs, BurstQuantiles, QueueCounts, Stats, Totals, WorkerStats};
pub use status::{PairHealth, Status};

/// Counts by reason (drops, refused mirror frames), keyed by the reason's
/// name.
pub type ByReason = std::collections::BTreeMap<String, u64>;

/// The body of an answer: the fields beside `ok`, one JSON object.
pub trait Body: Serialize + DeserializeOwned {}

/// The body of an answer that carries nothing but `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

/// `drain`: how many SAs went to the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drained {
    /// SAs handed over.
    pub sas: usize,
}

/// `events`: the event lines logged since the last call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// Oldest first.
    pub events: Vec<String>,
}

/// `sa_add`: what was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaAdded {
    /// SAs added.
    pub sas: usize,
    /// SPD rules added.
    pub rules: usize,
}

/// `sa_export`: the SAs the node runs and its rules, as node-file YAML
/// (keys included; SAs a rekey replaced left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaExport {
    /// `sas:` and `spd:`.
    pub yaml: String,
}

/// `sa_rekey`: the new SA, and how long the old one lives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaRekeyed {
    /// The new SA's SPI.
    pub new_spi: u32,
    /// Milliseconds until the old SA goes.
    pub grace_ms: u64,
}

/// `spi_alloc`: the SPI handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpiAllocated {
    /// The SPI.
    pub spi: u32,
}

/// `sa_query`: one SA's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaQueried {
    /// Packets it carried.
    pub packets: u64,
    /// Inner bytes it carried.
    pub bytes: u64,
}

/// `spd_put`, `spd_del`: how many rules the request named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Rules put or deleted.
    pub rules: usize,
}

/// One line of a `watch` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An SA told of a lifetime crossed or its sequence space running
    /// low or out.
    Sa {
        /// Milliseconds since the Unix epoch.
        t: u64,
        /// SPI.
        spi: u32,
        /// Direction.
        direction: DirectionArg,
        /// `soft_lifetime`, `hard_lifetime`, `seq_low` or `seq_exhausted`.
        kind: String,
    },
    /// A packet matched a trap rule: an SA is wanted for its traffic.
    Acquire {
        /// Milliseconds since the Unix epoch.
        t: u64,
        /// The packet's source address.
        src: std::net::IpAddr,
        /// Its destination address.
        dst: std::net::IpAddr,
        /// Its protocol.
        protocol: u8,
        /// Its source port (TCP, UDP; else 0).
        sport: u16,
        /// Its destination port.
        dport: u16,
    },
    /// Any other event of the node, as its log line writes it.
    Node {
        /// Milliseconds since the Unix epoch.
        t: u64,
        /// The line.
        line: String,
    },
}

/// The metrics scrape: the Prometheus exposition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsText {
    /// The exposition text.
    pub text: String,
}

impl Body for Done {}
impl Body for Drained {}
impl Body for Events {}
impl Body for SaAdded {}
impl Body for SaExport {}
impl Body for SaRekeyed {}
impl Body for SpiAllocated {}
impl Body for SaQueried {}
impl Body for Rules {}
impl Body for MetricsText {}
impl Body for SaList {}
impl Body for Stats {}
impl Body for Peer {}
impl Body for Status {}

/// The answer to a request carried out: `ok` true and the fields of `body`.
/// A body that does not write as a JSON object (none of this module's do)
/// is refused, with why.
pub fn carried_out(body: &impl Body) -> Value {
    let fields = match serde_json::to_value(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => return refusal(format!("the answer {other} is not a JSON object")),
        Err(e) => return refusal(format!("the answer could not be written: {e}")),
    };
    let mut answer = Map::new();
    answer.insert("ok".into(), Value::Bool(true));
    answer.extend(fields);
    answer.into()
}

/// The answer to a request refused: `ok` false and why.
pub fn refusal(why: impl std::fmt::Display) -> Value {
    let mut answer = Map::new();
    answer.insert("ok".into(), Value::Bool(false));
    answer.insert("error".into(), Value::String(why.to_string()));
    answer.into()
}

/// A refusal for a reason that passes (the node's workers busy, its
/// connections all taken): `"retry": true` says the same request may be
/// carried out later, as a pair's host sends it again.
pub fn passing_refusal(why: impl std::fmt::Display) -> Value {
    let mut answer = refusal(why);
    if let Some(map) = answer.as_object_mut() {
        map.insert("retry".into(), Value::Bool(true));
    }
    answer
}

/// What every answer says: whether the request was carried out, and if
/// not, why.
#[derive(Deserialize)]
struct Verdict {
    ok: bool,
    /// Sent only with `ok` false.
    #[serde(default)]
    error: Option<String>,
}

/// An answer that is not the body asked for.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The node refused the request; its reason.
    #[error("{0}")]
    Refused(String),
    /// The answer does not read as the request's body (a field missing or
    /// of another type: a node of another version?).
    #[error("cannot read the node's answer to {op}{}: {message}", at(.path))]
    Unreadable {
        /// The request answered.
        op: String,
        /// Where in the answer, `.` for the answer itself.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// ` at <path>` inside the answer, nothing at the answer itself.
fn at(path: &str) -> String {
    match path {
        "." => String::new(),
        _ => format!(" at {path}"),
    }
}

/// Reads the answer to request `op`: its body, the node's refusal, or
/// why it cannot be read.
pub fn read<T: Body>(op: &str, answer: &Value) -> Result<T, AnswerError> {
    let verdict = body::<Verdict>(op, answer)?;
    if !verdict.ok {
        return Err(AnswerError::Refused(
            verdict
                .error
                .unwrap_or_else(|| "the node refused without a reason".into()),
        ));
    }
    body(op, answer)
}

fn body<T: DeserializeOwned>(op: &str, answer: &Value) -> Result<T, AnswerError> {
    serde_path_to_error::deserialize(answer).map_err(|e| AnswerError::Unreadable {
        op: op.to_string(),
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

/// Reads an `Option` field that must be present, `null` for `None`
/// (serde's default reads a missing one as `None`).
fn required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::deserialize(d)
}
