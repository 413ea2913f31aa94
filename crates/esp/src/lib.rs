//! Sans-IO ESP (RFC 4303) in tunnel mode with AES-GCM (RFC 4106).
//!
//! Pure functions of (SA state, packet): no clocks, no sockets, no threads.
//! An [`OutboundSa`] encapsulates inner IPv4/IPv6 packets in place (the
//! buffer needs headroom and tailroom, see [`espgate_wire::PacketBuf`]); a
//! [`Sad`] holds the inbound SAs by SPI and decapsulates.
//!
//! Sequence numbers are 64-bit; with ESN off only the low 32 bits are used
//! and the SA refuses to wrap (it must be rekeyed). Inbound ESN high bits are
//! inferred as in RFC 4303 Appendix A2. Lifetimes by bytes and packets raise
//! [`SaEvent`]s. UDP encapsulation (RFC 3948) is per SA.

pub mod aead;
pub mod cipher;
pub mod counters;
pub mod error;
pub mod inbound;
mod inner;
pub mod lifetime;
mod limit;
pub mod outbound;
pub mod replay;
pub mod sa;

pub use aead::{AeadAlgorithm, Backend};
pub use counters::{DropCounters, DropReason, SaCounters};
pub use error::EspError;
pub use inbound::{AtLimit, Inbound, InboundSa, Opened, Sad, SadError};
pub use lifetime::{Lifetime, SEQ_LOW_SHIFT, SaEvent, SaEventCounters};
pub use outbound::OutboundSa;
pub use sa::{Direction, SaConfig, SaError, Tunnel, UdpEncap};
