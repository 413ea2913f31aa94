//! Whether a port's link is up: what a node watches to tell a failed
//! packet flow (a cable pulled, a switch port down, a NIC gone) from a
//! quiet one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A port's link status, read without blocking.
pub trait LinkProbe: Send {
    /// The port's name, for logs and events.
    fn name(&self) -> &str;
    /// Whether the link is up now.
    fn up(&mut self) -> bool;
    /// The neighbour on the port this probe watches, when it watches one
    /// (a tracked next hop) rather than the port's own link.
    fn next_hop(&self) -> Option<std::net::IpAddr> {
        None
    }
}

/// An AF_PACKET port's link: the kernel's carrier of its interface
/// (`/sys/class/net/<interface>/carrier`, which a veth shows too when its
/// other end goes down). An interface set down, or gone, reads as down.
#[derive(Debug, Clone)]
pub struct Carrier {
    name: String,
    path: std::path::PathBuf,
}

impl Carrier {
    /// The carrier of `interface`, for port `name`.
    pub fn of(name: &str, interface: &str) -> Self {
        Carrier {
            name: name.to_string(),
            path: std::path::Path::new("/sys/class/net")
                .join(interface)
                .join("carrier"),
        }
    }
}

impl LinkProbe for Carrier {
    fn name(&self) -> &str {
        &self.name
    }

    fn up(&mut self) -> bool {
        std::fs::read(&self.path).is_ok_and(|b| b.first() == Some(&b'1'))
    }
}

/// A link switched by hand: in-memory ports (tests, the demo), and a
/// pcap port's (always up).
#[derive(Debug, Clone)]
pub struct Switch {
    name: String,
    up: Arc<AtomicBool>,
}

impl Switch {
    /// A link of port `name`, up, and the handle that switches it.
    pub fn new(name: &str) -> (Self, Arc<AtomicBool>) {
        let up = Arc::new(AtomicBool::new(true));
        (
            Switch {
                name: name.to_string(),
                up: up.clone(),
            },
            up,
        )
    }
}

impl LinkProbe for Switch {
    fn name(&self) -> &str {
        &self.name
    }

    fn up(&mut self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_reads_as_set() {
        let (mut link, up) = Switch::new("lan");
        assert!(link.up());
        up.store(false, Ordering::Release);
        assert!(!link.up());
        assert_eq!(link.name(), "lan");
    }

    #[test]
    fn the_loopback_has_a_carrier_and_a_missing_interface_none() {
        assert!(Carrier::of("lo", "lo").up());
        assert!(!Carrier::of("x", "espgate-no-such-if").up());
    }
}
