//! Row splits (`kcp_ir::compile`'s `split`): every index a row may be cut along, of every
//! format over random shapes with dims of 1, each part run on its slice of the cores and placed
//! by the cut, against the dense f64 reference of the whole layer; and the indices that may
//! not be cut (the batch, x's modes after the first).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp_core::Inner;
use kcp_ir::network::{eval, Format, Network};
use kcp_ir::test::{relative_error, split_along, Rng};
use kcp_ir::{Batch, Index, Options};
use proptest::prelude::*;

fn format(kind: usize, modes: usize, ranks: &[usize]) -> Format {
    let rank = |k: usize| ranks[k % ranks.len()];
    match kind {
        0 => Format::Kcp { rank: rank(0) },
        1 => Format::Cp { rank: rank(0) },
        2 => Format::Tt { ranks: (0..=modes).map(|k| if k == 0 || k == modes { 1 } else { rank(k) }).collect() },
        3 => Format::Tr { ranks: (0..2 * modes).map(rank).collect() },
        4 => Format::Bt { blocks: rank(0), ranks: (1..=modes).map(rank).collect() },
        _ => Format::Ht { rank: rank(0) },
    }
}

/// Every index a network of `modes` modes may have (a format's bonds are fewer than 4 per mode).
fn indices(modes: usize) -> Vec<Index> {
    let mut all = vec![Index::Batch, Index::Rank];
    all.extend((0..modes).flat_map(|d| [Index::In(d), Index::Out(d)]));
    all.extend((0..4 * modes).map(Index::Bond));
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_cut_of_every_format_sums_to_the_dense_layer(
        kind in 0usize..6,
        (in_shape, out_shape) in (1usize..=3).prop_flat_map(|d| {
            (proptest::collection::vec(1usize..=4, d), proptest::collection::vec(1usize..=4, d))
        }),
        ranks in proptest::collection::vec(1usize..=3, 6),
        seed in 0u64..1000,
    ) {
        let modes = in_shape.len();
        let network = Network::new(&in_shape, &out_shape, format(kind, modes, &ranks), Batch::Symbolic).unwrap();
        let name = format!("{} {in_shape:?} -> {out_shape:?}", network.format());
        let options = Options::default();
        let (plan, _) = network.plan(&options);
        let nest = kcp_ir::lower(&plan, &network.graph());
        let mut rng = Rng::new(seed);
        let cores = eval::random_cores(&network, &mut rng);
        let x = rng.vec(network.input_size());
        let want = eval::dense_forward(&network, &cores, &x, 1);
        let mut cuts = 0;
        for index in indices(modes) {
            let size = match index {
                Index::Batch => 1,
                Index::In(d) if d > 0 => 1,
                other => network.size(other),
            };
            let Some(split) = split_along(&network, &plan, index, &options) else {
                prop_assert!(size < 2, "{name}: {index} of size {size} was not cut");
                continue;
            };
            prop_assert!(size >= 2, "{name}: {index} of size {size} was cut");
            cuts += 1;
            split.check(&nest).unwrap_or_else(|e| panic!("{name}, {index}: {e}"));
            let mut y = vec![0.0f64; network.output_size()];
            for (k, part) in split.parts.iter().enumerate() {
                let part_cores = split.row.cores(k, &cores, &nest.cores);
                let prep = part.prepare(&part_cores);
                let extra = split.row.extra_scratch(k, network.output_size());
                let mut scratch = vec![f64::NAN; 2 * part.scratch_len + extra];
                split.row.run_part(k, &x, &mut y, &mut scratch, |x, y, s| part.run_row(x, y, s, &part_cores, &prep));
            }
            let error = relative_error(&y, &want);
            prop_assert!(error < 1e-12, "{name}, cut {}: error {error}", split.row);
        }
        prop_assert!(cuts > 0 || in_shape[0] < 2, "{name}: x's first mode was not cut");
    }
}

/// The layers of the matched-budget comparison each run a single row on two threads: the cut
/// its compile chose halves the row's MACs (within one value of the index), as `kcp plan`
/// prints it.
#[test]
fn the_comparison_layers_cut_their_rows_in_halves() {
    let formats = [
        Format::Kcp { rank: 9 },
        Format::Tt { ranks: vec![1, 4, 4, 4, 1] },
        Format::Tr { ranks: vec![6; 8] },
        Format::Bt { blocks: 2, ranks: vec![4; 4] },
        Format::Cp { rank: 36 },
        Format::Ht { rank: 7 },
    ];
    for format in formats {
        let network = Network::new(&[8, 20, 20, 18], &[16, 4, 4, 4], format, Batch::Symbolic).unwrap();
        let compiled = kcp_ir::compile(&network.spec(), &Options::default()).unwrap();
        let split = compiled.split.as_ref().unwrap_or_else(|| panic!("{}: no split", network.format()));
        let larger = split.parts.iter().map(|p| p.macs_per_row).max().unwrap();
        let whole = compiled.plan.macs();
        assert!(larger * 10 <= whole * 6, "{}: {} leaves {larger} of {whole} MACs", network.format(), split.row);
        split.check(&compiled.nest).unwrap();
        // A part's products on x sweep the batch's next row, a whole row on (not the part's
        // own input size, which lands on the other part's block of x).
        for kernel in split.parts.iter().flat_map(|p| &p.call) {
            let stream = match kernel.inner {
                Inner::Gemm { shape, .. } => shape.stream,
                Inner::GemmRowsFromA { shape, .. } => shape.stream,
                _ => 0,
            };
            assert!(stream == 0 || stream == 57_600, "{}: {stream}\n{kernel}", network.format());
        }
    }
}

/// A layer too small for threads has no split.
#[test]
fn small_layers_are_not_cut() {
    let small = Network::new(&[4, 4, 4], &[4, 4, 4], Format::Kcp { rank: 2 }, Batch::Symbolic).unwrap();
    let compiled = kcp_ir::compile(&small.spec(), &Options::default()).unwrap();
    assert!(compiled.split.is_none(), "{:?}", compiled.split.map(|s| s.row));
}
