//! The layer spec: what a user declares (shapes, format and ranks, batch, bias, cell), before
//! and after validation.
//!
//! In: a [`Spec`] from the macro or the command line. Out, through [`validate`]: a [`ValidSpec`]
//! whose sizes are known to be non-zero, consistent and within [`limits`], with the network of
//! its format.

mod validate;

use std::fmt;

pub use kcp_core::CellKind;

use crate::network::{Format, Network};

pub use validate::validate;

/// The documented size limits. They keep every MAC count and tensor size inside a `u64`.
pub mod limits {
    /// The largest number of modes D (Kronecker factors) a layer may have.
    pub const MAX_MODES: usize = 8;
    /// The largest input size N and output size M: 2^32.
    pub const MAX_SIZE: u128 = 1 << 32;
    /// The largest rank R.
    pub const MAX_RANK: u128 = 1 << 16;
    /// The largest known batch B: 2^32.
    pub const MAX_BATCH: u128 = 1 << 32;
    /// The largest product B * R * M * N (B = 1 when the batch is symbolic): 2^58. Every
    /// pairwise contraction costs at most this product, so a plan of at most 2D steps costs
    /// under 2^62 MACs.
    pub const MAX_INDEX_SPACE: u128 = 1 << 58;
}

/// The batch size a layer is planned for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Batch {
    /// Known when planning: MAC counts are per call of this many rows.
    Fixed(usize),
    /// Known only at run time: MAC counts are per row. Every per-call step carries the batch
    /// index, so the cheapest plan does not depend on B.
    #[default]
    Symbolic,
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Batch::Fixed(b) => write!(f, "{b}"),
            Batch::Symbolic => f.write_str("B"),
        }
    }
}

/// A recurrent cell whose input-to-hidden weight is the compressed layer (its output stacks the G gates
/// of H units) and whose hidden-to-hidden weight is dense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cell {
    /// LSTM or GRU.
    pub kind: CellKind,
    /// H, the hidden size.
    pub hidden: usize,
}

/// A layer as declared: `y[B, M] = x[B, N] W^T (+ b)`, with W stored in a tensor format (for
/// KCP, `W = sum_r A1[r] (x) ... (x) AD[r]` and `A_d` of shape `[R, out_shape[d], in_shape[d]]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Spec {
    /// n_1 .. n_D.
    pub in_shape: Vec<usize>,
    /// m_1 .. m_D.
    pub out_shape: Vec<usize>,
    /// The weight's format and its ranks.
    pub format: Format,
    /// B.
    pub batch: Batch,
    /// Whether the layer adds a bias of M entries.
    pub bias: bool,
    /// The recurrent cell the layer is the input projection of, if any (it then has a bias,
    /// `bias_ih`).
    pub cell: Option<Cell>,
}

impl Spec {
    /// A spec with a symbolic batch and no bias.
    pub fn new(in_shape: &[usize], out_shape: &[usize], format: Format) -> Spec {
        Spec {
            in_shape: in_shape.to_vec(),
            out_shape: out_shape.to_vec(),
            format,
            batch: Batch::Symbolic,
            bias: false,
            cell: None,
        }
    }

    /// The same spec as the input projection of a recurrent cell (which implies a bias).
    pub fn with_cell(mut self, kind: CellKind, hidden: usize) -> Spec {
        self.cell = Some(Cell { kind, hidden });
        self.bias = true;
        self
    }

    /// The same spec for a known batch.
    pub fn with_batch(mut self, batch: usize) -> Spec {
        self.batch = Batch::Fixed(batch);
        self
    }

    /// The same spec with or without a bias.
    pub fn with_bias(mut self, bias: bool) -> Spec {
        self.bias = bias;
        self
    }
}

/// A spec that passed [`validate`]: every size is non-zero and within [`limits`], and its
/// format's network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSpec {
    spec: Spec,
    n: usize,
    m: usize,
    network: Network,
}

impl ValidSpec {
    /// The spec as declared.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }
    /// D, the number of modes.
    pub fn modes(&self) -> usize {
        self.spec.in_shape.len()
    }
    /// n_1 .. n_D.
    pub fn in_shape(&self) -> &[usize] {
        &self.spec.in_shape
    }
    /// m_1 .. m_D.
    pub fn out_shape(&self) -> &[usize] {
        &self.spec.out_shape
    }
    /// The weight's format.
    pub fn format(&self) -> &Format {
        &self.spec.format
    }
    /// The network of x and the format's cores.
    pub fn network(&self) -> &Network {
        &self.network
    }
    /// B as declared.
    pub fn batch(&self) -> Batch {
        self.spec.batch
    }
    /// B for cost purposes: the known batch, or 1 (per-row costs) when symbolic.
    pub fn cost_batch(&self) -> usize {
        match self.spec.batch {
            Batch::Fixed(b) => b,
            Batch::Symbolic => 1,
        }
    }
    /// Whether the layer has a bias.
    pub fn bias(&self) -> bool {
        self.spec.bias
    }
    /// The recurrent cell, if any.
    pub fn cell(&self) -> Option<Cell> {
        self.spec.cell
    }
    /// N = n_1 * ... * n_D.
    pub fn input_size(&self) -> usize {
        self.n
    }
    /// M = m_1 * ... * m_D.
    pub fn output_size(&self) -> usize {
        self.m
    }
    /// The weight's parameters: every core's elements (the bias excluded).
    pub fn params(&self) -> u64 {
        self.network.params()
    }
    /// The dense weight's parameters, M * N.
    pub fn dense_params(&self) -> u64 {
        self.m as u64 * self.n as u64
    }
    /// dense_params / params.
    pub fn compression_ratio(&self) -> f64 {
        self.dense_params() as f64 / self.params() as f64
    }
}

fn write_shape(f: &mut fmt::Formatter<'_>, shape: &[usize]) -> fmt::Result {
    for (k, d) in shape.iter().enumerate() {
        if k > 0 {
            f.write_str("x")?;
        }
        write!(f, "{d}")?;
    }
    Ok(())
}

impl fmt::Display for ValidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("in ")?;
        write_shape(f, self.in_shape())?;
        f.write_str(" -> out ")?;
        write_shape(f, self.out_shape())?;
        write!(f, ", {}, batch {}", self.format(), self.batch())?;
        if self.bias() {
            f.write_str(", bias")?;
        }
        if let Some(cell) = self.cell() {
            write!(f, ", {} hidden {}", if cell.kind == CellKind::Lstm { "lstm" } else { "gru" }, cell.hidden)?;
        }
        Ok(())
    }
}
