//! Drop counters generated from one table, as VPP generates its error
//! counters: each set is written once, as rows of doc comment, variant and
//! name, and [`counter_table!`] turns the rows into the reason enum (with its
//! docs), `ALL`, `COUNT`, `name()`, `Display` and an array of counters
//! indexed by the enum. A name used twice in one table fails to compile.
//!
//! The crate has no dependencies, so every espgate crate that counts drops
//! (esp, mirror, dataplane) can use it without a dependency cycle.
#![no_std]

/// Generates a reason enum and its counter array from one table.
///
/// ```
/// espgate_counters::counter_table! {
///     /// Why a frame was dropped.
///     pub enum Why;
///     /// Dropped frames by reason.
///     pub struct WhyCounters;
///     {
///         /// Too short to parse.
///         Short => "short",
///         /// From an older epoch.
///         Stale => "stale_epoch",
///     }
/// }
///
/// let mut c = WhyCounters::default();
/// c.count(Why::Stale);
/// assert_eq!(Why::ALL, [Why::Short, Why::Stale]);
/// assert_eq!(Why::COUNT, 2);
/// assert_eq!(Why::Stale.to_string(), "stale_epoch");
/// assert_eq!((c.get(Why::Short), c.get(Why::Stale), c.total()), (0, 1, 1));
/// assert_eq!(c.nonzero().collect::<Vec<_>>(), [(Why::Stale, 1)]);
/// ```
///
/// The rows' order is the counter order: `ALL`, the array and whatever
/// prints them follow it. A name given twice does not compile:
///
/// ```compile_fail
/// espgate_counters::counter_table! {
///     /// Why.
///     pub enum Why;
///     /// Counters.
///     pub struct WhyCounters;
///     {
///         /// Old.
///         Old => "stale",
///         /// Older.
///         Older => "stale",
///     }
/// }
/// ```
#[macro_export]
macro_rules! counter_table {
    (
        $(#[$enum_meta:meta])*
        $enum_vis:vis enum $Enum:ident;
        $(#[$counters_meta:meta])*
        $counters_vis:vis struct $Counters:ident;
        {
            $( $(#[$variant_meta:meta])* $Variant:ident => $name:literal, )+
        }
    ) => {
        $(#[$enum_meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        $enum_vis enum $Enum {
            $( $(#[$variant_meta])* $Variant, )+
        }

        impl $Enum {
            /// Number of reasons.
            pub const COUNT: usize = [$( $name ),+].len();
            /// Every reason, in counter order.
            pub const ALL: [$Enum; $Enum::COUNT] = [$( $Enum::$Variant ),+];

            /// The name used in counters and metrics.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $Enum::$Variant => $name, )+
                }
            }
        }

        const _: () = assert!(
            $crate::distinct(&[$( $name ),+]),
            concat!("a name is used twice in ", stringify!($Enum)),
        );

        impl ::core::fmt::Display for $Enum {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.name())
            }
        }

        $(#[$counters_meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $counters_vis struct $Counters([u64; $Enum::COUNT]);

        impl Default for $Counters {
            fn default() -> Self {
                $Counters([0; $Enum::COUNT])
            }
        }

        impl $Counters {
            /// Counts one for `why`.
            #[inline]
            pub fn count(&mut self, why: $Enum) {
                self.0[why as usize] += 1;
            }

            /// Counted for `why`.
            pub fn get(&self, why: $Enum) -> u64 {
                self.0[why as usize]
            }

            /// Counted for all reasons together.
            pub fn total(&self) -> u64 {
                self.0.iter().sum()
            }

            /// Adds `other`'s counts, reason by reason.
            pub fn add(&mut self, other: &$Counters) {
                for (a, b) in self.0.iter_mut().zip(other.0) {
                    *a += b;
                }
            }

            /// The reasons counted at least once, in counter order.
            pub fn nonzero(&self) -> impl Iterator<Item = ($Enum, u64)> + '_ {
                $Enum::ALL
                    .into_iter()
                    .map(|why| (why, self.get(why)))
                    .filter(|&(_, n)| n != 0)
            }
        }
    };
}

/// Whether no two of `names` are equal; [`counter_table!`] asserts it at
/// compile time.
#[doc(hidden)]
pub const fn distinct(names: &[&str]) -> bool {
    let mut i = 0;
    while i < names.len() {
        let mut j = i + 1;
        while j < names.len() {
            if same(names[i].as_bytes(), names[j].as_bytes()) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

/// Byte-wise equality, usable in a constant.
const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut k = 0;
    while k < a.len() {
        if a[k] != b[k] {
            return false;
        }
        k += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::distinct;

    crate::counter_table! {
        /// Test reasons.
        pub enum Why;
        /// Test counters.
        pub struct WhyCounters;
        {
            /// First.
            A => "a",
            /// Second.
            B => "bb",
            /// Third.
            C => "c",
        }
    }

    #[test]
    fn indices_follow_the_rows() {
        for (i, why) in Why::ALL.into_iter().enumerate() {
            assert_eq!(why as usize, i);
        }
        assert_eq!(Why::COUNT, 3);
    }

    #[test]
    fn counters_add_and_skip_zeros() {
        let mut a = WhyCounters::default();
        a.count(Why::A);
        let mut b = WhyCounters::default();
        b.count(Why::C);
        b.count(Why::C);
        a.add(&b);
        assert_eq!(a.total(), 3);
        assert!(a.nonzero().eq([(Why::A, 1), (Why::C, 2)]));
    }

    #[test]
    fn distinct_tells_a_repeated_name() {
        assert!(distinct(&["a", "ab", "b"]));
        assert!(!distinct(&["a", "ab", "a"]));
        assert!(distinct(&[]));
    }
}
