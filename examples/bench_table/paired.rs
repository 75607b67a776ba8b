//! Paired comparisons: the targets, the speedup of one variant over another measured in
//! alternating chunks, its confidence interval, and the FMA-bound reference work that says how
//! much of a second core the machine gave.

use std::time::{Duration, Instant};

use kcp::__private::{gemm, Gemm};

use crate::measure::Bench;

/// The targets of issues 6 and 17, each a speedup of one variant over another.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// [`HEADLINE`] at batch 1: generated at least 300x faster than dense.
    OverDense,
    /// Batch 1: generated at least 2x faster than generic.
    GeneratedVsGeneric,
    /// Batch above 1: generated never slower than generic.
    NeverSlower,
    /// Batch 256: generated_par at least 1.7x faster than generated.
    Threads,
    /// The chosen plan never slower than the better paper order (both on the generic executor).
    PlanVsPaper,
    /// Not a target: how much faster two threads run FMA-bound work that shares nothing than
    /// one, measured right after each [`Target::Threads`] comparison: what the machine gave at
    /// that time (a shared VM's second vCPU comes and goes, and may share a physical core's FMA
    /// units with the first).
    Scaling,
    Avx512OverAvx2,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Avx512OverAvx2,
        Target::OverDense,
        Target::GeneratedVsGeneric,
        Target::NeverSlower,
        Target::Threads,
        Target::Scaling,
        Target::PlanVsPaper,
    ];

    /// The least speedup that meets it (none for the reference).
    pub fn goal(self) -> Option<f64> {
        match self {
            Target::OverDense => Some(300.0),
            Target::GeneratedVsGeneric => Some(2.0),
            Target::Threads => Some(1.7),
            Target::Avx512OverAvx2 => Some(1.4),
            Target::NeverSlower | Target::PlanVsPaper => Some(1.0),
            Target::Scaling => None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Target::OverDense => "generated >= 300x dense (UCF11 r4, batch 1)",
            Target::GeneratedVsGeneric => "generated >= 2x generic (batch 1)",
            Target::NeverSlower => "generated never slower than generic (batch 16, 256)",
            Target::Threads => "generated_par >= 1.7x generated (batch 256)",
            Target::PlanVsPaper => "plan (generic) never slower than the better paper order",
            Target::Scaling => "reference: two threads over one on FMA-bound work that shares nothing",
            Target::Avx512OverAvx2 => "generated on AVX-512 >= 1.4x on AVX2 (UCF11 r4, one thread)",
        }
    }
}

/// How much faster one variant ran than another in a paired comparison ([`Bench::paired`]).
#[derive(Clone, Copy)]
pub struct Speedup {
    /// The median over pairs of base time / candidate time.
    pub median: f64,
    /// A confidence interval of that median of at least 95% (order statistics of the pairs).
    pub low: f64,
    pub high: f64,
    pub pairs: usize,
}

pub struct Comparison {
    pub target: Target,
    pub layer: String,
    pub batch: usize,
    pub base: &'static str,
    pub candidate: &'static str,
    pub speedup: Speedup,
}

impl Comparison {
    /// `met` (the median reaches the goal), `within noise` (only the interval does) or `missed`;
    /// `reference` for the machine's own scaling.
    pub fn verdict(&self) -> &'static str {
        let Some(goal) = self.target.goal() else {
            return "reference";
        };
        if self.speedup.median >= goal {
            "met"
        } else if self.speedup.high >= goal {
            "within noise"
        } else {
            "missed"
        }
    }
}

/// The largest 1-based rank `j` such that the `j`-th smallest and the `j`-th largest of `n`
/// samples bound their median with at least 95% confidence: fewer than `j` of `n` samples fall
/// below the median with probability `P(Bin(n, 1/2) <= j - 1)`, which may be at most 2.5%, and
/// likewise above it. 1 (the extremes) when `n` is too small for that (below 6).
pub fn median_interval_rank(n: usize) -> usize {
    // P(Bin(n, 1/2) <= k), accumulated term by term.
    let mut term = 0.5f64.powi(n as i32);
    let mut below = 0.0;
    let mut rank = 1;
    for k in 0..n / 2 {
        below += term;
        if below > 0.025 {
            break;
        }
        rank = k + 1;
        term *= (n - k) as f64 / (k + 1) as f64;
    }
    rank
}

/// The time of one side's chunk in a paired comparison.
pub const PAIR_CHUNK: Duration = Duration::from_millis(1);

/// Work bound by the FMA units and nothing else, which two threads run in half the time
/// wherever the machine gives them two cores of their own: `calls` products of 16x64 by 64x64
/// through kcp's micro-kernel, on operands of this call that stay in L1.
pub fn fma_loop(calls: u64) -> f32 {
    let g = Gemm::row_major(16, 64, 64);
    let (w, a, mut out) = (vec![0.5f32; 16 * 64], vec![0.25f32; 64 * 64], vec![0.0f32; 16 * 64]);
    for _ in 0..calls {
        gemm(&mut out, std::hint::black_box(&a), &w, g);
    }
    out[0]
}

/// [`fma_loop`] split over this thread and one of rayon's pool (`forward_par`'s arrangement).
pub fn fma_loop_on_two(calls: u64) -> f32 {
    let (mut theirs, mut mine) = (0.0, 0.0);
    rayon::in_place_scope(|s| {
        s.spawn(|_| theirs = fma_loop(calls / 2));
        mine = fma_loop(calls - calls / 2);
    });
    theirs + mine
}

/// The products of [`fma_loop`] that take about `PAIR_CHUNK` on this thread.
pub fn fma_calls_per_chunk() -> u64 {
    let probe = 256;
    fma_loop(probe);
    let t = Instant::now();
    std::hint::black_box(fma_loop(probe));
    let ns = t.elapsed().as_nanos().max(1);
    (u128::from(probe) * PAIR_CHUNK.as_nanos() / ns).max(1) as u64
}

impl Bench {
    /// How much faster `candidate` runs than `base`, measured in pairs: chunks of calls (about
    /// [`PAIR_CHUNK`] each, at least one call) of one and then the other, the order swapped
    /// every pair, each chunk timed by the median of its calls. Both see the same state of the
    /// machine within a pair, so a slow spell of this shared VM moves both, not the ratio.
    /// `threads`: one side runs on two threads. Its chunks are then longer ([`Bench::threads_chunk`])
    /// and start with an untimed call: on this VM a second core that idled through the other
    /// side's chunk runs slowly for the first milliseconds (`par_warmup` measures that), which
    /// is not what a comparison of back-to-back speeds is after.
    pub fn paired(&self, threads: bool, mut base: impl FnMut(), mut candidate: impl FnMut()) -> Speedup {
        let (min_pairs, budget) =
            if self.quick { (6, Duration::from_millis(50)) } else { (15, Duration::from_millis(600)) };
        let time = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            f();
            t.elapsed()
        };
        // Warm both up, sizing their chunks by that call (the table's rows have just run them).
        let length = if threads { self.threads_chunk() } else { PAIR_CHUNK };
        let calls = |f: &mut dyn FnMut()| (length.as_nanos() / time(f).as_nanos().max(1)).clamp(1, 1000) as usize;
        let (base_calls, candidate_calls) = (calls(&mut base), calls(&mut candidate));
        let chunk = |f: &mut dyn FnMut(), calls: usize| {
            if threads {
                f();
            }
            let mut times: Vec<Duration> = (0..calls).map(|_| time(f)).collect();
            times.sort();
            times[calls / 2].as_nanos() as f64
        };
        let start = Instant::now();
        let mut ratios = Vec::new();
        while ratios.len() < min_pairs || (start.elapsed() < budget && ratios.len() < 101) {
            let (b, c) = if ratios.len() % 2 == 0 {
                let b = chunk(&mut base, base_calls);
                (b, chunk(&mut candidate, candidate_calls))
            } else {
                let c = chunk(&mut candidate, candidate_calls);
                (chunk(&mut base, base_calls), c)
            };
            ratios.push(b / c);
        }
        ratios.sort_by(f64::total_cmp);
        let (n, rank) = (ratios.len(), median_interval_rank(ratios.len()));
        let median = if n % 2 == 1 { ratios[n / 2] } else { (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0 };
        Speedup { median, low: ratios[rank - 1], high: ratios[n - rank], pairs: n }
    }

    /// The length of a chunk of a paired comparison on two threads: long enough for the second
    /// core to be at speed for most of it.
    pub fn threads_chunk(&self) -> Duration {
        Duration::from_millis(if self.quick { 20 } else { 100 })
    }
}

#[cfg(test)]
mod tests {
    use super::median_interval_rank;

    /// `P(Bin(n, 1/2) <= k) <= 2.5%`, in exact integers.
    pub fn tail_fits(n: u32, k: u32) -> bool {
        let choose = |i: u32| (0..i).fold(1u128, |c, t| c * u128::from(n - t) / u128::from(t + 1));
        let below: u128 = (0..=k).map(choose).sum();
        below * 40 <= 1u128 << n
    }

    #[test]
    pub fn the_median_interval_is_the_widest_rank_with_95_percent() {
        for n in 1..=101u32 {
            let j = median_interval_rank(n as usize) as u32;
            if j > 1 || tail_fits(n, 0) {
                assert!(tail_fits(n, j - 1), "n = {n}: rank {j} covers less than 95%");
            }
            assert!(!tail_fits(n, j), "n = {n}: rank {} would still cover 95%", j + 1);
        }
        // Known values: the extremes of 6 (96.9%), the 4th of 15 (96.5%), the 41st of 101 (95.4%).
        assert_eq!([6, 15, 101].map(median_interval_rank), [1, 4, 41]);
    }
}
