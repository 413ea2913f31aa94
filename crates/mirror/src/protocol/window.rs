//! Replay bitmaps moved to a new top.

/// The numbers either of two bitmaps (of one top) marks seen; past the
/// shorter one, all of them (it does not tell which came, and a window
/// restored from it holds them seen).
pub(super) fn union(a: &[u64], b: &[u64]) -> Vec<u64> {
    (0..a.len().max(b.len()))
        .map(|w| a.get(w).copied().unwrap_or(u64::MAX) | b.get(w).copied().unwrap_or(u64::MAX))
        .collect()
}

/// A window moved `d` numbers up, as [`rebase`] does, with the `d`
/// numbers it moved over (above its old top, up to the new one) seen:
/// nothing tells which of them were accepted.
pub(super) fn raised(bitmap: &[u64], d: u64) -> Vec<u64> {
    let mut out = rebase(bitmap, d);
    let fill = d.min(out.len() as u64 * 64);
    for k in 0..fill {
        out[(k / 64) as usize] |= 1 << (k % 64);
    }
    out
}

/// A replay bitmap (bit `k` of word `w`: top minus `64 w + k` seen) for a
/// top `d` higher: every bit moves `d` places down the window.
pub(super) fn rebase(bitmap: &[u64], d: u64) -> Vec<u64> {
    let bits = bitmap.len() as u64 * 64;
    let mut out = vec![0u64; bitmap.len()];
    for k in 0..bits.saturating_sub(d) {
        if bitmap[(k / 64) as usize] >> (k % 64) & 1 == 1 {
            let n = k + d;
            out[(n / 64) as usize] |= 1 << (n % 64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{raised, rebase};

    #[test]
    fn rebasing_keeps_each_number_seen() {
        // Top 100 with 100, 98 and 37 seen; the top moves to 110.
        let mut b = vec![0u64; 2];
        for k in [0u64, 2, 63] {
            b[(k / 64) as usize] |= 1 << (k % 64);
        }
        let r = rebase(&b, 10);
        let seen: Vec<u64> = (0..128)
            .filter(|k| r[(k / 64) as usize] >> (k % 64) & 1 == 1)
            .map(|k| 110 - k)
            .collect();
        assert_eq!(seen, vec![100, 98, 37]);
        assert_eq!(rebase(&b, 200), vec![0, 0], "all of it fell out");
    }

    #[test]
    fn raising_sees_what_it_moves_over() {
        // Top 100 with 100 and 37 seen; raised to 110: 101..=110 seen too.
        let mut b = vec![0u64; 2];
        for k in [0u64, 63] {
            b[(k / 64) as usize] |= 1 << (k % 64);
        }
        let r = raised(&b, 10);
        let seen: Vec<u64> = (0..128)
            .filter(|k| r[(k / 64) as usize] >> (k % 64) & 1 == 1)
            .map(|k| 110 - k)
            .collect();
        let mut want: Vec<u64> = (101..=110).rev().collect();
        want.extend([100, 37]);
        assert_eq!(seen, want);
        assert_eq!(raised(&b, 500), vec![u64::MAX; 2], "all of it moved over");
        assert_eq!(raised(&[], 5), Vec::<u64>::new(), "no window, none raised");
    }
}
