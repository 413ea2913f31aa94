//! A global allocator that counts the bytes live, for measuring memory per
//! object in benchmarks: `#[global_allocator] static A: Counting = Counting;`
//! then [`live`] before and after building them.
//!
//! Implementing an allocator is `unsafe` by nature: this module allows it,
//! and each block says why it is sound.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, with a count of the bytes it has handed out and
/// not had back.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Bytes allocated and not yet freed (when [`Counting`] is the global
/// allocator).
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

// SAFETY: every call goes to the system allocator unchanged; the wrapper
// only keeps a counter beside it, so the system allocator's guarantees hold.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout goes to the system allocator as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this same layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}
