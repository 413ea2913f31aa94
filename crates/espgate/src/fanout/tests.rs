use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::channel;

use espgate_dataplane::config::Takeover;

use super::*;

/// A stand-in for a node's control socket: records every request line
/// and answers it with `reply` (the host's tests use it too).
pub(crate) struct FakeNode {
    seen: Arc<Mutex<Vec<Value>>>,
}

pub(crate) type Reply = dyn Fn(&Value) -> Value + Send + Sync;

/// A reply that may be none: the node carried the request out (it is
/// recorded) and its answer never came (it was frozen past the host's
/// timeout, or slow; or it hung up). The connection is closed then.
type MuteReply = dyn Fn(&Value) -> Option<Value> + Send + Sync;

impl FakeNode {
    pub(crate) fn start(path: &Path, reply: Arc<Reply>) -> FakeNode {
        Self::start_mute(path, Arc::new(move |r: &Value| Some(reply(r))))
    }

    fn start_mute(path: &Path, reply: Arc<MuteReply>) -> FakeNode {
        let listener = UnixListener::bind(path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (log, reply) = (log.clone(), reply.clone());
                std::thread::spawn(move || {
                    let mut out = conn.try_clone().unwrap();
                    for line in BufReader::new(conn).lines().map_while(Result::ok) {
                        let request: Value = serde_json::from_str(&line).unwrap();
                        lock(&log).push(request.clone());
                        let Some(answer) = reply(&request) else {
                            let _ = out.shutdown(std::net::Shutdown::Both);
                            return;
                        };
                        if writeln!(out, "{answer}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeNode { seen }
    }

    /// The requests it got, in order.
    pub(crate) fn ops(&self) -> Vec<Value> {
        lock(&self.seen).clone()
    }
}

fn ok() -> Arc<Reply> {
    Arc::new(
        |_| json!({ "ok": true, "sas": 1, "rules": 0, "spi": 0xc000_0001u32, "packets": 0, "bytes": 0 }),
    )
}

pub(super) fn managed(dir: &Path, name: &str) -> ManagedNode {
    ManagedNode {
        name: name.into(),
        takeover: Takeover::Manual,
        control: dir.join(format!("{name}.sock")),
        config: String::new(),
        on_failure: Vec::new(),
        on_return: Vec::new(),
    }
}

/// The fan-out to nodes a and b in `dir`, both counted up.
fn pair(dir: &Path) -> Fanout {
    up(Fanout::new(&[managed(dir, "a"), managed(dir, "b")]))
}

fn up(f: Fanout) -> Fanout {
    f.set_up(0, true);
    f.set_up(1, true);
    f
}

pub(super) fn ask_fanout(f: &Fanout, request: &str) -> Value {
    let (back, answer) = channel();
    f.handle_request(serde_json::from_str(request).unwrap(), back);
    answer.recv().unwrap()
}

/// An SA as kernel-espgate writes it.
pub(super) fn plugin_sa(spi: u32, direction: &str, src: &str, dst: &str) -> String {
    format!(
        "sas: [{{spi: 0x{spi:08x}, direction: {direction}, aead: aes-128-gcm, key: 0x00112233445566778899aabbccddeeff01020304, tunnel: {{src: {src}, dst: {dst}}}, esn: false, replay_window: 64, udp_encap: {{src_port: 4500, dst_port: 4500}}, lifetime: {{soft_seconds: 3}}}}]"
    )
}

pub(super) fn sa_add(yaml: &str) -> String {
    json!({ "op": "sa_add", "yaml": yaml }).to_string()
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("espgate-fanout-")
        .tempdir()
        .unwrap()
}

/// A node configuration of the pair: `name` with mirror id `id` (its peer
/// `peer`), unprotected address `wan` and the peer's `peer_wan`.
fn node_config(
    name: &str,
    id: u32,
    peer: u32,
    wan: &str,
    peer_wan: &str,
) -> espgate_dataplane::NodeConfig {
    espgate_control::parse_node(
        &format!(
            "node: {{ name: {name} }}\nworkers: {{ count: 1 }}\nports:\n  - {{ name: lan, role: protected, backend: mem, mac: 02:00:00:00:00:01, address: 10.1.0.{id}/24 }}\n  - {{ name: wan, role: unprotected, backend: mem, mac: 02:00:00:00:00:02, address: {wan}/24 }}\nmirror:\n  node: {id}\n  peer: {peer}\n  key: 0x000102030405060708090a0b0c0d0e0f\n  port: {{ name: mirror, backend: mem, mac: 02:00:00:00:00:03 }}\n  peer_addresses: [{peer_wan}]\n"
        ),
        &format!("{name}.yaml"),
        Path::new("."),
    )
    .unwrap()
}

/// What the host sends both nodes is the daemon's YAML as it came, with
/// `home_by_address`: each node gives an SA without a home (absent, or
/// null: reader27's find 1, where both nodes ran such an SA as their own)
/// the node holding its local tunnel address, and both agree on it. The
/// key reaches them as written, leading zero bytes too (reader27's find
/// 11: a rewrite of the YAML read an all-zero key as the number 0).
#[test]
fn both_nodes_give_each_sa_the_home_holding_its_local_tunnel_address() {
    let dir = tmp();
    let f = pair(dir.path());
    let a = FakeNode::start(&dir.path().join("a.sock"), ok());
    let _b = FakeNode::start(&dir.path().join("b.sock"), ok());
    let nodes = [
        node_config("a", 1, 2, "192.0.2.1", "192.0.2.2"),
        node_config("b", 2, 1, "192.0.2.2", "192.0.2.1"),
    ];
    let zero_key = |y: String| {
        y.replace(
            "key: 0x00112233445566778899aabbccddeeff01020304",
            "key: 0x0000000000000000000000000000000000000000",
        )
    };
    for (yaml, home) in [
        (
            plugin_sa(0xc000_0001, "outbound", "192.0.2.1", "198.51.100.1"),
            1,
        ),
        (
            plugin_sa(0xc000_0002, "inbound", "198.51.100.1", "192.0.2.1"),
            1,
        ),
        (
            plugin_sa(0xc000_0003, "outbound", "192.0.2.2", "198.51.100.1"),
            2,
        ),
        (
            plugin_sa(0xc000_0004, "inbound", "198.51.100.1", "192.0.2.2"),
            2,
        ),
        (
            plugin_sa(0xc000_0005, "inbound", "198.51.100.1", "192.0.2.2")
                .replace("esn:", "home: 1, esn:"),
            1,
        ),
        (
            plugin_sa(0xc000_0006, "outbound", "192.0.2.1", "198.51.100.1")
                .replace("esn:", "home: ~, esn:"),
            1,
        ),
        (
            zero_key(plugin_sa(
                0xc000_0007,
                "outbound",
                "192.0.2.2",
                "198.51.100.1",
            )),
            2,
        ),
    ] {
        assert_eq!(ask_fanout(&f, &sa_add(&yaml))["ok"], true);
        let sent = a.ops().last().unwrap().clone();
        assert_eq!(sent["yaml"], yaml.as_str(), "sent as it came");
        assert_eq!(sent["home_by_address"], true);
        for node in &nodes {
            let mut update =
                espgate_control::parse_sa_update(&yaml, "sent", Path::new("."), node).unwrap();
            update.home_by_address(node).unwrap();
            assert_eq!(update.sas[0].home, Some(home), "{} reads {yaml}", node.name);
            assert_eq!(
                node.is_home(&update.sas[0]),
                node.mirror.as_ref().unwrap().protocol.node == home
            );
            assert_eq!(update.sas[0].sa.key.len(), 20);
        }
    }
    let mut update = espgate_control::parse_sa_update(
        &plugin_sa(0xc000_0008, "outbound", "192.0.2.9", "198.51.100.1"),
        "sent",
        Path::new("."),
        &nodes[0],
    )
    .unwrap();
    let e = update.home_by_address(&nodes[0]).unwrap_err();
    assert!(
        e.contains("its local tunnel address 192.0.2.9 is neither this node's (192.0.2.1) nor one of its peer's ([192.0.2.2])"),
        "{e}"
    );
}

/// Both nodes get the SA; one that refuses it makes the request fail and
/// the other's copy is deleted again.
#[test]
fn an_sa_one_node_refuses_is_undone_on_the_other() {
    let dir = tmp();
    let f = pair(dir.path());
    let a = FakeNode::start(&dir.path().join("a.sock"), ok());
    let b = FakeNode::start(
        &dir.path().join("b.sock"),
        Arc::new(|r: &Value| {
            if r["op"] == "sa_add" {
                json!({ "ok": false, "error": "sas[0].spi: 0xc0000001 is in use" })
            } else {
                json!({ "ok": true })
            }
        }),
    );
    let answer = ask_fanout(
        &f,
        &sa_add(&plugin_sa(
            0xc000_0001,
            "inbound",
            "198.51.100.1",
            "192.0.2.1",
        )),
    );
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("b: sas[0].spi"),
        "{answer}"
    );
    let ops: Vec<Value> = a.ops().into_iter().map(|r| r["op"].clone()).collect();
    assert_eq!(ops, [json!("sa_add"), json!("sa_del")], "a's copy undone");
    let undo = &a.ops()[1];
    assert_eq!(
        (undo["spi"].as_u64(), undo["direction"].as_str()),
        (Some(0xc000_0001), Some("inbound"))
    );
    assert_eq!(b.ops().len(), 1);
    // Both carry the next one out: one answer, both got it.
    let b_ok = FakeNode::start(&dir.path().join("c.sock"), ok());
    let f = up(Fanout::new(&[
        managed(dir.path(), "a"),
        managed(dir.path(), "c"),
    ]));
    let answer = ask_fanout(
        &f,
        &sa_add(&plugin_sa(
            0xc000_0002,
            "outbound",
            "192.0.2.2",
            "198.51.100.1",
        )),
    );
    assert_eq!(answer["ok"], true, "{answer}");
    for node in [&a, &b_ok] {
        let sent = node.ops().last().unwrap()["yaml"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(sent.contains("0xc0000002"), "{sent}");
    }
}

/// A node that does not answer misses the change; the request is carried
/// out on the other. When it answers again (same life) it gets what it
/// missed, in order, before anything new; a node configured in a new life
/// (it got its peer's SAs) gets none of it. A change neither node
/// answered fails and is not kept, but a deletion is kept for them.
#[test]
fn a_node_that_missed_changes_gets_them_in_order_unless_it_was_configured_since() {
    let dir = tmp();
    let f = pair(dir.path());
    let a = FakeNode::start(&dir.path().join("a.sock"), ok());
    let first = sa_add(&plugin_sa(
        0xc000_0001,
        "inbound",
        "198.51.100.1",
        "192.0.2.2",
    ));
    assert_eq!(ask_fanout(&f, &first)["ok"], true);
    let rules = json!({ "op": "spd_put", "yaml": "spd: []" }).to_string();
    assert_eq!(ask_fanout(&f, &rules)["ok"], true);
    assert_eq!(a.ops().len(), 2);
    // b comes up: its poll catches it up, in order.
    let b = FakeNode::start(&dir.path().join("b.sock"), ok());
    f.catch_up(1);
    let ops: Vec<Value> = b.ops().into_iter().map(|r| r["op"].clone()).collect();
    assert_eq!(ops, [json!("sa_add"), json!("spd_put")]);
    assert_eq!(b.ops()[0]["home_by_address"], true);
    f.catch_up(1);
    assert_eq!(b.ops().len(), 2, "sent once");
    // Missed again, then configured in a new life: nothing replayed.
    let f = pair(dir.path());
    std::fs::remove_file(dir.path().join("b.sock")).unwrap();
    assert_eq!(ask_fanout(&f, &rules)["ok"], true);
    f.hold().configured(1);
    let b2 = FakeNode::start(&dir.path().join("b.sock"), ok());
    f.catch_up(1);
    assert!(b2.ops().is_empty(), "{:?}", b2.ops());
    // Neither answers: a change fails and is not kept; a deletion is.
    std::fs::remove_file(dir.path().join("a.sock")).unwrap();
    std::fs::remove_file(dir.path().join("b.sock")).unwrap();
    let answer = ask_fanout(&f, &rules);
    assert_eq!(answer["ok"], false);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("neither node of the pair answered"),
        "{answer}"
    );
    let del = json!({ "op": "sa_del", "spi": 7, "direction": "outbound" }).to_string();
    assert_eq!(ask_fanout(&f, &del)["ok"], false);
    let b3 = FakeNode::start(&dir.path().join("b.sock"), ok());
    f.catch_up(1);
    let ops: Vec<Value> = b3.ops().into_iter().map(|r| r["op"].clone()).collect();
    assert_eq!(ops, [json!("sa_del")], "only the deletion was kept");
}

/// An SPI is drawn on one node and reserved on the other; one the other
/// has is drawn again.
#[test]
fn an_spi_is_drawn_on_one_node_and_reserved_on_the_other() {
    let dir = tmp();
    let f = pair(dir.path());
    let next = Arc::new(Mutex::new(0xc000_0010u32));
    let drawn = next.clone();
    let a = FakeNode::start(
        &dir.path().join("a.sock"),
        Arc::new(move |_| {
            let mut n = lock(&drawn);
            *n += 1;
            json!({ "ok": true, "spi": *n })
        }),
    );
    let b = FakeNode::start(
        &dir.path().join("b.sock"),
        Arc::new(|r: &Value| {
            if r["spi"] == 0xc000_0011u32 {
                json!({ "ok": false, "error": "inbound SPI 0xc0000011 is in use or handed out already" })
            } else {
                json!({ "ok": true, "spi": r["spi"] })
            }
        }),
    );
    let answer = ask_fanout(&f, r#"{"op":"spi_alloc"}"#);
    assert_eq!(answer["spi"], 0xc000_0012u32, "{answer}");
    assert_eq!(a.ops().len(), 2, "drawn twice");
    let reserved: Vec<Value> = b.ops().into_iter().map(|r| r["spi"].clone()).collect();
    assert_eq!(reserved, [json!(0xc000_0011u32), json!(0xc000_0012u32)]);
}

/// An SA's counters are the larger of the two nodes'.
#[test]
fn an_sas_counters_are_the_larger_of_the_two() {
    let dir = tmp();
    let f = pair(dir.path());
    let _a = FakeNode::start(
        &dir.path().join("a.sock"),
        Arc::new(|_| json!({ "ok": true, "packets": 10, "bytes": 900 })),
    );
    let _b = FakeNode::start(
        &dir.path().join("b.sock"),
        Arc::new(|_| json!({ "ok": true, "packets": 12, "bytes": 800 })),
    );
    let answer = ask_fanout(&f, r#"{"op":"sa_query","spi":5,"direction":"inbound"}"#);
    assert_eq!(
        (answer["packets"].as_u64(), answer["bytes"].as_u64()),
        (Some(12), Some(900)),
        "{answer}"
    );
}

/// Each SA event reaches the watchers once though both nodes tell it (a
/// standby copy ages with its home), and again for a new SA with the same
/// SPI after the old one was deleted; other events pass, named by node.
#[test]
fn each_sa_event_is_told_once() {
    let dir = tmp();
    let f = pair(dir.path());
    let _a = FakeNode::start(&dir.path().join("a.sock"), ok());
    let _b = FakeNode::start(&dir.path().join("b.sock"), ok());
    let (back, events) = channel();
    f.handle_request(Request::Watch {}, back);
    assert_eq!(events.recv().unwrap()["ok"], true);
    let soft = r#"{"event":"sa","t":1,"spi":7,"direction":"outbound","kind":"soft_lifetime"}"#;
    let hard = r#"{"event":"sa","t":2,"spi":7,"direction":"outbound","kind":"hard_lifetime"}"#;
    f.handle_event(0, soft);
    f.handle_event(1, soft);
    f.handle_event(1, hard);
    f.handle_event(0, hard);
    f.handle_event(1, r#"{"event":"node","t":3,"line":"took_over"}"#);
    let got: Vec<Value> = events.try_iter().collect();
    let kinds: Vec<&str> = got
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["soft_lifetime", "hard_lifetime", ""], "{got:?}");
    assert_eq!(got[2]["line"], "b: took_over");
    let del = json!({ "op": "sa_del", "spi": 7, "direction": "outbound" }).to_string();
    assert_eq!(ask_fanout(&f, &del)["ok"], true);
    f.handle_event(1, soft);
    assert_eq!(events.try_iter().count(), 1, "a new SA's event is told");
}

/// What is not an IKE daemon's request is refused, naming where to ask.
#[test]
fn other_requests_are_refused_naming_the_nodes_sockets() {
    let dir = tmp();
    let f = pair(dir.path());
    let answer = ask_fanout(&f, r#"{"op":"take_over"}"#);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("ask a node's own socket"),
        "{answer}"
    );
}

/// A node the host does not count up (failed; or fenced and back in the
/// same life, while its peer may run its SAs) is not asked, and gets what
/// it missed only once counted up again.
#[test]
fn a_node_not_counted_up_is_asked_nothing_until_it_is() {
    let dir = tmp();
    let f = pair(dir.path());
    let a = FakeNode::start(&dir.path().join("a.sock"), ok());
    let b = FakeNode::start(&dir.path().join("b.sock"), ok());
    f.set_up(0, false);
    let add = sa_add(&plugin_sa(
        0xc000_0001,
        "outbound",
        "192.0.2.1",
        "198.51.100.1",
    ));
    assert_eq!(ask_fanout(&f, &add)["ok"], true);
    assert_eq!(ask_fanout(&f, r#"{"op":"spi_alloc"}"#)["ok"], true);
    assert_eq!(
        ask_fanout(&f, r#"{"op":"sa_query","spi":1,"direction":"inbound"}"#)["ok"],
        true
    );
    f.catch_up(0);
    assert!(a.ops().is_empty(), "{:?}", a.ops());
    assert_eq!(b.ops().len(), 3);
    f.set_up(0, true);
    f.catch_up(0);
    let ops: Vec<Value> = a.ops().into_iter().map(|r| r["op"].clone()).collect();
    assert_eq!(ops, [json!("sa_add")]);
}

/// Found by the chaos harness: a poll's catch-up waited for the book
/// while a request was being fanned out; a node slow to answer the request
/// (a new SA's first durable marks, or a node frozen: up to the control
/// socket's 5 s timeout) held the other node's polls up, and the host
/// failed a node that ran. The catch-up does not wait now.
#[test]
fn a_catch_up_does_not_wait_for_a_request_in_progress() {
    let dir = tmp();
    let f = pair(dir.path());
    let held = f.hold();
    let (done, returned) = channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            f.catch_up(0);
            let _ = done.send(());
        });
        // Without the fix the catch-up waits for `held`, dropped only
        // after this: it never returns (a deadlock, not a slow answer).
        let r = returned.recv_timeout(Duration::from_secs(10));
        drop(held);
        assert!(r.is_ok(), "the catch-up waited for the request in progress");
    });
}

// ---- reader27 ----

fn ops_of(node: &FakeNode) -> Vec<String> {
    node.ops()
        .into_iter()
        .map(|r| r["op"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Reader27 find 3 (failed before): a request a node missed and then
/// refused for a passing reason ("the workers did not answer in time",
/// its connections all taken) was dropped for good, so the node never had
/// the SA the pair was said to run. A node says such a refusal passes
/// (`"retry": true`), and the request is sent again at its next poll; one
/// it refuses otherwise is dropped (the host says so).
#[test]
fn reader27_a_missed_sa_refused_for_a_passing_reason_is_sent_again() {
    let dir = tmp();
    let f = pair(dir.path());
    let _a = FakeNode::start(&dir.path().join("a.sock"), ok());
    let add = sa_add(&plugin_sa(
        0xc000_0001,
        "outbound",
        "192.0.2.1",
        "198.51.100.1",
    ));
    assert_eq!(ask_fanout(&f, &add)["ok"], true);
    let busy = Arc::new(Mutex::new(3));
    let b = FakeNode::start(
        &dir.path().join("b.sock"),
        Arc::new(move |r: &Value| {
            let mut busy = lock(&busy);
            if r["op"] == "sa_add" && *busy > 0 {
                *busy -= 1;
                espgate_control::answer::passing_refusal("the workers did not answer in time")
            } else {
                json!({ "ok": true, "sas": 1, "rules": 0 })
            }
        }),
    );
    for _ in 0..5 {
        f.catch_up(1);
    }
    assert_eq!(
        ops_of(&b),
        ["sa_add"; 4],
        "sent again after each passing refusal, until carried out"
    );
    // A request refused for good is dropped at once.
    let dir = tmp();
    let f = pair(dir.path());
    let _a = FakeNode::start(&dir.path().join("a.sock"), ok());
    assert_eq!(ask_fanout(&f, &add)["ok"], true);
    let never = FakeNode::start(
        &dir.path().join("b.sock"),
        Arc::new(
            |_| json!({ "ok": false, "error": "sas[0].spi: duplicate outbound spi 0xc0000001" }),
        ),
    );
    for _ in 0..3 {
        f.catch_up(1);
    }
    assert_eq!(never.ops().len(), 1);
}

/// Reader27 find 4 (failed before): no answer is not "not carried out".
/// A node whose answer to an `sa_add` never came (frozen past the host's
/// timeout, or slow) may have added the SA; when the other node refused
/// it, charon is told the add failed and never deletes it, so the host
/// deletes it on that node when it answers again.
#[test]
fn reader27_an_sa_add_refused_by_one_node_is_undone_on_the_node_whose_answer_was_lost() {
    let dir = tmp();
    let f = pair(dir.path());
    let _a = FakeNode::start(
        &dir.path().join("a.sock"),
        Arc::new(|r: &Value| {
            if r["op"] == "sa_add" {
                json!({ "ok": false, "error": "sas[0].replay_window: 100000 is more than 65536" })
            } else {
                json!({ "ok": true })
            }
        }),
    );
    let answered = Arc::new(AtomicBool::new(false));
    let b = FakeNode::start_mute(
        &dir.path().join("b.sock"),
        Arc::new(move |r: &Value| {
            if r["op"] == "sa_add" && !answered.swap(true, Ordering::SeqCst) {
                None
            } else {
                Some(json!({ "ok": true }))
            }
        }),
    );
    let add = sa_add(&plugin_sa(
        0xc000_0001,
        "inbound",
        "198.51.100.1",
        "192.0.2.2",
    ));
    let answer = ask_fanout(&f, &add);
    assert_eq!(answer["ok"], false, "{answer}");
    f.catch_up(1);
    assert_eq!(
        ops_of(&b),
        ["sa_add", "sa_del"],
        "b's copy deleted when it answers"
    );
}

/// Reader27 find 5 (failed before): the undo of an `sa_add` one node
/// refused was sent once; when it did not reach the node that carried the
/// SA out, the host only said so, and the SA stayed there for good. It is
/// kept and sent when the node answers again.
#[test]
fn reader27_an_undo_that_did_not_reach_its_node_is_sent_again() {
    let dir = tmp();
    let f = pair(dir.path());
    let first_del = Arc::new(AtomicBool::new(true));
    let a = FakeNode::start_mute(
        &dir.path().join("a.sock"),
        Arc::new(move |r: &Value| {
            if r["op"] == "sa_del" && first_del.swap(false, Ordering::SeqCst) {
                None
            } else {
                Some(json!({ "ok": true, "sas": 1, "rules": 0 }))
            }
        }),
    );
    let _b = FakeNode::start(
        &dir.path().join("b.sock"),
        Arc::new(|r: &Value| {
            if r["op"] == "sa_add" {
                json!({ "ok": false, "error": "sas[0].spi: duplicate outbound spi 0xc0000001" })
            } else {
                json!({ "ok": true })
            }
        }),
    );
    let add = sa_add(&plugin_sa(
        0xc000_0001,
        "outbound",
        "192.0.2.1",
        "198.51.100.1",
    ));
    assert_eq!(ask_fanout(&f, &add)["ok"], false);
    f.catch_up(0);
    assert_eq!(ops_of(&a), ["sa_add", "sa_del", "sa_del"]);
}

/// Reader27 find 6 (failed before): charon's `sa_del` of an SA only one
/// node has (the other never got it) deleted it there, yet the host
/// answered a failure and, returning early, kept the SA's told events: a
/// later SA with the same SPI and direction had its lifetime events
/// swallowed. The deletion is carried out, and the events are forgotten.
#[test]
fn reader27_an_sa_del_of_an_sa_one_node_lacks_ends_its_events() {
    let dir = tmp();
    let f = pair(dir.path());
    let _a = FakeNode::start(&dir.path().join("a.sock"), ok());
    let _b = FakeNode::start(
        &dir.path().join("b.sock"),
        Arc::new(|r: &Value| {
            if r["op"] == "sa_del" {
                json!({ "ok": false, "error": "no outbound SA 0x7" })
            } else {
                json!({ "ok": true })
            }
        }),
    );
    let (back, events) = channel();
    f.handle_request(Request::Watch {}, back);
    assert_eq!(events.recv().unwrap()["ok"], true);
    let soft = r#"{"event":"sa","t":1,"spi":7,"direction":"outbound","kind":"soft_lifetime"}"#;
    f.handle_event(0, soft);
    assert_eq!(events.try_iter().count(), 1);
    let del = json!({ "op": "sa_del", "spi": 7, "direction": "outbound" }).to_string();
    let answer = ask_fanout(&f, &del);
    assert_eq!(answer["ok"], true, "{answer}");
    f.handle_event(1, soft);
    assert_eq!(
        events.try_iter().count(),
        1,
        "the next SA 7's event is told"
    );
}

/// Reader27 find 9 (failed before): a node whose control socket hangs
/// (it runs, so it is not failed over) was asked twice by one `spi_alloc`
/// (a draw, then the reservation), the control socket's timeout each
/// time: past the plugin's own timeout, so every CHILD_SA failed while it
/// hung. It is asked once.
#[test]
fn reader27_a_hung_node_is_asked_once_by_an_spi_alloc() {
    let dir = tmp();
    let f = pair(dir.path());
    let listener = UnixListener::bind(dir.path().join("a.sock")).unwrap();
    let asked = Arc::new(Mutex::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            *lock(&count) += 1;
            // Read, never answered.
            held.push(conn);
        }
    });
    let _b = FakeNode::start(&dir.path().join("b.sock"), ok());
    let answer = ask_fanout(&f, r#"{"op":"spi_alloc"}"#);
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(*lock(&asked), 1, "the hung node was asked again");
}

/// Found by `ike-scale --pair` with state directories: both nodes busy
/// with the same `sa_add` (a new SA's marks made durable) left the host's
/// polls unanswered, and the host failed, fenced and took over nodes that
/// ran, until their SAs differed. A node carrying out a request of the
/// host's, having answered the host lately, is told busy (its unanswered
/// polls do not count); one that stopped answering (reader28's find 1:
/// frozen, the daemon's requests waiting on it one after another) is not.
#[test]
fn a_node_carrying_out_a_request_is_busy_while_it_answers() {
    let dir = tmp();
    let f = pair(dir.path());
    let _a = FakeNode::start(
        &dir.path().join("a.sock"),
        Arc::new(|r: &Value| {
            if r["op"] == "sa_add" {
                std::thread::sleep(Duration::from_millis(300));
            }
            json!({ "ok": true, "sas": 1, "rules": 0 })
        }),
    );
    let _b = FakeNode::start(&dir.path().join("b.sock"), ok());
    let long = Duration::from_secs(60);
    assert!(!f.busy_answering(0, long));
    let add = sa_add(&plugin_sa(
        0xc000_0001,
        "outbound",
        "192.0.2.1",
        "198.51.100.1",
    ));
    std::thread::scope(|s| {
        f.heard_from(0);
        let request = s.spawn(|| ask_fanout(&f, &add));
        let mut seen = false;
        for _ in 0..500 {
            if f.busy_answering(0, long) {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(seen, "a was never busy");
        assert_eq!(request.join().unwrap()["ok"], true);
    });
    assert!(!f.busy_answering(0, long) && !f.busy_answering(1, long));
}

/// Reader28 find 4 (failed before; promise: "no tunnel lost"; the SA goes when its home
/// fails). A request a node missed was dropped after three refusals,
/// and every request fanned out counted one (change() catches
/// the node up first): a burst of three IKE requests (one CHILD_SA's
/// `spd_put`s and `sa_add`, milliseconds apart) while the node refuses
/// for a passing reason ("the workers did not answer in time", its 16
/// control connections taken by stale polls just after a thaw) drops the
/// SA it missed within milliseconds, not three polls. The node then
/// never has the SA its peer runs as home, though the pair said it was
/// installed: when the home fails, the survivor takes over without it and
/// the tunnel is gone until charon's next rekey (hours).
///
/// Steps: b does not answer while charon adds SA 0xc0000001 (home a, on
/// a only: kept for b); b answers again, busy for a moment: it refuses
/// the first three requests it is sent; charon sends three `spd_put`s in
/// a row; b's moment passes and it is caught up at its polls. b never
/// gets the SA. The fix: the node says its refusal passes (`"retry"`),
/// and such a request is kept however often.
#[test]
fn reader28_a_missed_sa_survives_a_burst_of_passing_refusals() {
    let dir = tmp();
    let f = pair(dir.path());
    let _a = FakeNode::start(&dir.path().join("a.sock"), ok());
    let add = sa_add(&plugin_sa(
        0xc000_0001,
        "outbound",
        "192.0.2.1",
        "198.51.100.1",
    ));
    assert_eq!(ask_fanout(&f, &add)["ok"], true, "carried out on a");
    let refusals = Arc::new(Mutex::new(0u32));
    let b = FakeNode::start(
        &dir.path().join("b.sock"),
        Arc::new(move |_r: &Value| {
            let mut n = lock(&refusals);
            if *n < 3 {
                *n += 1;
                espgate_control::answer::passing_refusal("the workers did not answer in time")
            } else {
                json!({ "ok": true, "sas": 1, "rules": 0 })
            }
        }),
    );
    for _ in 0..3 {
        // Each carried out on a; b's answer does not matter here.
        let _ = ask_fanout(&f, r#"{"op":"spd_put","yaml":"spd: []"}"#);
    }
    // b's busy moment is over: its next polls catch it up.
    for _ in 0..5 {
        f.catch_up(1);
    }
    let added_on_b = b.ops().iter().filter(|r| r["op"] == "sa_add").count();
    assert!(
        added_on_b > 3,
        "b refused the SA it missed three times within one burst of requests, and it was dropped: b never got it ({:?})",
        ops_of(&b)
    );
}

/// Reader28 find 6 (failed before; promise: "no tunnel lost"; the standby copy of a
/// running SA is deleted, so the SA is gone when its home fails). The
/// undo of a half-refused `sa_add` is queued for a node whose answer did
/// not come, on the guess that it may have added the SA. But an `sa_add`
/// is refused precisely when a node already has an SA with that SPI and
/// direction, and the node that did not answer has that same SA: the
/// queued `sa_del` (SPI and direction only) deletes the pair's live SA
/// there. Outbound SPIs are chosen by the far ends, so two far ends
/// picking the same outbound SPI is a birthday collision among the
/// CHILD_SAs of all peers (or charon sends the same `sa_add` again after
/// its first answer was slow).
///
/// Steps: SA 0xc0000001 outbound to far end P1, home a, on both nodes;
/// far end P2's CHILD_SA gets outbound SPI 0xc0000001 too; a refuses it
/// (duplicate outbound SPI), b's answer does not come (it refused it as
/// well, but slowly); the host queues `sa_del 0xc0000001 outbound` for b;
/// at b's next poll b deletes P1's SA. When a fails, b takes over
/// without it. The fix: no undo for a node that did not answer when the
/// other refused the SPI as one it has.
#[test]
fn reader28_an_undo_queued_for_a_silent_node_spares_the_sa_it_already_had() {
    let dir = tmp();
    let f = pair(dir.path());
    // A node as it answers: SAs by (SPI, direction); a duplicate refused.
    type Sas = Arc<Mutex<Vec<(u64, String)>>>;
    fn stateful(mute_on_second_add: bool) -> (Sas, Arc<MuteReply>) {
        let sas = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
        let state = sas.clone();
        let adds = Arc::new(Mutex::new(0u32));
        let reply: Arc<MuteReply> = Arc::new(move |r: &Value| {
            let mut sas = lock(&state);
            match r["op"].as_str() {
                Some("sa_add") => {
                    let mut n = lock(&adds);
                    *n += 1;
                    let (spi, dir) = (0xc000_0001u64, "outbound".to_string());
                    let answer = if sas.contains(&(spi, dir.clone())) {
                        json!({ "ok": false, "error": "sa 0xc0000001: duplicate outbound SPI" })
                    } else {
                        sas.push((spi, dir));
                        json!({ "ok": true, "sas": 1, "rules": 0 })
                    };
                    if mute_on_second_add && *n == 2 {
                        None
                    } else {
                        Some(answer)
                    }
                }
                Some("sa_del") => {
                    let key = (
                        r["spi"].as_u64().unwrap(),
                        r["direction"].as_str().unwrap().to_string(),
                    );
                    let before = sas.len();
                    sas.retain(|s| *s != key);
                    Some(if sas.len() < before {
                        json!({ "ok": true })
                    } else {
                        json!({ "ok": false, "error": "no outbound SA 0xc0000001" })
                    })
                }
                _ => Some(json!({ "ok": true })),
            }
        });
        (sas, reply)
    }
    let (_a_sas, a_reply) = stateful(false);
    let (b_sas, b_reply) = stateful(true);
    let _a = FakeNode::start_mute(&dir.path().join("a.sock"), a_reply);
    let _b = FakeNode::start_mute(&dir.path().join("b.sock"), b_reply);
    let p1 = sa_add(&plugin_sa(
        0xc000_0001,
        "outbound",
        "192.0.2.1",
        "198.51.100.1",
    ));
    assert_eq!(ask_fanout(&f, &p1)["ok"], true, "P1's SA on both");
    let p2 = sa_add(&plugin_sa(
        0xc000_0001,
        "outbound",
        "192.0.2.1",
        "203.0.113.1",
    ));
    assert_eq!(ask_fanout(&f, &p2)["ok"], false, "P2's refused");
    // b's next polls.
    for _ in 0..4 {
        f.catch_up(1);
    }
    assert_eq!(
        lock(&b_sas).len(),
        1,
        "the undo of P2's refused SA deleted P1's live SA 0xc0000001 on b (it was the standby copy)"
    );
}
