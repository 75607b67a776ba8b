//! Validation: `Spec` -> `ValidSpec`, collecting every error rather than stopping at the first.

use super::{limits, Batch, Spec, ValidSpec};
use crate::error::{Error, Errors, Location, Quantity, Side};
use crate::network::{Format, Network, MAX_CORES};

/// Check a spec, returning every problem found (in the order of the declaration), and build
/// the network of its format.
pub fn validate(spec: &Spec) -> Result<ValidSpec, Errors> {
    let mut errors = Vec::new();
    let n = shape_size(&spec.in_shape, Side::In, &mut errors);
    let m = shape_size(&spec.out_shape, Side::Out, &mut errors);
    let (in_modes, out_modes) = (spec.in_shape.len(), spec.out_shape.len());
    if in_modes != out_modes && in_modes > 0 && out_modes > 0 {
        errors.push(Error::ModeMismatch { in_modes, out_modes });
    }
    format_errors(&spec.format, in_modes, &mut errors);
    match spec.batch {
        Batch::Fixed(0) => errors.push(Error::ZeroBatch),
        Batch::Fixed(b) => {
            checked(b as u128, Quantity::Batch, limits::MAX_BATCH, Location::Batch, &mut errors);
        }
        Batch::Symbolic => {}
    }
    if let Some(cell) = spec.cell {
        if !spec.bias {
            errors.push(Error::CellWithoutBias);
        }
        if cell.hidden == 0 {
            errors.push(Error::ZeroHidden);
        } else if let Some(m) = m {
            let gates = cell.kind.gates() as u128 * cell.hidden as u128;
            if m != gates {
                errors.push(Error::GateMismatch { cell: cell.kind, hidden: cell.hidden, output: m });
            }
        }
    }
    let (Some(n), Some(m), true) = (n, m, errors.is_empty()) else {
        // A shape without a size has recorded why.
        return Err(Errors::new(errors));
    };
    let network = Network::build(&spec.in_shape, &spec.out_shape, &spec.format, spec.batch);
    let cores = network.cores().len();
    if cores > MAX_CORES {
        let (format, modes) = (spec.format.name(), in_modes);
        return Err(Errors::new(vec![Error::TooManyCores { format, modes, cores, max: MAX_CORES }]));
    }
    // Every step of a plan loops over a subset of the indices: their product bounds its MACs.
    let space = network.index_space();
    if space > limits::MAX_INDEX_SPACE {
        let error = Error::TooLarge {
            quantity: Quantity::IndexSpace,
            value: space,
            limit: limits::MAX_INDEX_SPACE,
            location: Location::Rank,
        };
        return Err(Errors::new(vec![error]));
    }
    Ok(ValidSpec { spec: spec.clone(), n: n as usize, m: m as usize, network })
}

/// What is wrong with a format's ranks for a layer of `modes` modes: a single rank within
/// [`limits::MAX_RANK`], every rank and the blocks at least 1, a list of the length the table
/// gives ([`FormatEntry::ranks`](crate::network::FormatEntry::ranks)), a tensor train's ends 1.
fn format_errors(format: &Format, modes: usize, errors: &mut Vec<Error>) {
    let args = format.rank_args();
    if let Some(rank) = args.rank {
        checked(rank as u128, Quantity::Rank, limits::MAX_RANK, Location::Rank, errors);
        if rank == 0 {
            errors.push(Error::ZeroRank);
        }
    }
    if args.blocks == Some(0) {
        errors.push(Error::ZeroBlocks);
    }
    let entry = format.table_entry();
    if let (Some(ranks), Some(list)) = (&args.ranks, entry.ranks) {
        let (expected, what) = ((list.len)(modes), list.names);
        if ranks.len() != expected && modes > 0 {
            errors.push(Error::RankCount { format: entry.name, expected, found: ranks.len(), what });
        }
        for (position, _) in ranks.iter().enumerate().filter(|(_, &r)| r == 0) {
            errors.push(Error::ZeroRankAt { position });
        }
    }
    if let Format::Tt { ranks } = format {
        if let (Some(&first), Some(&last)) = (ranks.first(), ranks.last()) {
            if first != 1 || last != 1 {
                let position = if first != 1 { 0 } else { ranks.len() - 1 };
                errors.push(Error::TtRankEnds { first, last, position });
            }
        }
    }
}

/// The product of a shape if it is well formed and within limits, recording what is wrong.
fn shape_size(shape: &[usize], side: Side, errors: &mut Vec<Error>) -> Option<u128> {
    let before = errors.len();
    if shape.is_empty() || shape.len() > limits::MAX_MODES {
        errors.push(Error::ModesOutOfRange { side, found: shape.len() });
    }
    for (mode, &d) in shape.iter().enumerate() {
        if d == 0 {
            errors.push(Error::ZeroDim { side, mode });
        }
    }
    let quantity = match side {
        Side::In => Quantity::InputSize,
        Side::Out => Quantity::OutputSize,
    };
    let location = Location::Shape(side);
    let product = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let Some(product) = product else {
        errors.push(Error::Overflow { quantity, location });
        return None;
    };
    let size = checked(product as u128, quantity, limits::MAX_SIZE, location, errors)?;
    (errors.len() == before).then_some(size)
}

fn checked(value: u128, quantity: Quantity, limit: u128, location: Location, errors: &mut Vec<Error>) -> Option<u128> {
    if value > limit {
        errors.push(Error::TooLarge { quantity, value, limit, location });
        None
    } else {
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(spec: &Spec) -> Vec<String> {
        match validate(spec) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn accepts_the_ucf11_layer() {
        let spec = validate(&Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], Format::kcp(4))).unwrap();
        assert_eq!((spec.input_size(), spec.output_size()), (57600, 1024));
        assert_eq!(spec.params(), 4 * (32 + 80 + 80 + 288));
        assert_eq!(spec.dense_params(), 58_982_400);
        assert_eq!(spec.to_string(), "in 8x20x20x18 -> out 4x4x4x16, kcp rank 4, batch B");
    }

    #[test]
    fn modes_out_of_range() {
        let errors = validate(&Spec::new(&[], &[], Format::kcp(1))).unwrap_err();
        assert_eq!(
            *errors,
            [Error::ModesOutOfRange { side: Side::In, found: 0 }, Error::ModesOutOfRange { side: Side::Out, found: 0 }]
        );
        assert_eq!(errors[0].to_string(), "in_shape must have between 1 and 8 modes, found 0");
        assert_eq!(
            messages(&Spec::new(&[1; 9], &[1; 9], Format::kcp(1))),
            ["in_shape must have between 1 and 8 modes, found 9", "out_shape must have between 1 and 8 modes, found 9"]
        );
    }

    #[test]
    fn mode_mismatch() {
        let errors = validate(&Spec::new(&[2, 3], &[2, 3, 4], Format::kcp(1))).unwrap_err();
        assert_eq!(*errors, [Error::ModeMismatch { in_modes: 2, out_modes: 3 }]);
        assert_eq!(errors[0].location(), Location::Shape(Side::Out));
        assert_eq!(errors[0].to_string(), "out_shape has 3 modes but in_shape has 2; both need the same number");
    }

    #[test]
    fn zero_dims_zero_rank_and_zero_batch_are_all_reported() {
        let errors = validate(&Spec::new(&[2, 0], &[0, 3], Format::kcp(0)).with_batch(0)).unwrap_err();
        assert_eq!(
            errors.iter().map(|e| (e.to_string(), e.location())).collect::<Vec<_>>(),
            [
                ("in_shape dimension 2 must be at least 1, found 0".to_string(), Location::Dim(Side::In, 1)),
                ("out_shape dimension 1 must be at least 1, found 0".to_string(), Location::Dim(Side::Out, 0)),
                ("rank must be at least 1, found 0".to_string(), Location::Rank),
                ("batch must be at least 1, found 0".to_string(), Location::Batch),
            ]
        );
    }

    #[test]
    fn cells() {
        use crate::spec::CellKind;
        assert!(validate(&Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], Format::kcp(4)).with_cell(CellKind::Lstm, 256))
            .is_ok());
        let errors = validate(&Spec::new(&[8, 20], &[4, 64], Format::kcp(4)).with_cell(CellKind::Gru, 64)).unwrap_err();
        assert_eq!(errors[0].location(), Location::Shape(Side::Out));
        assert_eq!(
            errors[0].to_string(),
            "out_shape multiplies to 256, but a GRU of hidden size 64 needs 3 x 64 = 192 gate outputs"
        );
        let errors = validate(&Spec::new(&[8], &[4], Format::kcp(1)).with_cell(CellKind::Lstm, 0)).unwrap_err();
        assert_eq!(*errors, [Error::ZeroHidden]);
        // A cell's projection has bias_ih: a spec that drops it is an error, not code that
        // does not compile.
        let no_bias = Spec::new(&[8], &[4], Format::kcp(1)).with_cell(CellKind::Lstm, 1).with_bias(false);
        assert_eq!(*validate(&no_bias).unwrap_err(), [Error::CellWithoutBias]);
        assert_eq!(errors[0].location(), Location::Hidden);
        assert_eq!(errors[0].to_string(), "hidden must be at least 1, found 0");
    }

    #[test]
    fn overflow() {
        let big = usize::MAX / 2;
        let errors = validate(&Spec::new(&[big, 3], &[1, 1], Format::kcp(1))).unwrap_err();
        assert_eq!(*errors, [Error::Overflow { quantity: Quantity::InputSize, location: Location::Shape(Side::In) }]);
        assert_eq!(errors[0].to_string(), "the input size (product of in_shape) overflows usize");
    }

    #[test]
    fn too_large() {
        assert_eq!(
            messages(&Spec::new(&[1 << 20, 1 << 20], &[1, 1], Format::kcp(1))),
            ["the input size (product of in_shape) is 1099511627776, more than the limit of 4294967296"]
        );
        assert_eq!(
            messages(&Spec::new(&[1, 1], &[1 << 20, 1 << 20], Format::kcp(1))),
            ["the output size (product of out_shape) is 1099511627776, more than the limit of 4294967296"]
        );
        assert_eq!(
            messages(&Spec::new(&[2], &[2], Format::kcp(70_000))),
            ["the rank is 70000, more than the limit of 65536"]
        );
        assert_eq!(
            messages(&Spec::new(&[2], &[2], Format::kcp(1)).with_batch(1 << 33)),
            ["the batch size is 8589934592, more than the limit of 4294967296"]
        );
        let errors = validate(&Spec::new(&[1 << 16, 1 << 16], &[1 << 16, 1 << 16], Format::kcp(4))).unwrap_err();
        assert_eq!(errors[0].location(), Location::Rank);
        assert_eq!(
            errors[0].to_string(),
            "the index space (batch * rank * output size * input size) is 73786976294838206464, \
             more than the limit of 288230376151711744"
        );
    }
}
