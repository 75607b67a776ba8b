//! The one error type of kcp-ir: what can be wrong with a [`Spec`](crate::Spec).
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
    ModesOutOfRange { side: Side, found: usize },
    /// The two shapes have different numbers of modes.
    #[error("out_shape has {out_modes} modes but in_shape has {in_modes}; both need the same number")]
    ModeMismatch { in_modes: usize, out_modes: usize },
    /// A dimension of zero.
    #[error("{side} dimension {} must be at least 1, found 0", mode + 1)]
    ZeroDim { side: Side, mode: usize },
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
    GateMismatch { cell: CellKind, hidden: usize, output: u128 },
    /// A product that does not fit a `usize`.
    #[error("{quantity} overflows usize")]
    Overflow { quantity: Quantity, location: Location },
    /// A size above its documented limit (see [`limits`]).
    #[error("{quantity} is {value}, more than the limit of {limit}")]
    TooLarge { quantity: Quantity, value: u128, limit: u128, location: Location },
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
            Error::ZeroHidden => Location::Hidden,
            Error::GateMismatch { .. } => Location::Shape(Side::Out),
            Error::Overflow { location, .. } | Error::TooLarge { location, .. } => location,
        }
    }
}
