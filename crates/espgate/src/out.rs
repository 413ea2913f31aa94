//! Standard output for the commands that print. `println!` panics when
//! standard output is a pipe whose reader has gone (`espgate peer | head
//! -1`); [`print`] returns [`Closed`] instead, and `main` ends the command
//! quietly with success: the reader took what it wanted.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Standard output's reader has gone: nothing more can be shown.
#[derive(Debug)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for Closed {}

/// Writes `args` to standard output, flushed: [`Closed`] if its reader has
/// gone, any other failure as itself.
pub fn print(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe => anyhow::Error::new(Closed),
            _ => anyhow::Error::new(e).context("writing to standard output"),
        })
}

/// Whether `e` is (or was caused by) standard output's reader going.
pub fn closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Closed>())
}

/// `print!` that returns an error instead of panicking: see [`print`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::print(format_args!($($arg)*))
    };
}

/// `println!` that returns an error instead of panicking: see [`print`].
macro_rules! outln {
    () => {
        $crate::out::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
