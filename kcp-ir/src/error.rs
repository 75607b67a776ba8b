//! The one error type of kcp-ir: what can be wrong with a [`Spec`](crate::Spec) or a network
//! of another format ([`Network`](crate::network::Network)).
//!
//! Every error carries a [`Location`] in the spec, an origin the IR treats as opaque: the proc
//! macro maps it back to the offending token, the command line to the offending flag.

use std::fmt;

use crate::spec::{limits, CellKind};

fn cell_name(kind: CellKind) -> &'static str {
    match kind {
        CellKind::Lstm => "an LSTM",
        CellKind::Gru => "a GRU",
    }
}

/// Which side of the layer a shape belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The input shape `n_1 .. n_D` (x is `[B, N]`).
    In,
    /// The output shape `m_1 .. m_D` (y is `[B, M]`).
    Out,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::In => "in_shape",
            Side::Out => "out_shape",
        })
    }
}

/// Where in a [`Spec`](crate::Spec) an error points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    /// A whole shape.
    Shape(Side),
    /// One dimension of a shape, by zero-based mode.
    Dim(Side, usize),
    /// The rank.
    Rank,
    /// The batch size.
    Batch,
    /// The hidden size of a recurrent cell.
    Hidden,
    /// The list of a format's ranks.
    Ranks,
    /// One of a format's ranks, by zero-based position.
    RankAt(usize),
    /// The number of blocks of a block-term format.
    Blocks,
}

/// A size the validator bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quantity {
    /// N, the product of the input shape.
    InputSize,
    /// M, the product of the output shape.
    OutputSize,
    /// R.
    Rank,
    /// B, when known.
    Batch,
    /// B * R * M * N, the product of every index size: it bounds every MAC count.
    IndexSpace,
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quantity::InputSize => "the input size (product of in_shape)",
            Quantity::OutputSize => "the output size (product of out_shape)",
            Quantity::Rank => "the rank",
            Quantity::Batch => "the batch size",
            Quantity::IndexSpace => "the index space (batch * rank * output size * input size)",
        })
    }
}

/// Something wrong with a layer spec. Validation collects every one of them, not just the first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A shape with no modes or more than [`limits::MAX_MODES`].
    #[error("{side} must have between 1 and {max} modes, found {found}", max = limits::MAX_MODES)]
    ModesOutOfRange {
        /// The shape.
        side: Side,
        /// Its number of modes.
        found: usize,
    },
    /// The two shapes have different numbers of modes.
    #[error("out_shape has {out_modes} modes but in_shape has {in_modes}; both need the same number")]
    ModeMismatch {
        /// The modes of in_shape.
        in_modes: usize,
        /// The modes of out_shape.
        out_modes: usize,
    },
    /// A dimension of zero.
    #[error("{side} dimension {} must be at least 1, found 0", mode + 1)]
    ZeroDim {
        /// The shape.
        side: Side,
        /// The zero-based mode.
        mode: usize,
    },
    /// A rank of zero.
    #[error("rank must be at least 1, found 0")]
    ZeroRank,
    /// A known batch of zero.
    #[error("batch must be at least 1, found 0")]
    ZeroBatch,
    /// A recurrent cell with a hidden size of zero.
    #[error("hidden must be at least 1, found 0")]
    ZeroHidden,
    /// A recurrent cell whose gates do not fill the output.
    #[error(
        "out_shape multiplies to {output}, but {} of hidden size {hidden} needs {} x {hidden} = {} gate outputs",
        cell_name(*cell), cell.gates(), cell.gates() * hidden
    )]
    GateMismatch {
        /// The cell.
        cell: CellKind,
        /// Its hidden size H.
        hidden: usize,
        /// M, the product of out_shape.
        output: u128,
    },
    /// A recurrent cell whose input projection has no bias (a cell's has `bias_ih`).
    #[error("a recurrent cell's input projection has a bias (bias_ih); the spec has none")]
    CellWithoutBias,
    /// A product that does not fit a `usize`.
    #[error("{quantity} overflows usize")]
    Overflow {
        /// What overflows.
        quantity: Quantity,
        /// Where in the spec.
        location: Location,
    },
    /// A format's rank list of the wrong length.
    #[error("{format} needs {expected} ranks ({what}), found {found}")]
    RankCount {
        /// The format's name.
        format: &'static str,
        /// The ranks it needs for these shapes.
        expected: usize,
        /// The ranks given.
        found: usize,
        /// What they are.
        what: &'static str,
    },
    /// A rank of zero in a format's list.
    #[error("rank {} of the list must be at least 1, found 0", position + 1)]
    ZeroRankAt {
        /// Its zero-based position.
        position: usize,
    },
    /// A tensor train whose first or last rank is not 1.
    #[error("tt ranks must start and end with 1 (r_0 = r_D = 1), found {first} and {last}")]
    TtRankEnds {
        /// r_0.
        first: usize,
        /// r_D.
        last: usize,
        /// The position of the first one at fault.
        position: usize,
    },
    /// A block-term format with no blocks.
    #[error("blocks must be at least 1, found 0")]
    ZeroBlocks,
    /// A format whose network has more cores than a plan can hold.
    #[error("{format} with {modes} modes has {cores} cores; at most {max} are supported")]
    TooManyCores {
        /// The format's name.
        format: &'static str,
        /// D.
        modes: usize,
        /// Its cores.
        cores: usize,
        /// The limit.
        max: usize,
    },
    /// A size above its documented limit (see [`limits`]).
    #[error("{quantity} is {value}, more than the limit of {limit}")]
    TooLarge {
        /// What is too large.
        quantity: Quantity,
        /// Its value.
        value: u128,
        /// Its limit.
        limit: u128,
        /// Where in the spec.
        location: Location,
    },
}

impl Error {
    /// The part of the spec this error is about.
    pub fn location(&self) -> Location {
        match *self {
            Error::ModesOutOfRange { side, .. } => Location::Shape(side),
            Error::ModeMismatch { .. } => Location::Shape(Side::Out),
            Error::ZeroDim { side, mode } => Location::Dim(side, mode),
            Error::ZeroRank => Location::Rank,
            Error::ZeroBatch => Location::Batch,
            Error::ZeroHidden | Error::CellWithoutBias => Location::Hidden,
            Error::GateMismatch { .. } => Location::Shape(Side::Out),
            Error::Overflow { location, .. } | Error::TooLarge { location, .. } => location,
            Error::RankCount { .. } => Location::Ranks,
            Error::ZeroRankAt { position } | Error::TtRankEnds { position, .. } => Location::RankAt(position),
            Error::ZeroBlocks => Location::Blocks,
            Error::TooManyCores { .. } => Location::Shape(Side::In),
        }
    }
}

/// Every error of a spec, in the order validation found them (never empty). It prints as one
/// line: the error itself if there is one, else `found 3 errors: a; b; c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Errors(Vec<Error>);

impl Errors {
    /// The errors collected (validation makes one only when it found some).
    pub(crate) fn new(errors: Vec<Error>) -> Errors {
        Errors(errors)
    }
}

impl std::ops::Deref for Errors {
    type Target = [Error];
    fn deref(&self) -> &[Error] {
        &self.0
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [one] = self.0.as_slice() {
            return write!(f, "{one}");
        }
        write!(f, "found {} errors: ", self.0.len())?;
        for (k, error) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

impl IntoIterator for Errors {
    type Item = Error;
    type IntoIter = std::vec::IntoIter<Error>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Errors {
    type Item = &'a Error;
    type IntoIter = std::slice::Iter<'a, Error>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_as_one_line() {
        let one = Errors(vec![Error::ZeroRank]);
        assert_eq!(one.to_string(), "rank must be at least 1, found 0");
        let three = Errors(vec![Error::ZeroRank, Error::ZeroBatch, Error::ZeroHidden]);
        assert_eq!(
            three.to_string(),
            "found 3 errors: rank must be at least 1, found 0; batch must be at least 1, found 0; \
             hidden must be at least 1, found 0"
        );
        assert_eq!(three.iter().count(), 3);
    }
}
