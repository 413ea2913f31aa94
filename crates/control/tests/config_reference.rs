//! docs/configuration.md cannot drift from the parsers: for every section
//! it documents, the keys the code accepts (asked of the parser itself: an
//! unknown key is refused with the list of the keys it expected) must be
//! exactly the keys the page lists, and every section of the page must be
//! one the test knows how to ask about.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use espgate_control::{load_host_file, parse_node, parse_sa_update};

const BOGUS: &str = "zz_not_a_key";

/// The documented keys of each `### \`section\`` of the page.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("### `") {
            let name = h.trim_end_matches('`').to_string();
            out.entry(name.clone()).or_default();
            section = Some(name);
        } else if let (Some(s), Some(row)) = (&section, line.strip_prefix("| `")) {
            let key = row.split('`').next().unwrap().to_string();
            out.get_mut(s).unwrap().insert(key);
        }
    }
    out
}

/// The keys named in a serde "unknown field" error.
fn expected_keys(error: &str) -> BTreeSet<String> {
    let marker = format!("unknown field `{BOGUS}`");
    let at = error
        .find(&marker)
        .unwrap_or_else(|| panic!("no unknown-field error: {error}"));
    let rest = &error[at + marker.len()..];
    if rest.contains("there are no fields") {
        return BTreeSet::new();
    }
    rest.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

const NODE: &str = "node: { name: a }
ports:
  - { name: lan, role: protected, backend: pcap, mac: 02:00:00:00:00:01, address: 10.0.0.1/24 }
  - { name: wan, role: unprotected, backend: pcap, mac: 02:00:00:00:00:02, address: 10.9.0.1/24 }
";

/// The error the parser gives for `text` (which holds the bogus key).
fn node_error(text: &str) -> String {
    parse_node(text, "t.yaml", Path::new("."))
        .map(|_| ())
        .expect_err(text)
        .to_string()
}

fn host_error(text: &str) -> String {
    // Removed when `tmp` drops, also when `expect_err` panics.
    let tmp = tempfile::Builder::new()
        .prefix("espgate-cfgref-")
        .tempdir()
        .unwrap();
    let f = tmp.path().join("host.yaml");
    std::fs::write(&f, text).unwrap();
    load_host_file(&f).map(|_| ()).expect_err(text).to_string()
}

/// How to make the code name the keys of each section.
fn accepted(section: &str) -> BTreeSet<String> {
    let b = BOGUS;
    let error = match section {
        "." => node_error(&format!("{b}: 1\n")),
        "node" => node_error(&format!("node: {{ {b}: 1 }}\n")),
        "workers" => node_error(&format!("workers: {{ {b}: 1 }}\n")),
        "ports[]" => node_error(&format!("ports: [ {{ {b}: 1 }} ]\n")),
        "sas[]" => node_error(&format!("sas: [ {{ {b}: 1 }} ]\n")),
        "sas[].tunnel" => node_error(&format!("sas: [ {{ tunnel: {{ {b}: 1 }} }} ]\n")),
        "sas[].udp_encap" => {
            // `true` or a mapping: serde names no keys for such a choice,
            // so each documented key is tried alone and must be taken.
            for key in &documented()[section] {
                let e = node_error(&format!(
                    "{NODE}sas: [ {{ udp_encap: {{ {key}: 4500 }} }} ]\n"
                ));
                assert!(!e.contains("udp_encap"), "udp_encap.{key}: {e}");
            }
            let e = node_error(&format!("{NODE}sas: [ {{ udp_encap: {{ {b}: 1 }} }} ]\n"));
            assert!(
                e.contains("udp_encap"),
                "an unknown udp_encap key passed: {e}"
            );
            return documented()[section].clone();
        }
        "sas[].lifetime" => node_error(&format!("sas: [ {{ lifetime: {{ {b}: 1 }} }} ]\n")),
        "sas[].mirror" => node_error(&format!("sas: [ {{ mirror: {{ {b}: 1 }} }} ]\n")),
        "spd[]" => node_error(&format!("spd: [ {{ {b}: 1 }} ]\n")),
        "neighbours[]" => node_error(&format!("neighbours: [ {{ {b}: 1 }} ]\n")),
        "dpdk" => node_error(&format!("dpdk: {{ {b}: 1 }}\n")),
        "mirror" => node_error(&format!("mirror: {{ {b}: 1 }}\n")),
        "state" => node_error(&format!("state: {{ {b}: 1 }}\n")),
        "punt" => node_error(&format!("punt: {{ {b}: 1 }}\n")),
        "mirror.port" => node_error(&format!("mirror: {{ port: {{ {b}: 1 }} }}\n")),
        "host-file: ." => host_error(&format!("{b}: 1\n")),
        "host-file: host" => host_error(&format!("host: {{ {b}: 1 }}\n")),
        "host-file: nodes[]" => host_error(&format!("nodes: [ {{ {b}: 1 }} ]\n")),
        "sa-update: ." => {
            let node = parse_node(NODE, "node.yaml", Path::new(".")).unwrap();
            parse_sa_update(&format!("{b}: 1\n"), "u.yaml", Path::new("."), &node)
                .map(|_| ())
                .expect_err("bogus key")
                .to_string()
        }
        other => panic!(
            "docs/configuration.md documents section {other:?}, which this test cannot check"
        ),
    };
    expected_keys(&error)
}

#[test]
fn every_documented_section_lists_exactly_the_keys_the_code_accepts() {
    let docs = documented();
    assert!(docs.len() >= 18, "sections found: {:?}", docs.keys());
    let mut drift = Vec::new();
    for (section, keys) in &docs {
        let code = accepted(section);
        let undocumented: Vec<_> = code.difference(keys).collect();
        let unknown: Vec<_> = keys.difference(&code).collect();
        if !undocumented.is_empty() || !unknown.is_empty() {
            drift.push(format!(
                "{section}: in the code, not the docs: {undocumented:?}; in the docs, not the code: {unknown:?}"
            ));
        }
    }
    assert!(
        drift.is_empty(),
        "docs/configuration.md has drifted:\n{}",
        drift.join("\n")
    );
}

#[test]
fn the_key_extraction_reads_serde_messages_of_every_shape() {
    let one = format!("x: unknown field `{BOGUS}`, expected `name` at line 1");
    let two = format!("unknown field `{BOGUS}`, expected `src` or `dst`");
    let many = format!("unknown field `{BOGUS}`, expected one of `a`, `b`, `c`");
    let none = format!("unknown field `{BOGUS}`, there are no fields");
    assert_eq!(expected_keys(&one), BTreeSet::from(["name".to_string()]));
    assert_eq!(expected_keys(&two).len(), 2);
    assert_eq!(expected_keys(&many).len(), 3);
    assert!(expected_keys(&none).is_empty());
}

/// README: `conf/node-example.yaml` uses every key of a node file. Each key
/// the parser accepts in a node-file section appears in it as `key:`, in
/// use or (for the alternatives to a key in use) commented out.
#[test]
fn the_node_example_shows_every_node_file_key() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../conf/node-example.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let shows = |key: &str| {
        let k = format!("{key}:");
        text.match_indices(&k).any(|(at, _)| {
            at == 0 || matches!(text.as_bytes()[at - 1], b' ' | b'{' | b'#' | b'\n' | b',')
        })
    };
    let mut missing = Vec::new();
    let sections = documented();
    let node_sections = sections
        .keys()
        .filter(|s| !s.starts_with("host-file") && !s.starts_with("sa-update"));
    for section in node_sections {
        for key in accepted(section) {
            if !shows(&key) {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "conf/node-example.yaml lacks {missing:?}"
    );
}
