//! The quantity mix of a drop (`--quantity-mix "1:80,2:15,4:5"`): which share of the
//! claims asks for how many seats, and a reproducible assignment of quantities to
//! claims.
//!
//! The assignment is exact, not sampled: 80 % of 1,000 claims is 800 claims asking for
//! one seat, with the rounding remainder given by largest remainder. The order is a
//! Fisher–Yates shuffle driven by SplitMix64 from `--seed`, written out here rather than
//! taken from `rand` so that a seed names the same workload in every build.

use std::fmt;
use std::str::FromStr;

/// Largest quantity a claim may ask for (the highest per-user limit an event can have).
pub const MAX_QUANTITY: u32 = 100;

/// One `quantity:percent` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixEntry {
    pub quantity: u32,
    pub percent: u32,
}

/// A parsed, validated quantity mix: distinct quantities whose percentages add up to
/// 100, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityMix {
    entries: Vec<MixEntry>,
}

/// Why a quantity mix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixError(String);

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MixError {}

impl FromStr for QuantityMix {
    type Err = MixError;

    /// Parses `quantity:percent[,quantity:percent…]`, e.g. `1:80,2:15,4:5`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: String| Err(MixError(m));
        let mut entries: Vec<MixEntry> = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return err(format!("empty entry in {s:?}; expected e.g. 1:80,2:15,4:5"));
            }
            let Some((q, p)) = part.split_once(':') else {
                return err(format!("{part:?} is not quantity:percent (e.g. 2:15)"));
            };
            let Ok(quantity) = q.trim().parse::<u32>() else {
                return err(format!("{q:?} in {part:?} is not a whole number of seats"));
            };
            let Ok(percent) = p.trim().trim_end_matches('%').parse::<u32>() else {
                return err(format!("{p:?} in {part:?} is not a whole percentage"));
            };
            if !(1..=MAX_QUANTITY).contains(&quantity) {
                return err(format!(
                    "quantity {quantity} is not between 1 and {MAX_QUANTITY}"
                ));
            }
            if percent == 0 || percent > 100 {
                return err(format!(
                    "percentage {percent} of quantity {quantity} is not between 1 and 100"
                ));
            }
            if entries.iter().any(|e| e.quantity == quantity) {
                return err(format!("quantity {quantity} is given twice"));
            }
            entries.push(MixEntry { quantity, percent });
        }
        let sum: u32 = entries.iter().map(|e| e.percent).sum();
        if sum != 100 {
            return err(format!("the percentages add up to {sum}, not 100"));
        }
        Ok(Self { entries })
    }
}

impl fmt::Display for QuantityMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", e.quantity, e.percent)?;
        }
        Ok(())
    }
}

impl QuantityMix {
    pub fn entries(&self) -> &[MixEntry] {
        &self.entries
    }

    /// The largest quantity in the mix.
    pub fn max_quantity(&self) -> u32 {
        self.entries.iter().map(|e| e.quantity).max().unwrap_or(1)
    }

    /// How many of `total` claims ask for each quantity, in the mix's order: each
    /// entry's exact share rounded down, the claims left over given one each to the
    /// entries with the largest remainders (earlier entries first on a tie).
    pub fn counts(&self, total: u64) -> Vec<u64> {
        let total = u128::from(total);
        let mut counts: Vec<u64> = Vec::with_capacity(self.entries.len());
        let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            let exact = total * u128::from(e.percent);
            counts.push((exact / 100) as u64);
            remainders.push((exact % 100, i));
        }
        let assigned: u128 = counts.iter().map(|&c| u128::from(c)).sum();
        let mut left = (total - assigned) as usize;
        // Largest remainder first; a stable sort keeps the given order on ties.
        remainders.sort_by_key(|r| std::cmp::Reverse(r.0));
        for &(_, i) in &remainders {
            if left == 0 {
                break;
            }
            counts[i] += 1;
            left -= 1;
        }
        counts
    }

    /// The quantity of each of `total` claims: exactly [`counts`](Self::counts) of
    /// each, in an order shuffled by `seed` (the same seed, the same order).
    pub fn assign(&self, total: u64, seed: u64) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::with_capacity(total as usize);
        for (entry, count) in self.entries.iter().zip(self.counts(total)) {
            out.extend(std::iter::repeat_n(entry.quantity, count as usize));
        }
        let mut rng = SplitMix64(seed);
        for i in (1..out.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            out.swap(i, j);
        }
        out
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator with a fixed definition, so
/// a seed means the same sequence forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias for n ≪ 2^64 is nil in
    /// practice and the definition stays fixed).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(s: &str) -> QuantityMix {
        s.parse().unwrap()
    }

    #[test]
    fn a_mix_parses_in_order() {
        let m = mix("1:80, 2:15 ,4:5%");
        assert_eq!(
            m.entries(),
            &[
                MixEntry {
                    quantity: 1,
                    percent: 80
                },
                MixEntry {
                    quantity: 2,
                    percent: 15
                },
                MixEntry {
                    quantity: 4,
                    percent: 5
                },
            ]
        );
        assert_eq!(m.to_string(), "1:80,2:15,4:5");
        assert_eq!(m.max_quantity(), 4);
        assert_eq!(mix("3:100").entries().len(), 1);
    }

    #[test]
    fn bad_mixes_are_refused_with_a_reason() {
        let e = |s: &str| s.parse::<QuantityMix>().unwrap_err().to_string();
        assert!(e("1:80,2:15").contains("add up to 95"));
        assert!(e("1:80,2:30").contains("add up to 110"));
        assert!(e("").contains("empty entry"));
        assert!(e("1:80,,2:20").contains("empty entry"));
        assert!(e("1-80").contains("quantity:percent"));
        assert!(e("x:100").contains("whole number"));
        assert!(e("1:1.5").contains("whole percentage"));
        assert!(e("0:100").contains("between 1 and 100"));
        assert!(e("101:100").contains("between 1 and 100"));
        assert!(e("1:0,2:100").contains("percentage 0"));
        assert!(e("1:50,1:50").contains("twice"));
    }

    #[test]
    fn counts_are_exact_shares_with_largest_remainder_rounding() {
        let m = mix("1:80,2:15,4:5");
        assert_eq!(m.counts(1000), vec![800, 150, 50]);
        assert_eq!(m.counts(0), vec![0, 0, 0]);
        // 7 claims: exact 5.6, 1.05, 0.35 → 5, 1, 0 and one left over, to the 0.6.
        assert_eq!(m.counts(7), vec![6, 1, 0]);
        let thirds = mix("1:33,2:33,3:34");
        assert_eq!(thirds.counts(1).iter().sum::<u64>(), 1);
        assert_eq!(thirds.counts(1), vec![0, 0, 1]);
        for total in [1, 2, 3, 99, 101, 12_345] {
            assert_eq!(m.counts(total).iter().sum::<u64>(), total);
        }
    }

    #[test]
    fn assignment_is_exact_and_reproducible() {
        let m = mix("1:80,2:15,4:5");
        let a = m.assign(10_000, 7);
        assert_eq!(a.len(), 10_000);
        assert_eq!(a.iter().filter(|&&q| q == 1).count(), 8_000);
        assert_eq!(a.iter().filter(|&&q| q == 2).count(), 1_500);
        assert_eq!(a.iter().filter(|&&q| q == 4).count(), 500);
        assert_eq!(a, m.assign(10_000, 7), "the same seed gives the same order");
        assert_ne!(a, m.assign(10_000, 8), "another seed gives another order");
        // Shuffled: the 4s are not all at the end.
        assert!(a[..5_000].contains(&4));
    }

    #[test]
    fn splitmix64_matches_its_reference_sequence() {
        // First outputs for seed 0, from the reference implementation.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
