//! Choosing a layer: the tensorization (how N and M fold into modes), the format and the ranks
//! of a compressed layer for a parameter budget, measured on this machine (`kcp tune`,
//! docs/tune.md).
//!
//! The search: every tensorization of N and M into D modes of at least 2 (with padding, of
//! slightly larger sizes whose factors are 2, 3 and 5 only), the pairs (n_d, m_d) taken as a
//! set (an order of the pairs is the same layer up to a permutation of x's and y's modes); for
//! each format, the most promising by the parameters one unit of its rank costs ([`per_rank`],
//! smallest first: the budget then buys the most rank); the largest uniform ranks within the
//! budget, at least [`MIN_RANK`] (and half of them, a smaller point for the front); each
//! candidate planned (its exact MACs); the cheapest few per format compiled and timed with the
//! executor, calls interleaved candidate by candidate; the Pareto front of parameters against
//! time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::ir::network::{Format, Network};
use crate::ir::{compile, Batch, Compiled, Options, Spec};
use crate::{Executor, Rng, Threads};

/// How N and M fold into modes: x `[n_1, .., n_D]` (N padded to their product with zeros) and
/// y `[m_1, .., m_D]` (cut back to M).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tensorization {
    /// n_1 .. n_D.
    pub in_shape: Vec<usize>,
    /// m_1 .. m_D.
    pub out_shape: Vec<usize>,
}

impl Tensorization {
    /// The product of the input modes (N, or N padded).
    pub fn in_size(&self) -> usize {
        self.in_shape.iter().product()
    }

    /// The product of the output modes (M, or M padded).
    pub fn out_size(&self) -> usize {
        self.out_shape.iter().product()
    }
}

/// What the search orders a format's tensorizations by: about the parameters one unit of rank
/// costs, `sum_d n_d + m_d` for the formats whose cores hold a mode each (CP, TR), `sum_d n_d
/// m_d` for those whose cores hold a pair (KCP, TT, BT, HT).
pub fn per_rank(format: &str, t: &Tensorization) -> u64 {
    let pairs = t.in_shape.iter().zip(&t.out_shape);
    match format {
        "cp" | "tr" => pairs.map(|(&n, &m)| (n + m) as u64).sum(),
        _ => pairs.map(|(&n, &m)| (n * m) as u64).sum(),
    }
}

/// The smallest uniform rank the tuner proposes: a rank-1 layer (one Kronecker or outer
/// product, a weight of rank one in each mode) fits any budget and can learn little.
pub const MIN_RANK: usize = 2;

/// The factorizations of `n` into `modes` factors of at least 2, each non-increasing.
pub fn factorizations(n: usize, modes: usize) -> Vec<Vec<usize>> {
    fn walk(n: usize, modes: usize, most: usize, prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if modes == 0 {
            if n == 1 {
                out.push(prefix.clone());
            }
            return;
        }
        // The next factor f: at most `most` (non-increasing), at least 2, and f^modes >= n.
        let mut f = most.min(n);
        while f >= 2 {
            if n.is_multiple_of(f) && (f as u128).pow(modes as u32) >= n as u128 {
                prefix.push(f);
                walk(n / f, modes - 1, f, prefix, out);
                prefix.pop();
            }
            f -= 1;
        }
    }
    let mut out = Vec::new();
    if modes > 0 && n >= 2 {
        walk(n, modes, n, &mut Vec::new(), &mut out);
    }
    out
}

/// The distinct orderings of a list.
fn orderings(values: &[usize]) -> Vec<Vec<usize>> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mut out = vec![sorted.clone()];
    // Next permutation in lexicographic order, until the last.
    loop {
        let Some(i) = (1..sorted.len()).rev().find(|&i| sorted[i - 1] < sorted[i]) else {
            return out;
        };
        let j = (i..sorted.len()).rev().find(|&j| sorted[j] > sorted[i - 1]).unwrap_or(i);
        sorted.swap(i - 1, j);
        sorted[i..].reverse();
        out.push(sorted.clone());
    }
}

/// Every tensorization of `n` inputs and `m` outputs into `modes` modes of at least 2, each
/// once: the pairs (n_d, m_d) in non-increasing order (a tensorization whose pairs come in
/// another order is the same layer with x's and y's modes permuted). `in_shape` or
/// `out_shape`, where given, fix that side, in its order.
pub fn tensorizations(
    n: usize,
    m: usize,
    modes: usize,
    in_shape: Option<&[usize]>,
    out_shape: Option<&[usize]>,
) -> Vec<Tensorization> {
    let side = |size: usize, fixed: Option<&[usize]>| -> Vec<Vec<usize>> {
        match fixed {
            Some(shape) if shape.len() == modes && shape.iter().product::<usize>() == size => vec![shape.to_vec()],
            Some(_) => Vec::new(),
            None => factorizations(size, modes),
        }
    };
    let (ins, outs) = (side(n, in_shape), side(m, out_shape));
    let mut found = BTreeSet::new();
    for a in &ins {
        for b in &outs {
            // One side keeps its order (the fixed one, or the inputs'); the other takes each of
            // its orderings.
            let fixed_out = out_shape.is_some() && in_shape.is_none();
            let (keep, vary) = if fixed_out { (b, a) } else { (a, b) };
            let varied = if in_shape.is_some() && out_shape.is_some() { vec![vary.clone()] } else { orderings(vary) };
            for v in varied {
                let (i, o) = if fixed_out { (v, keep.clone()) } else { (keep.clone(), v) };
                let mut pairs: Vec<(usize, usize)> = i.into_iter().zip(o).collect();
                if in_shape.is_none() && out_shape.is_none() {
                    pairs.sort_unstable_by(|a, b| b.cmp(a));
                }
                found.insert(pairs);
            }
        }
    }
    found
        .into_iter()
        .map(|pairs| Tensorization {
            in_shape: pairs.iter().map(|p| p.0).collect(),
            out_shape: pairs.iter().map(|p| p.1).collect(),
        })
        .collect()
}

/// The sizes a side of `size` may be padded to within `pad` (a fraction: 0.05 for 5%): `size`
/// itself, then the sizes up to `size * (1 + pad)` whose prime factors are 2, 3 and 5 only
/// (those whose factorizations are the most even), smallest first.
pub fn padded_sizes(size: usize, pad: f64) -> Vec<usize> {
    let most = ((size as f64) * (1.0 + pad.max(0.0))).floor() as usize;
    let smooth = |mut v: usize| {
        for p in [2, 3, 5] {
            while v > 1 && v.is_multiple_of(p) {
                v /= p;
            }
        }
        v == 1
    };
    std::iter::once(size).chain((size + 1..=most).filter(|&v| smooth(v))).collect()
}

/// The formats the tuner tries, by name.
pub const FORMATS: [&str; 6] = ["kcp", "cp", "tt", "tr", "bt", "ht"];

/// A format of `name` whose ranks all follow one number `r` (the uniform ranks; a block term
/// with `blocks` blocks), for `modes` modes; None for an unknown name.
pub fn uniform(name: &str, modes: usize, r: usize, blocks: usize) -> Option<Format> {
    Some(match name {
        "kcp" => Format::Kcp { rank: r },
        "cp" => Format::Cp { rank: r },
        "ht" => Format::Ht { rank: r },
        "tt" => {
            let mut ranks = vec![r; modes + 1];
            ranks[0] = 1;
            ranks[modes] = 1;
            Format::Tt { ranks }
        }
        "tr" => Format::Tr { ranks: vec![r; 2 * modes] },
        "bt" => Format::Bt { blocks, ranks: vec![r; modes] },
        _ => return None,
    })
}

/// The block counts tried for a block term.
const BT_BLOCKS: [usize; 3] = [1, 2, 4];

/// The formats of `name` for a tensorization whose parameters are within `budget`: for each
/// variant of the format (a block term's block counts), the largest uniform rank that fits
/// (`Fit::Budget`) and half of it (`Fit::Half`), neither below [`MIN_RANK`]. Each with its
/// parameters.
pub fn fitting_formats(name: &str, t: &Tensorization, budget: u64) -> Vec<(Format, u64, Fit)> {
    let modes = t.in_shape.len();
    let blocks: &[usize] = if name == "bt" { &BT_BLOCKS } else { &[1] };
    let mut out = Vec::new();
    for &k in blocks {
        let params = |r: usize| -> Option<u64> {
            let format = uniform(name, modes, r, k)?;
            Network::new(&t.in_shape, &t.out_shape, format, Batch::Symbolic).ok().map(|n| n.params())
        };
        // The largest r with params(r) <= budget: double, then bisect (params grow with r).
        if params(MIN_RANK).is_none_or(|p| p > budget) {
            continue;
        }
        let (mut lo, mut hi) = (MIN_RANK, 2 * MIN_RANK);
        while params(hi).is_some_and(|p| p <= budget) {
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if params(mid).is_some_and(|p| p <= budget) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        for (r, fit) in [(lo, Fit::Budget), (lo / 2, Fit::Half)] {
            if r >= MIN_RANK {
                if let (Some(format), Some(p)) = (uniform(name, modes, r, k), params(r)) {
                    if !out.iter().any(|(f, _, _)| *f == format) {
                        out.push((format, p, fit));
                    }
                }
            }
        }
    }
    out
}

/// Which of a format's ranks a candidate has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fit {
    /// The largest uniform ranks within the budget.
    Budget,
    /// Half of those: a smaller, faster point for the front.
    Half,
    /// A layer given to time beside the candidates ([`TuneOptions::compare`]), not one.
    Given,
}

/// What to search and measure.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// N, the inputs.
    pub in_size: usize,
    /// M, the outputs.
    pub out_size: usize,
    /// The most parameters a layer may have (its cores; a bias not counted).
    pub budget: u64,
    /// The rows per call the layers are timed at.
    pub batch: usize,
    /// The threads they are timed on.
    pub threads: Threads,
    /// The formats tried (names of [`FORMATS`]).
    pub formats: Vec<String>,
    /// The mode counts D tried.
    pub modes: std::ops::RangeInclusive<usize>,
    /// How much larger a side may be padded, as a fraction (0 for none).
    pub pad: f64,
    /// Fixed input modes, if any.
    pub in_shape: Option<Vec<usize>>,
    /// Fixed output modes, if any.
    pub out_shape: Option<Vec<usize>>,
    /// About how long the tuner may take, planning and measuring.
    pub time: Duration,
    /// Layers to time beside the candidates, in the same rounds (a hand-chosen layer to hold
    /// the tuner's against): their formats and modes, of these sizes or padded ones.
    pub compare: Vec<(Format, Tensorization)>,
}

/// Why a tuning cannot be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TuneError {
    /// A side has no tensorization into the modes asked for.
    #[error(
        "{size} ({side}) has no factorization into {modes} modes of at least 2{hint}",
        hint = if *padded { "" } else { "; allow padding with --pad 5%" }
    )]
    NoTensorization {
        /// "inputs" or "outputs".
        side: &'static str,
        /// The size.
        size: usize,
        /// The mode counts, as given.
        modes: String,
        /// Whether padding was allowed.
        padded: bool,
    },
    /// A fixed shape does not multiply to its size.
    #[error("{side} shape {shape:?} multiplies to {product}, not {size}")]
    Shape {
        /// "--in-shape" or "--out-shape".
        side: &'static str,
        /// The shape.
        shape: Vec<usize>,
        /// Its product.
        product: usize,
        /// The size it must have.
        size: usize,
    },
    /// No layer of the formats fits the budget.
    #[error("no layer of {formats} fits {budget} parameters: the smallest needs {smallest}")]
    Budget {
        /// The budget.
        budget: u64,
        /// The formats tried.
        formats: String,
        /// The fewest parameters a candidate needs.
        smallest: u64,
    },
    /// An unknown format name.
    #[error("unknown format {0:?}: the tuner tries kcp, cp, tt, tr, bt, ht")]
    Format(String),
    /// A layer to compare with that is not a layer of these sizes.
    #[error("a layer to compare with: {0}")]
    Compare(String),
}

/// A layer the tuner planned, and what it measured of it.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its format and ranks.
    pub format: Format,
    /// Its modes.
    pub tensorization: Tensorization,
    /// Its parameters.
    pub params: u64,
    /// Whether its ranks are the budget's, half of them, or given to compare with.
    pub fit: Fit,
    /// MACs per row of its plan.
    pub macs: u64,
    /// The floats per row its plan's intermediates take (the program's scratch), once compiled.
    pub scratch: Option<usize>,
    /// The measured median time per row, in microseconds, once timed.
    pub us_per_row: Option<f64>,
}

/// What a tuning found.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The tensorizations enumerated (every D, every padded size).
    pub tensorizations: usize,
    /// The candidates (a format and ranks on a kept tensorization) there were to plan: more
    /// than `planned` where the time ran out.
    pub candidates: usize,
    /// The candidates planned, cheapest first within a format.
    pub planned: Vec<Candidate>,
    /// The candidates timed (a subset of `planned`, with times).
    pub measured: Vec<Candidate>,
    /// Indices into `measured` of the Pareto front (no other measured candidate has at least
    /// as many parameters and is at least as fast, one of them strictly), fewest parameters
    /// first.
    pub front: Vec<usize>,
    /// The layers of [`TuneOptions::compare`], timed in the same rounds.
    pub compared: Vec<Candidate>,
}

/// The tensorizations kept per mode count for planning (the cheapest by parameters per rank).
const KEEP_PER_MODES: usize = 12;

/// The search of the module's doc. `progress(stage, done, total)` is called as candidates are
/// planned (stage "planning") and then timed ("measuring", rounds).
pub fn tune(options: &TuneOptions, mut progress: impl FnMut(&str, usize, usize)) -> Result<Tuning, TuneError> {
    let start = Instant::now();
    for name in &options.formats {
        if !FORMATS.contains(&name.as_str()) {
            return Err(TuneError::Format(name.clone()));
        }
    }
    for (side, shape, size) in
        [("--in-shape", &options.in_shape, options.in_size), ("--out-shape", &options.out_shape, options.out_size)]
    {
        if let Some(shape) = shape {
            let product = shape.iter().product::<usize>();
            if product != size {
                return Err(TuneError::Shape { side, shape: shape.clone(), product, size });
            }
        }
    }
    let modes_text = format!("{}..{}", options.modes.start(), options.modes.end());
    let sizes = |size: usize, fixed: &Option<Vec<usize>>| {
        if fixed.is_some() {
            vec![size]
        } else {
            padded_sizes(size, options.pad)
        }
    };
    let (in_sizes, out_sizes) =
        (sizes(options.in_size, &options.in_shape), sizes(options.out_size, &options.out_shape));
    let mut all = 0;
    // Per format, the tensorizations kept for it.
    let mut kept: Vec<Vec<Tensorization>> = vec![Vec::new(); options.formats.len()];
    let mut sides_found = [false, false];
    for modes in options.modes.clone() {
        let mut these = Vec::new();
        for &n in &in_sizes {
            sides_found[0] |= options.in_shape.is_some() || !factorizations(n, modes).is_empty();
            for &m in &out_sizes {
                sides_found[1] |= options.out_shape.is_some() || !factorizations(m, modes).is_empty();
                these.extend(tensorizations(n, m, modes, options.in_shape.as_deref(), options.out_shape.as_deref()));
            }
        }
        all += these.len();
        // For each format, the fewest parameters per rank first; then the least padding; then
        // in order.
        for (name, kept) in options.formats.iter().zip(&mut kept) {
            let key = |t: &Tensorization| (per_rank(name, t), t.in_size() + t.out_size());
            these.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.cmp(b)));
            kept.extend(these.iter().take(KEEP_PER_MODES).cloned());
        }
    }
    for (k, (side, size)) in [("inputs", options.in_size), ("outputs", options.out_size)].into_iter().enumerate() {
        if !sides_found[k] {
            return Err(TuneError::NoTensorization { side, size, modes: modes_text, padded: options.pad > 0.0 });
        }
    }
    if kept.iter().all(Vec::is_empty) {
        return Err(TuneError::NoTensorization {
            side: "inputs and outputs",
            size: options.in_size,
            modes: modes_text,
            padded: options.pad > 0.0,
        });
    }

    // Every format's fitting ranks on every kept tensorization, planned; planning stops at
    // half of the time allowed.
    // One list per format, then taken in turns, so that every format is planned however soon
    // the time runs out.
    let mut lists: Vec<Vec<(Format, Tensorization, u64, Fit)>> = Vec::new();
    let mut smallest = u64::MAX;
    for (name, kept) in options.formats.iter().zip(&kept) {
        let mut list = Vec::new();
        for t in kept {
            let modes = t.in_shape.len();
            if let Some(p) = uniform(name, modes, MIN_RANK, 1)
                .and_then(|f| Network::new(&t.in_shape, &t.out_shape, f, Batch::Symbolic).ok())
                .map(|n| n.params())
            {
                smallest = smallest.min(p);
            }
            for (format, params, fit) in fitting_formats(name, t, options.budget) {
                list.push((format, t.clone(), params, fit));
            }
        }
        lists.push(list);
    }
    let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
    let mut jobs = Vec::new();
    for k in 0..longest {
        for list in &mut lists {
            if let Some(job) = list.get_mut(k) {
                jobs.push(job.clone());
            }
        }
    }
    if jobs.is_empty() {
        return Err(TuneError::Budget { budget: options.budget, formats: options.formats.join(", "), smallest });
    }
    let plan_options = Options { node_limit: 200_000, ..Options::default() };
    let mut planned = Vec::new();
    let total = jobs.len();
    for (k, (format, t, params, fit)) in jobs.into_iter().enumerate() {
        if start.elapsed() > options.time / 2 && !planned.is_empty() {
            break;
        }
        progress("planning", k, total);
        let Ok(network) = Network::new(&t.in_shape, &t.out_shape, format.clone(), Batch::Symbolic) else {
            continue;
        };
        let (plan, _) = network.plan(&plan_options);
        planned.push(Candidate {
            format,
            tensorization: t,
            params,
            fit,
            macs: plan.macs(),
            scratch: None,
            us_per_row: None,
        });
    }
    planned.sort_by(|a, b| {
        (a.format.name(), a.fit, a.macs, a.tensorization.clone()).cmp(&(
            b.format.name(),
            b.fit,
            b.macs,
            b.tensorization.clone(),
        ))
    });

    // For each format, the fewest MACs at the budget's ranks for each mode count (a menu across
    // D: fewer modes mean fewer, larger steps), and the fewest at half of them; compiled.
    let mut finalists: Vec<(Candidate, Compiled)> = Vec::new();
    for name in &options.formats {
        let groups = options.modes.clone().map(|d| (Fit::Budget, Some(d))).chain([(Fit::Half, None)]);
        for (fit, modes) in groups {
            let chosen = planned.iter().find(|c| {
                c.format.name() == name && c.fit == fit && modes.is_none_or(|d| c.tensorization.in_shape.len() == d)
            });
            let Some(candidate) = chosen else { continue };
            let spec = Spec::new(
                &candidate.tensorization.in_shape,
                &candidate.tensorization.out_shape,
                candidate.format.clone(),
            )
            .with_batch(options.batch);
            if let Ok(compiled) = compile(&spec, &plan_options) {
                let mut candidate = candidate.clone();
                candidate.scratch = Some(compiled.nest.scratch_len);
                finalists.push((candidate, compiled));
            }
        }
    }
    for (format, t) in &options.compare {
        let spec = Spec::new(&t.in_shape, &t.out_shape, format.clone()).with_batch(options.batch);
        let compiled = compile(&spec, &plan_options).map_err(|e| TuneError::Compare(e.to_string()))?;
        if t.in_size() < options.in_size || t.out_size() < options.out_size {
            return Err(TuneError::Compare(format!(
                "a layer of {} -> {} cannot hold {} -> {} (a layer may be padded, not cut)",
                t.in_size(),
                t.out_size(),
                options.in_size,
                options.out_size
            )));
        }
        let candidate = Candidate {
            format: format.clone(),
            tensorization: t.clone(),
            params: compiled.network().params(),
            fit: Fit::Given,
            macs: compiled.plan.macs() / compiled.plan.batch_rows().max(1),
            scratch: Some(compiled.nest.scratch_len),
            us_per_row: None,
        };
        finalists.push((candidate, compiled));
    }
    let (compared, measured): (Vec<Candidate>, Vec<Candidate>) =
        measure(&finalists, options, start, &mut progress).into_iter().partition(|c| c.fit == Fit::Given);
    let front = front(&measured);
    Ok(Tuning { tensorizations: all, candidates: total, planned, measured, front, compared })
}

/// Time each finalist: calls of its executor interleaved candidate by candidate in rounds (each
/// meets the machine as the others do), until the time allowed is spent (at least three
/// rounds); each candidate's median per row. A padded layer's call includes padding x and
/// cutting y.
fn measure(
    finalists: &[(Candidate, Compiled)],
    options: &TuneOptions,
    start: Instant,
    progress: &mut impl FnMut(&str, usize, usize),
) -> Vec<Candidate> {
    let (n, m, batch) = (options.in_size, options.out_size, options.batch.max(1));
    let mut rng = Rng::new(7);
    let x = rng.vec_f32(batch * n, 1.0);
    let mut runs: Vec<Box<dyn FnMut()>> = Vec::new();
    let mut timed: Vec<&Candidate> = Vec::new();
    for (candidate, compiled) in finalists {
        let network = compiled.network();
        let weights = crate::random_weights(network, false, 1);
        let Ok(executor) = Executor::new(compiled.nest.clone(), weights) else {
            continue;
        };
        let Ok(executor) = executor.interleaved(compiled.lanes.clone()).split(compiled.split.clone()) else {
            continue;
        };
        let (np, mp) = (candidate.tensorization.in_size(), candidate.tensorization.out_size());
        let mut xp = vec![0.0f32; batch * np];
        let mut yp = vec![0.0f32; batch * mp];
        let mut y = vec![0.0f32; batch * m];
        let x = x.clone();
        let threads = options.threads;
        timed.push(candidate);
        runs.push(Box::new(move || {
            let result = if np == n && mp == m {
                executor.forward_par(&x, &mut y, threads)
            } else {
                for (row, padded) in x.chunks_exact(n).zip(xp.chunks_exact_mut(np)) {
                    padded[..n].copy_from_slice(row);
                }
                let result = executor.forward_par(&xp, &mut yp, threads);
                for (row, padded) in y.chunks_exact_mut(m).zip(yp.chunks_exact(mp)) {
                    row.copy_from_slice(&padded[..m]);
                }
                result
            };
            std::hint::black_box(result.is_ok());
        }));
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    let deadline = options.time.saturating_sub(start.elapsed());
    let measuring = Instant::now();
    let mut round = 0;
    while round < 3 || (measuring.elapsed() < deadline && round < 1000) {
        progress("measuring", round.min(99), 100);
        for (run, times) in runs.iter_mut().zip(&mut samples) {
            let begin = Instant::now();
            run();
            times.push(begin.elapsed().as_secs_f64());
        }
        round += 1;
    }
    timed
        .into_iter()
        .zip(samples)
        .map(|(candidate, mut times)| {
            times.sort_by(f64::total_cmp);
            let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
            Candidate { us_per_row: Some(median * 1e6 / batch as f64), ..candidate.clone() }
        })
        .collect()
}

/// Indices of the Pareto front of parameters (more is better: the budget buys capacity)
/// against time (less is better), fewest parameters first.
pub fn front(candidates: &[Candidate]) -> Vec<usize> {
    let time = |c: &Candidate| c.us_per_row.unwrap_or(f64::INFINITY);
    let dominated = |k: usize| {
        candidates.iter().enumerate().any(|(j, other)| {
            j != k
                && other.params >= candidates[k].params
                && time(other) <= time(&candidates[k])
                && (other.params > candidates[k].params || time(other) < time(&candidates[k]))
        })
    };
    let mut front: Vec<usize> = (0..candidates.len()).filter(|&k| !dominated(k)).collect();
    front.sort_by(|&a, &b| {
        candidates[a].params.cmp(&candidates[b].params).then(time(&candidates[a]).total_cmp(&time(&candidates[b])))
    });
    front.dedup_by(|a, b| {
        candidates[*a].params == candidates[*b].params && time(&candidates[*a]) == time(&candidates[*b])
    });
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factorizations_are_non_increasing_and_complete() {
        assert_eq!(factorizations(12, 2), vec![vec![6, 2], vec![4, 3]]);
        assert_eq!(factorizations(12, 3), vec![vec![3, 2, 2]]);
        assert!(factorizations(7, 2).is_empty());
        assert_eq!(factorizations(7, 1), vec![vec![7]]);
    }

    #[test]
    fn orderings_are_distinct() {
        assert_eq!(orderings(&[2, 1, 2]), vec![vec![1, 2, 2], vec![2, 1, 2], vec![2, 2, 1]]);
        assert_eq!(orderings(&[3]).len(), 1);
    }

    #[test]
    fn padded_sizes_are_smooth() {
        assert_eq!(padded_sizes(97, 0.05), vec![97, 100]);
        assert_eq!(padded_sizes(97, 0.0), vec![97]);
    }
}
