//! Indices and operands, and compact sets of each.
//!
//! Every tensor lays its indices out in one global order, `b, r, t0, t1, ..., i1, j1, i2, j2, ...`,
//! so that `x` is `[b, j1..jD]`, `A_d` is `[r, i_d, j_d]` and `y` is `[b, i1..iD]`: exactly the
//! row-major layouts of docs/format.md. An [`IndexSet`] iterates in that order. The bonds `t_k`
//! are the internal indices of the other formats' networks (a tensor train's ranks, a ring's,
//! a tree's edges, a block term's Tucker ranks). Like the rank, they come before the modes: an
//! intermediate keeps the modes of x it has not contracted yet last, one contiguous run that
//! the kernels stream over, whatever bonds it carries (cores keep their own storage order).

use std::fmt;
use std::str::FromStr;

/// One index of the contraction network. Modes are zero-based here and printed one-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Index {
    /// b, the batch row.
    Batch,
    /// r, the rank: the hyperedge shared by every factor.
    Rank,
    /// i_d, output mode d.
    Out(usize),
    /// j_d, input mode d.
    In(usize),
    /// t_k, an internal bond between cores (zero-based, printed as is).
    Bond(usize),
}

impl Index {
    /// The most bonds a network may have: the bits between the rank's and the modes'.
    pub const MAX_BONDS: usize = 64 - 2 - 2 * crate::spec::limits::MAX_MODES;
    /// The first bit of the modes, past the bonds'.
    const FIRST_MODE: u32 = 2 + Index::MAX_BONDS as u32;

    pub(crate) fn bit(self) -> u32 {
        match self {
            Index::Batch => 0,
            Index::Rank => 1,
            Index::Bond(k) => 2 + k as u32,
            Index::Out(d) => Index::FIRST_MODE + 2 * d as u32,
            Index::In(d) => Index::FIRST_MODE + 1 + 2 * d as u32,
        }
    }

    fn from_bit(bit: u32) -> Index {
        match bit {
            0 => Index::Batch,
            1 => Index::Rank,
            b if b < Index::FIRST_MODE => Index::Bond((b - 2) as usize),
            b if (b - Index::FIRST_MODE).is_multiple_of(2) => Index::Out(((b - Index::FIRST_MODE) / 2) as usize),
            b => Index::In(((b - Index::FIRST_MODE - 1) / 2) as usize),
        }
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Index::Batch => f.write_str("b"),
            Index::Rank => f.write_str("r"),
            Index::Out(d) => write!(f, "i{}", d + 1),
            Index::In(d) => write!(f, "j{}", d + 1),
            Index::Bond(k) => write!(f, "t{k}"),
        }
    }
}

/// A set of indices, iterated in the global layout order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexSet(u64);

impl IndexSet {
    /// The empty set.
    pub const EMPTY: IndexSet = IndexSet(0);

    /// Whether `index` is in the set.
    pub fn contains(self, index: Index) -> bool {
        self.0 & (1 << index.bit()) != 0
    }
    /// The set plus `index`.
    pub fn with(self, index: Index) -> IndexSet {
        IndexSet(self.0 | 1 << index.bit())
    }
    /// Union.
    pub fn union(self, other: IndexSet) -> IndexSet {
        IndexSet(self.0 | other.0)
    }
    /// Intersection.
    pub fn intersection(self, other: IndexSet) -> IndexSet {
        IndexSet(self.0 & other.0)
    }
    /// The indices of `self` not in `other`.
    pub fn minus(self, other: IndexSet) -> IndexSet {
        IndexSet(self.0 & !other.0)
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The number of indices.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    /// The set as bits (bit k: the index whose position in layout order is k).
    pub(crate) fn bits(self) -> u64 {
        self.0
    }
    /// The indices in layout order.
    pub fn iter(self) -> impl Iterator<Item = Index> {
        (0..64).filter(move |b| self.0 & (1 << b) != 0).map(Index::from_bit)
    }
}

impl FromIterator<Index> for IndexSet {
    fn from_iter<T: IntoIterator<Item = Index>>(iter: T) -> IndexSet {
        iter.into_iter().fold(IndexSet::EMPTY, IndexSet::with)
    }
}

impl fmt::Display for IndexSet {
    /// `b,r,i1,j1`: the indices in layout order, comma separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, index) in self.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            write!(f, "{index}")?;
        }
        Ok(())
    }
}

/// An input of the contraction: the activation x or a factor stack A_d.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operand {
    /// x, `[b, j1..jD]`.
    Input,
    /// A_d, `[r, i_d, j_d]` (zero-based d, printed one-based).
    Factor(usize),
}

impl Operand {
    /// The operand's position among the D + 1 operands: x is 0, A_d is d + 1.
    pub fn position(self) -> usize {
        match self {
            Operand::Input => 0,
            Operand::Factor(d) => d + 1,
        }
    }
    /// The operand at a position.
    pub fn at(position: usize) -> Operand {
        match position {
            0 => Operand::Input,
            p => Operand::Factor(p - 1),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Input => f.write_str("x"),
            Operand::Factor(d) => write!(f, "A{}", d + 1),
        }
    }
}

/// The text is not `x` or `A1`, `A2`, ...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOperandError;

impl FromStr for Operand {
    type Err = ParseOperandError;
    fn from_str(s: &str) -> Result<Operand, ParseOperandError> {
        match s {
            "x" => Ok(Operand::Input),
            _ => match s.strip_prefix('A').map(str::parse::<usize>) {
                Some(Ok(d)) if d >= 1 => Ok(Operand::Factor(d - 1)),
                _ => Err(ParseOperandError),
            },
        }
    }
}

/// A set of operands: the leaves of a contraction subtree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperandSet(u16);

impl OperandSet {
    /// The set of one operand.
    pub fn single(operand: Operand) -> OperandSet {
        OperandSet(1 << operand.position())
    }
    /// All of the first `count` operands.
    pub fn all(count: usize) -> OperandSet {
        OperandSet(((1u32 << count) - 1) as u16)
    }
    /// The set with this bit pattern (bit p is the operand at position p).
    pub fn from_bits(bits: u16) -> OperandSet {
        OperandSet(bits)
    }
    /// The bit pattern.
    pub fn bits(self) -> u16 {
        self.0
    }
    /// Union.
    pub fn union(self, other: OperandSet) -> OperandSet {
        OperandSet(self.0 | other.0)
    }
    /// Whether the sets share an operand.
    pub fn overlaps(self, other: OperandSet) -> bool {
        self.0 & other.0 != 0
    }
    /// Whether x is in the set: a subtree without it depends on weights only.
    pub fn has_input(self) -> bool {
        self.0 & 1 != 0
    }
    /// The number of operands.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The operands, x first.
    pub fn iter(self) -> impl Iterator<Item = Operand> {
        (0..16).filter(move |p| self.0 & (1 << p) != 0).map(Operand::at)
    }
}
