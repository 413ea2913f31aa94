//! The definition of a security association, as configuration gives it.

use core::fmt;

pub use espgate_wire::Direction;
use espgate_wire::ip::IpAddr;

use crate::aead::{AeadAlgorithm, Backend, KeyError};
use crate::cipher::{EspCipher, SALT_LEN};
use crate::lifetime::Lifetime;
use crate::replay::{MAX_WINDOW, MIN_WINDOW};

/// The UDP port of ESP in UDP (RFC 3948).
pub const NATT_PORT: u16 = 4500;

/// The outer addresses of a tunnel-mode SA, as they appear on its packets:
/// for an outbound SA `src` is this node; for an inbound one `dst` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address.
    pub dst: IpAddr,
}

/// UDP encapsulation (RFC 3948) of an SA's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEncap {
    /// Source port of the SA's packets.
    pub src_port: u16,
    /// Destination port of the SA's packets.
    pub dst_port: u16,
}

impl Default for UdpEncap {
    fn default() -> Self {
        UdpEncap {
            src_port: NATT_PORT,
            dst_port: NATT_PORT,
        }
    }
}

/// Everything that defines one SA.
#[derive(Clone, PartialEq, Eq)]
pub struct SaConfig {
    /// Security Parameters Index (256 and up).
    pub spi: u32,
    /// Outbound or inbound.
    pub direction: Direction,
    /// Tunnel endpoints (tunnel mode; the only mode for now).
    pub tunnel: Tunnel,
    /// The AEAD transform.
    pub algorithm: AeadAlgorithm,
    /// AES key followed by the 4-byte salt.
    pub key: Vec<u8>,
    /// Extended (64-bit) sequence numbers.
    pub esn: bool,
    /// Anti-replay window size in packets (inbound).
    pub replay_window: u32,
    /// Lifetime limits.
    pub lifetime: Lifetime,
    /// UDP encapsulation, if the peer is behind NAT or speaks only ESP in UDP.
    pub udp_encap: Option<UdpEncap>,
    /// Outbound: the last sequence number already used (the next packet gets
    /// one more). Inbound: the replay window's top. Normally 0.
    pub initial_seq: u64,
    /// TTL (IPv4) or hop limit (IPv6) of outer headers.
    pub outer_ttl: u8,
    /// Pad the encrypted payload to a multiple of this: 4 (the least ESP
    /// allows) or 16 (whole AES blocks: ring seals them 25-30 ns faster per
    /// small packet here, for up to 12 bytes more on the wire).
    pub pad_to: u8,
}

impl fmt::Debug for SaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaConfig")
            .field("spi", &format_args!("{:#x}", self.spi))
            .field("direction", &self.direction)
            .field("tunnel", &self.tunnel)
            .field("algorithm", &self.algorithm)
            .field("key", &"<secret>")
            .field("esn", &self.esn)
            .field("replay_window", &self.replay_window)
            .field("lifetime", &self.lifetime)
            .field("udp_encap", &self.udp_encap)
            .field("initial_seq", &self.initial_seq)
            .field("outer_ttl", &self.outer_ttl)
            .field("pad_to", &self.pad_to)
            .finish()
    }
}

/// Why an SA definition cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    /// SPIs 0..=255 are reserved.
    #[error("spi {0:#x} is reserved (0..=255)")]
    ReservedSpi(u32),
    /// The key material does not fit the algorithm.
    #[error("{0} (the key material is the AES key followed by the 4-byte salt)")]
    Key(#[from] KeyError),
    /// Outer source and destination are of different IP versions.
    #[error("tunnel src {src} and dst {dst} are of different IP versions")]
    MixedTunnel {
        /// Source.
        src: IpAddr,
        /// Destination.
        dst: IpAddr,
    },
    /// The replay window is outside the supported sizes.
    #[error("replay_window {0} is outside {MIN_WINDOW}..={MAX_WINDOW}")]
    Window(u32),
    /// Without ESN the sequence number has 32 bits.
    #[error("initial_seq {0} needs ESN (it exceeds 32 bits)")]
    InitialSeq(u64),
    /// A soft limit above its hard limit would never fire.
    #[error("lifetime: soft limit {soft} is above hard limit {hard}")]
    Lifetime {
        /// Soft limit.
        soft: u64,
        /// Hard limit.
        hard: u64,
    },
    /// An outer TTL of zero would be dropped by the first router.
    #[error("outer_ttl must be at least 1")]
    Ttl,
    /// Padding alignment other than 4 or 16.
    #[error("pad_to {0} is neither 4 nor 16")]
    PadTo(u8),
}

/// The key material is wiped when a definition is dropped (every copy:
/// the configuration's, the control request's, the rekey's).
impl Drop for SaConfig {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl SaConfig {
    /// A tunnel-mode SA with the defaults: no ESN, a 1024-packet window, no
    /// lifetime limits, no UDP encapsulation, TTL 64, padding to 16 bytes.
    pub fn new(
        spi: u32,
        direction: Direction,
        tunnel: Tunnel,
        algorithm: AeadAlgorithm,
        key: Vec<u8>,
    ) -> Self {
        SaConfig {
            spi,
            direction,
            tunnel,
            algorithm,
            key,
            esn: false,
            replay_window: 1024,
            lifetime: Lifetime::default(),
            udp_encap: None,
            initial_seq: 0,
            outer_ttl: 64,
            pad_to: 16,
        }
    }

    /// Checks the definition for everything that would make it unusable.
    pub fn validate(&self) -> Result<(), SaError> {
        if self.spi < 256 {
            return Err(SaError::ReservedSpi(self.spi));
        }
        let want = self.algorithm.key_len() + SALT_LEN;
        if self.key.len() != want {
            return Err(KeyError::Length {
                algorithm: self.algorithm,
                want,
                got: self.key.len(),
            }
            .into());
        }
        if self.tunnel.src.is_ipv4() != self.tunnel.dst.is_ipv4() {
            return Err(SaError::MixedTunnel {
                src: self.tunnel.src,
                dst: self.tunnel.dst,
            });
        }
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&self.replay_window) {
            return Err(SaError::Window(self.replay_window));
        }
        if !self.esn && self.initial_seq > u64::from(u32::MAX) {
            return Err(SaError::InitialSeq(self.initial_seq));
        }
        let l = &self.lifetime;
        for (soft, hard) in [
            (l.soft_bytes, l.hard_bytes),
            (l.soft_packets, l.hard_packets),
            (l.soft_seconds, l.hard_seconds),
        ] {
            if let (Some(soft), Some(hard)) = (soft, hard)
                && soft > hard
            {
                return Err(SaError::Lifetime { soft, hard });
            }
        }
        if self.outer_ttl == 0 {
            return Err(SaError::Ttl);
        }
        if self.pad_to != 4 && self.pad_to != 16 {
            return Err(SaError::PadTo(self.pad_to));
        }
        Ok(())
    }

    /// Validates and builds the cipher for `backend`.
    pub(crate) fn cipher(&self, backend: Backend) -> Result<EspCipher, SaError> {
        self.validate()?;
        Ok(EspCipher::new(
            backend,
            self.algorithm,
            &self.key,
            self.esn,
        )?)
    }

    /// The largest sequence number this SA may use.
    pub fn seq_max(&self) -> u64 {
        if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SaConfig {
        SaConfig::new(
            0x1000,
            Direction::Outbound,
            Tunnel {
                src: "172.16.1.5".parse().unwrap(),
                dst: "172.16.2.5".parse().unwrap(),
            },
            AeadAlgorithm::Aes128Gcm,
            vec![7; 20],
        )
    }

    #[test]
    fn each_problem_is_named() {
        assert_eq!(cfg().validate(), Ok(()));
        let mut c = cfg();
        c.spi = 3;
        assert_eq!(c.validate(), Err(SaError::ReservedSpi(3)));
        let mut c = cfg();
        c.key.pop();
        assert!(matches!(c.validate(), Err(SaError::Key(_))));
        let mut c = cfg();
        c.tunnel.dst = "2001:db8::1".parse().unwrap();
        assert!(matches!(c.validate(), Err(SaError::MixedTunnel { .. })));
        let mut c = cfg();
        c.replay_window = 8;
        assert_eq!(c.validate(), Err(SaError::Window(8)));
        let mut c = cfg();
        c.initial_seq = 1 << 33;
        assert_eq!(c.validate(), Err(SaError::InitialSeq(1 << 33)));
        c.esn = true;
        assert_eq!(c.validate(), Ok(()));
        let mut c = cfg();
        c.lifetime.soft_packets = Some(10);
        c.lifetime.hard_packets = Some(5);
        assert!(matches!(c.validate(), Err(SaError::Lifetime { .. })));
        let mut c = cfg();
        c.outer_ttl = 0;
        assert_eq!(c.validate(), Err(SaError::Ttl));
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", cfg()).contains("7, 7"));
    }
}
