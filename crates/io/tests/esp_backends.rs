//! espgate-esp's known-answer tests (draft-mcgrew-gcm-test-01 both ways,
//! DPDK's tunnel-mode packets) and tunnel-mode round trips again, with
//! intel-ipsec-mb beside the backends compiled into espgate-esp: the C
//! library is bound here, so espgate-esp's own tests cannot reach it.
#![cfg(feature = "ipsec-mb")]

use espgate_esp::aead::Backend;

/// Every backend this process can use, intel-ipsec-mb installed first.
fn backends() -> Vec<Backend> {
    espgate_io::ipsec_mb::install().expect("intel-ipsec-mb sets up");
    let all = Backend::available();
    assert!(all.contains(&Backend::IpsecMb), "{all:?}");
    all
}

#[path = "../../esp/tests/kat.rs"]
mod kat;

#[path = "../../esp/tests/tunnel.rs"]
mod tunnel;
