//! A Linux TUN device: an L3 interface whose packets (bare IP, no
//! Ethernet header and no packet-information prefix: `IFF_TUN |
//! IFF_NO_PI`) are read and written through one file descriptor. The node
//! punts the packets for its own addresses that it does not handle itself
//! (IKE, ICMP echo, ...) to the kernel's stack through one, and reads the
//! kernel's answers back from it. The descriptor is non-blocking: a read
//! with nothing waiting and a write the kernel cannot queue return at once.
//!
//! This module's `unsafe` is the descriptor's: `open`, the interface
//! ioctls, `read` and `write`. Each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::mem::zeroed;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The longest interface name the kernel takes (IFNAMSIZ less its NUL).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
}

/// The error of the last system call, with what was being done.
fn last_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// An `ifreq` naming interface `name`, everything else zero.
pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAME_LEN || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name (1 to {MAX_NAME_LEN} bytes, no NUL)"),
        ));
    }
    // SAFETY: ifreq is plain data (a name and a union of plain data); all
    // zero is a valid value of it.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    for (to, from) in ifr.ifr_name.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    Ok(ifr)
}

/// Runs interface ioctl `request` with `ifr` on `fd`.
fn ioctl(
    fd: &impl AsRawFd,
    request: libc::Ioctl,
    ifr: &mut libc::ifreq,
    what: &str,
) -> io::Result<()> {
    // SAFETY: every request this module makes reads and writes one ifreq,
    // and `ifr` is a live, exclusively borrowed one for the whole call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_mut(ifr)) };
    if r < 0 {
        return Err(last_error(what));
    }
    Ok(())
}

/// Opens TUN device `name`: creates it, or attaches to the device of that
/// name if one exists (a persistent TUN device nobody holds; any other
/// device of that name is refused). The device is left as it is: down
/// when new ([`Tun::set_up`] brings it up).
pub fn open(name: &str) -> io::Result<Tun> {
    let mut ifr = ifreq(name)?;
    // SAFETY: a plain open(2) of a constant NUL-terminated path; the result
    // is checked before use.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(last_error("open /dev/net/tun"));
    }
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    ioctl(
        &fd,
        libc::TUNSETIFF as libc::Ioctl,
        &mut ifr,
        &format!(
            "TUNSETIFF {name} (a device of that name that is not a free TUN device is refused)"
        ),
    )?;
    // SAFETY: the kernel wrote the device's name back NUL-terminated into
    // the IFNAMSIZ bytes of `ifr_name`.
    let name = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok(Tun { fd, name })
}

impl Tun {
    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the device's MTU and brings its link up, in the network
    /// namespace of the calling thread (where a new device is made).
    pub fn set_up(&self, mtu: usize) -> io::Result<()> {
        let mtu = libc::c_int::try_from(mtu)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("mtu {mtu}")))?;
        // SAFETY: a plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(last_error("socket(AF_INET) for the interface ioctls"));
        }
        // SAFETY: `raw` is a new descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ifr = ifreq(&self.name)?;
        ifr.ifr_ifru.ifru_mtu = mtu;
        ioctl(
            &sock,
            libc::SIOCSIFMTU as libc::Ioctl,
            &mut ifr,
            &format!("{}: setting mtu {mtu}", self.name),
        )?;
        let mut ifr = ifreq(&self.name)?;
        ioctl(
            &sock,
            libc::SIOCGIFFLAGS as libc::Ioctl,
            &mut ifr,
            &format!("{}: reading its flags", self.name),
        )?;
        // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
        let flags = unsafe { ifr.ifr_ifru.ifru_flags };
        ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        ioctl(
            &sock,
            libc::SIOCSIFFLAGS as libc::Ioctl,
            &mut ifr,
            &format!("{}: setting it up", self.name),
        )
    }

    /// Hands one IP packet to the kernel. Fails with
    /// [`io::ErrorKind::WouldBlock`] when the kernel cannot take it now,
    /// and with `EIO` while the device is down.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        // SAFETY: `packet` is a live slice and its exact length is passed;
        // the kernel only reads it.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Takes the next IP packet the kernel sent through the device into
    /// `buf`: its length, or `None` when none is waiting. A packet longer
    /// than `buf` comes cut short (the caller's parse finds it so).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: `buf` is a live, exclusively borrowed slice and its exact
        // length is passed; the kernel writes at most that many bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_cannot_take_are_refused_before_any_system_call() {
        for bad in ["", "a-name-far-too-long", "nul\0inside"] {
            let e = open(bad).expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
        assert!(ifreq("espgate0").is_ok());
        assert!(ifreq(&"x".repeat(MAX_NAME_LEN)).is_ok());
    }
}
