//! The error every ESP operation returns: a drop reason and, where a header
//! failed to parse, what the wire layer said.

use core::fmt;

use espgate_wire::WireError;

use crate::counters::DropReason;

/// Why one packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspError {
    /// The counter it was counted under.
    pub reason: DropReason,
    /// The parse error behind it, if any.
    pub wire: Option<WireError>,
}

impl EspError {
    /// A drop without a parse error behind it.
    pub fn new(reason: DropReason) -> Self {
        EspError { reason, wire: None }
    }

    /// A drop caused by a header that did not parse: truncation is counted as
    /// [`DropReason::Truncated`], anything else as `otherwise`.
    pub fn wire(e: WireError, otherwise: DropReason) -> Self {
        let reason = match e {
            WireError::Truncated { .. } => DropReason::Truncated,
            _ => otherwise,
        };
        EspError {
            reason,
            wire: Some(e),
        }
    }
}

impl From<DropReason> for EspError {
    fn from(r: DropReason) -> Self {
        EspError::new(r)
    }
}

impl fmt::Display for EspError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.wire {
            Some(w) => write!(f, "{}: {w}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl std::error::Error for EspError {}
