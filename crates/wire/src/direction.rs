//! Which way an SA carries traffic: the one direction type of every crate
//! (an SA's configuration, the security policy's rules, the mirror's
//! records).

use core::fmt;

use crate::error::{Layer, WireError};

/// Which way an SA carries traffic, as seen by the node that runs it (for
/// a security policy rule: which way the traffic it is for goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// This node encrypts with it.
    Outbound,
    /// This node decrypts with it.
    Inbound,
}

impl Direction {
    /// Its code in a mirror record: 0 outbound, 1 inbound.
    pub(crate) fn code(self) -> u8 {
        match self {
            Direction::Outbound => 0,
            Direction::Inbound => 1,
        }
    }

    /// The direction of a mirror record's code.
    pub(crate) fn from_code(c: u8) -> crate::Result<Self> {
        match c {
            0 => Ok(Direction::Outbound),
            1 => Ok(Direction::Inbound),
            _ => Err(WireError::Malformed {
                layer: Layer::Mirror,
                what: "SA direction is neither 0 nor 1",
            }),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        })
    }
}
