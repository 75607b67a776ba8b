//! The row split stage: which index of a layer's network to cut in two so that a single row
//! runs on two threads, each part a layer of its own over its slice of the cores
//! ([`kcp_core::Split`]).
//!
//! In: the network and its plan. Out: the cut and both parts' loop nests, or `None` where no
//! cut pays. The candidates are the indices whose cut needs no copy of x (all but the batch
//! and x's modes after the first): the rank, the bonds and the blocks (the parts' terms are
//! summed), x's first mode (each part reads a contiguous block of x) and every output mode
//! (each part writes its slab of y). A step whose
//! indices include the cut one costs each part its share; a step without it (a product before
//! the index appears, or after it is summed) costs each part all of it. Each candidate is cut
//! as evenly as its size allows, each part in the layer's order (a cut only makes the network
//! smaller), and recosted. Of those whose larger part saves at least [`SPLIT_MIN_GAIN`] of the
//! row's MACs, the [`SPLIT_MAX_LOWERED`] of fewest MACs (within [`SPLIT_LOWERED_WITHIN`] of
//! the fewest) are lowered, and the one whose larger part the layout model estimates fastest
//! wins ([`estimate_per_row`]: MACs at the efficiency of each step's inner operation, so a cut
//! that shortens a step's contiguous runs counts as slower), if it saves that much of the
//! row's estimated time too. Of equals, x's first mode
//! wins (each thread reads only its half of x), then a rank or a bond, then an output mode
//! (whose parts write through a copy of their slab of y), each kind in the network's index
//! order.

use kcp_core::{Cut, RowSplit, Split};

use crate::graph::Index;
use crate::loops::{estimate_per_row, LoopNest};
use crate::network::Network;
use crate::plan::Plan;
use crate::tuning::{SPLIT_LOWERED_WITHIN, SPLIT_MAX_LOWERED, SPLIT_MIN_GAIN, SPLIT_MIN_MACS};
use crate::Options;

/// The split of a row of `network` (planned as `plan`, lowered as `nest`) over two threads,
/// if one pays.
pub(crate) fn split(network: &Network, plan: &Plan, nest: &LoopNest, options: &Options) -> Option<Split> {
    let whole = plan.macs();
    if whole < SPLIT_MIN_MACS {
        return None;
    }
    let recost = |part: &Network| part.plan_of(plan.tree(), options.max_prep_elems).macs();
    let larger = |(index, size)| parts(network, index, size).iter().map(recost).max().unwrap_or(u64::MAX);
    let preference = |index: Index| -> u8 {
        match index {
            Index::In(_) => 0,
            Index::Batch | Index::Rank | Index::Bond(_) => 1,
            Index::Out(_) => 2,
        }
    };
    let budget = estimate_per_row(plan, nest, 1) / SPLIT_MIN_GAIN;
    let mut paying: Vec<(u64, u8, Index)> = candidates(network)
        .map(|candidate| (larger(candidate), preference(candidate.0), candidate.0))
        .filter(|&(larger, ..)| (whole as f64) >= SPLIT_MIN_GAIN * larger as f64)
        .collect();
    paying.sort_unstable();
    let fewest = paying.first().map_or(0, |&(larger, ..)| larger);
    paying
        .into_iter()
        .take_while(|&(larger, ..)| larger as f64 <= SPLIT_LOWERED_WITHIN * fewest as f64)
        .take(SPLIT_MAX_LOWERED)
        .filter_map(|(.., index)| {
            let (cut, time) = cut(network, plan, index, options)?;
            (time <= budget).then_some((time, preference(index), cut))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(.., cut)| cut)
}

/// The cut of a row of `network` along `index`, each part in the order of the layer's `plan`
/// (on a network the cut only made smaller, the layer's order stays cheap), lowered; `None`
/// if the index is not one a row may be cut along (the batch, x's modes after the first, or an
/// index of one value).
pub fn along(network: &Network, plan: &Plan, index: Index, options: &Options) -> Option<Split> {
    cut(network, plan, index, options).map(|(cut, _)| cut)
}

/// [`along`], with the layout model's estimate of its larger part's time.
fn cut(network: &Network, plan: &Plan, index: Index, options: &Options) -> Option<(Split, f64)> {
    let (_, size) = candidates(network).find(|&(i, _)| i == index)?;
    let parts = parts(network, index, size);
    let row = network.input_size();
    let lower = |part: &Network| {
        let plan = part.plan_of(plan.tree(), options.max_prep_elems);
        let mut nest = crate::loops::lower(&plan, &part.graph());
        // A part's products on x sweep the next row of the batch, a whole row of the layer
        // on (a part's own input size would be the other part's block of x, in this row).
        crate::loops::next_row_at(&mut nest, row);
        (estimate_per_row(&plan, &nest, 1), nest)
    };
    // The parts of an even cut are the same network: lowered once.
    let (t0, p0) = lower(&parts[0]);
    let (t1, p1) = if parts[0] == parts[1] { (t0, p0.clone()) } else { lower(&parts[1]) };
    Some((Split { row: row_split(network, index, size), parts: [p0, p1] }, t0.max(t1)))
}

/// The indices a row may be cut along, with their sizes: every index of at least two values
/// but the batch and the input modes after the first (whose parts of x are not contiguous).
fn candidates(network: &Network) -> impl Iterator<Item = (Index, usize)> + '_ {
    network
        .sizes()
        .iter()
        .filter(|&&(index, size)| {
            size >= 2 && !matches!(index, Index::Batch) && !matches!(index, Index::In(d) if d > 0)
        })
        .map(|&(index, size)| (index, size as usize))
}

/// Where a cut of `size` values falls: the larger part first.
fn at(size: usize) -> usize {
    size.div_ceil(2)
}

/// The two parts of a cut of `index`.
fn parts(network: &Network, index: Index, size: usize) -> [Network; 2] {
    [at(size), size - at(size)].map(|len| network.restricted(index, len))
}

/// The cut as the runtime reads it.
fn row_split(network: &Network, index: Index, size: usize) -> RowSplit {
    let out = network.out_shape();
    let cut = match index {
        Index::In(_) => Cut::Input { stride: network.input_size() / size },
        Index::Out(d) => Cut::Output { outer: out[..d].iter().product(), inner: out[d + 1..].iter().product() },
        Index::Batch | Index::Rank | Index::Bond(_) => Cut::Sum,
    };
    let axes = network.cores().iter().map(|core| core.indices.iter().position(|&i| i == index)).collect();
    RowSplit { index: index.to_string(), cut, size, at: at(size), axes }
}
