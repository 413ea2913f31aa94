//! Packet I/O for espgate. For now: classic pcap files, which tests, the
//! `espgate esp` tool and people debugging use; the poll-mode ports
//! (in-memory, AF_PACKET, DPDK) join this crate with the node.

pub mod pcap;
