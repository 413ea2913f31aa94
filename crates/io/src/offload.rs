//! The receive offloads of a Linux interface an AF_PACKET port opens,
//! read and switched off through the `SIOCETHTOOL` ioctl (what `ethtool
//! -k` and `ethtool -K` use), by the feature names the kernel gives.
//!
//! An AF_PACKET socket sees a frame as the kernel holds it, not as it was
//! on the wire. With GRO, LRO or hardware GRO on, the kernel merges the
//! segments of a flow into one frame of up to 64 KiB, which espgate would
//! have to encrypt as one packet; the link cannot carry it. With receive
//! checksum offload on a virtio interface, the host may hand the guest
//! TCP and UDP packets whose checksum is left for a device to fill in
//! (the AF_PACKET ring marks them `TP_STATUS_CSUMNOTREADY`; the port
//! completes those, see `af_packet`, but an interface that does not
//! produce them is better). A veth's peer does that whatever this end
//! says: its sender's transmit offloads decide, which is why the port
//! completes such checksums in software as well.
//!
//! Transmit offloads of the port (checksum, TSO, GSO) are left as they
//! are: a frame espgate writes to an AF_PACKET socket carries its
//! checksums already and is never segmented, whatever they say.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::tun::ifreq;

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// A receive offload the port switches off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// The kernel's name (`ethtool -k` lists it so, or under `what`).
    pub name: &'static str,
    /// What `ethtool -k` calls it.
    pub what: &'static str,
    /// The word `ethtool -K` takes for it.
    pub word: &'static str,
    /// It merges frames: the port cannot work with it on.
    pub merges: bool,
}

/// The receive offloads an AF_PACKET port wants off, those that merge
/// frames first.
pub const RECEIVE_OFFLOADS: [Feature; 4] = [
    Feature {
        name: "rx-gro",
        what: "generic-receive-offload",
        word: "gro",
        merges: true,
    },
    Feature {
        name: "rx-lro",
        what: "large-receive-offload",
        word: "lro",
        merges: true,
    },
    Feature {
        name: "rx-gro-hw",
        what: "rx-gro-hw",
        word: "rx-gro-hw",
        merges: true,
    },
    Feature {
        name: "rx-checksum",
        what: "rx-checksumming",
        word: "rx",
        merges: false,
    },
];

/// What [`switch_off_receive_offloads`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Those it switched off.
    pub switched_off: Vec<Feature>,
    /// Those on that would not go off and do not merge frames (receive
    /// checksum offload fixed on: the port completes such checksums).
    pub left_on: Vec<Feature>,
}

/// The `ethtool` command that switches `features` off on `interface`.
pub fn command(interface: &str, features: &[Feature]) -> String {
    let words: Vec<String> = features.iter().map(|f| format!("{} off", f.word)).collect();
    format!("ethtool -K {interface} {}", words.join(" "))
}

/// Switches the [`RECEIVE_OFFLOADS`] that are on off on `interface` (in
/// the calling thread's network namespace). Fails, naming the interface
/// and the `ethtool` command to run, if the features cannot be read, or
/// if one that merges frames stays on (the ioctl refused: no
/// `CAP_NET_ADMIN`; or the driver holds it on).
pub fn switch_off_receive_offloads(interface: &str) -> io::Result<Offloads> {
    let dev = Device::open(interface)?;
    let names = dev.feature_names()?;
    let index = |f: &Feature| names.iter().position(|n| n == f.name);
    let before = dev.features(names.len())?;
    let on: Vec<(Feature, usize)> = RECEIVE_OFFLOADS
        .iter()
        .filter_map(|f| index(f).map(|i| (*f, i)))
        .filter(|(_, i)| before.active(*i))
        .collect();
    if on.is_empty() {
        return Ok(Offloads::default());
    }
    let fix = |why: String| {
        let all: Vec<Feature> = on.iter().map(|(f, _)| *f).collect();
        io::Error::other(format!(
            "{why}: an AF_PACKET port cannot work with it (merged frames are larger than the link carries); run `{}` and start again",
            command(interface, &all)
        ))
    };
    let bits: Vec<usize> = on.iter().map(|(_, i)| *i).collect();
    let set = dev.clear(&before, &bits);
    let after = dev.features(names.len())?;
    let mut done = Offloads::default();
    let mut stuck = Vec::new();
    for (f, i) in &on {
        if !after.active(*i) {
            done.switched_off.push(*f);
        } else if f.merges {
            stuck.push(f.what);
        } else {
            done.left_on.push(*f);
        }
    }
    if !stuck.is_empty() {
        let stuck = stuck.join(", ");
        let why = match set {
            Err(e) => format!("{stuck} is on and switching it off failed ({e})"),
            Ok(()) => format!("{stuck} is on and the driver keeps it on"),
        };
        return Err(fix(why));
    }
    Ok(done)
}

/// The features of a device: four words per block of 32 (available,
/// requested, active, never changed), as `ETHTOOL_GFEATURES` fills them.
struct Features {
    blocks: Vec<[u32; 4]>,
}

impl Features {
    fn active(&self, bit: usize) -> bool {
        self.blocks
            .get(bit / 32)
            .is_some_and(|b| b[2] & (1 << (bit % 32)) != 0)
    }
}

/// An interface, and a socket to run its ethtool ioctls on.
struct Device {
    name: String,
    sock: OwnedFd,
}

impl Device {
    fn open(name: &str) -> io::Result<Device> {
        ifreq(name)?;
        // SAFETY: a plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("socket(AF_INET) for the ethtool ioctls: {e}"),
            ));
        }
        Ok(Device {
            name: name.to_string(),
            // SAFETY: `raw` is a new descriptor nobody else owns.
            sock: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// Runs ethtool command `words[0]` on the device, the kernel reading
    /// and writing `words` (the command's structure, laid out in 32-bit
    /// words).
    fn ethtool(&self, words: &mut [u32], what: &str) -> io::Result<()> {
        self.ioctl(words)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {what}: {e}", self.name)))
    }

    /// [`ethtool`](Self::ethtool), its error the system's alone.
    fn ioctl(&self, words: &mut [u32]) -> io::Result<()> {
        let mut ifr = ifreq(&self.name)?;
        ifr.ifr_ifru.ifru_data = words.as_mut_ptr().cast();
        // SAFETY: SIOCETHTOOL reads the ifreq and, through `ifru_data`, the
        // command in `words`; every command this module sends is given a
        // buffer as large as its structure with the counts it names
        // (checked by the callers), so the kernel reads and writes inside
        // `words`, which is live and exclusively borrowed for the call, as
        // `ifr` is.
        let r = unsafe {
            libc::ioctl(
                self.sock.as_raw_fd(),
                libc::SIOCETHTOOL as libc::Ioctl,
                std::ptr::from_mut(&mut ifr),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The kernel's feature names, by bit.
    fn feature_names(&self) -> io::Result<Vec<String>> {
        // struct ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
        let mut info = [ETHTOOL_GSSET_INFO, 0, 0, 0, 0];
        let mask = 1u64 << ETH_SS_FEATURES;
        info[2] = mask as u32;
        info[3] = (mask >> 32) as u32;
        if cfg!(target_endian = "big") {
            info.swap(2, 3);
        }
        self.ethtool(&mut info, "reading the number of features")?;
        let count = info[4] as usize;
        if count == 0 || count > 4096 {
            return Err(io::Error::other(format!(
                "{}: the kernel says it has {count} features",
                self.name
            )));
        }
        // struct ethtool_gstrings: cmd, string_set, len, data[len * 32].
        let mut strings = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
        strings[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count as u32]);
        self.ethtool(&mut strings, "reading the feature names")?;
        let len = (strings[2] as usize).min(count);
        let bytes: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
        Ok(bytes
            .chunks(ETH_GSTRING_LEN)
            .take(len)
            .map(|c| {
                let end = c.iter().position(|b| *b == 0).unwrap_or(c.len());
                String::from_utf8_lossy(&c[..end]).into_owned()
            })
            .collect())
    }

    /// The device's features, `count` of them.
    fn features(&self, count: usize) -> io::Result<Features> {
        let blocks = count.div_ceil(32);
        // struct ethtool_gfeatures: cmd, size, then `size` blocks of four.
        let mut words = vec![0u32; 2 + 4 * blocks];
        words[0] = ETHTOOL_GFEATURES;
        words[1] = blocks as u32;
        self.ethtool(&mut words, "reading its features")?;
        Ok(Features {
            blocks: words[2..]
                .chunks_exact(4)
                .map(|b| [b[0], b[1], b[2], b[3]])
                .collect(),
        })
    }

    /// Asks the kernel to switch off feature `bits`, the others as they
    /// were requested.
    fn clear(&self, now: &Features, bits: &[usize]) -> io::Result<()> {
        // struct ethtool_sfeatures: cmd, size, then `size` blocks of
        // (valid, requested); size must be the kernel's, which GFEATURES
        // gave as the number of blocks.
        let blocks = now.blocks.len();
        let mut words = vec![0u32; 2 + 2 * blocks];
        words[0] = ETHTOOL_SFEATURES;
        words[1] = blocks as u32;
        for (i, b) in now.blocks.iter().enumerate() {
            let valid: u32 = bits
                .iter()
                .filter(|bit| *bit / 32 == i)
                .fold(0, |m, bit| m | 1 << (bit % 32));
            words[2 + 2 * i] = valid;
            words[3 + 2 * i] = b[1] & !valid;
        }
        self.ioctl(&mut words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_the_interface_and_each_feature() {
        assert_eq!(
            command("lan", &RECEIVE_OFFLOADS),
            "ethtool -K lan gro off lro off rx-gro-hw off rx off"
        );
    }

    #[test]
    fn an_interface_that_does_not_exist_is_named() {
        let e = switch_off_receive_offloads("espgate-none0").unwrap_err();
        assert!(e.to_string().contains("espgate-none0"), "{e}");
    }

    #[test]
    fn loopback_is_read_by_feature_name() {
        // Every Linux network namespace has lo; reading needs no privilege.
        let dev = Device::open("lo").unwrap();
        let names = dev.feature_names().unwrap();
        for f in RECEIVE_OFFLOADS {
            assert!(names.iter().any(|n| n == f.name), "{} in {names:?}", f.name);
        }
        let f = dev.features(names.len()).unwrap();
        assert_eq!(f.blocks.len(), names.len().div_ceil(32));
    }
}
