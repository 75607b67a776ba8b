//! The formats of a layer's weight and the one table of their names and rank keys.
//!
//! [`FORMATS`] is what `kcp_layer!`, its error stub, the command line and the examples read to
//! turn a name and rank keys into a [`Format`]: adding a format is its network constructor
//! ([`Network`](super::Network)'s cores) plus one entry there.

use std::fmt;

/// A tensor format of a layer's weight `W [M, N]`: its cores and how they are joined. Ranks
/// are as the command line writes them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Kronecker CP: `factor.d` `[R, m_d, n_d]`.
    Kcp {
        /// R.
        rank: usize,
    },
    /// Plain CP over all 2D modes: `out.d` `[R, m_d]`, `in.d` `[R, n_d]`.
    Cp {
        /// R.
        rank: usize,
    },
    /// Tensor train (a TT-matrix): `core.d` `[r_d, m_d, n_d, r_{d+1}]`.
    Tt {
        /// r_0 .. r_D, with r_0 = r_D = 1.
        ranks: Vec<usize>,
    },
    /// Tensor ring with separate input and output cores (as TR-LSTM): `in.d`
    /// `[p_d, n_d, p_{d+1}]`, then `out.d` `[p_{D+d}, m_d, p_{D+d+1}]`, with p_{2D} = p_0.
    Tr {
        /// p_0 .. p_{2D-1}.
        ranks: Vec<usize>,
    },
    /// Block term: K blocks, each a Tucker core `[R_1, .., R_D]` and factors `[m_d, n_d, R_d]`,
    /// stacked over the blocks as `block.core` `[K, R_1, .., R_D]` and `block.factor.d`
    /// `[K, m_d, n_d, R_d]` (the blocks' sum is a hyperedge, as KCP's rank is).
    Bt {
        /// K.
        blocks: usize,
        /// R_1 .. R_D.
        ranks: Vec<usize>,
    },
    /// Hierarchical Tucker on a balanced binary tree over the D merged modes, every edge of
    /// rank r: `leaf.d` `[m_d, n_d, r]`, inner nodes `node.a-b` `[r, r, r]` (left child's edge,
    /// right child's, parent's), the root `node.0-{D-1}` `[r, r]`.
    Ht {
        /// r.
        rank: usize,
    },
}

/// A key that sets a format's ranks: `kcp_layer!`'s key, the command line's flag (`--rank`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RankKey {
    /// One rank, `rank: R`.
    Rank,
    /// A list of ranks, `ranks: [..]`.
    Ranks,
    /// A number of blocks, `blocks: K`.
    Blocks,
}

impl RankKey {
    /// Every rank key.
    pub const ALL: [RankKey; 3] = [RankKey::Rank, RankKey::Ranks, RankKey::Blocks];

    /// Its name, as `kcp_layer!` and JSON spell it.
    pub fn name(self) -> &'static str {
        match self {
            RankKey::Rank => "rank",
            RankKey::Ranks => "ranks",
            RankKey::Blocks => "blocks",
        }
    }
}

/// The values of a format's rank keys, as given (each `None` where not).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RankArgs {
    /// `rank`.
    pub rank: Option<usize>,
    /// `ranks`.
    pub ranks: Option<Vec<usize>>,
    /// `blocks`.
    pub blocks: Option<usize>,
}

impl RankArgs {
    /// Whether `key` is given.
    pub fn has(&self, key: RankKey) -> bool {
        match key {
            RankKey::Rank => self.rank.is_some(),
            RankKey::Ranks => self.ranks.is_some(),
            RankKey::Blocks => self.blocks.is_some(),
        }
    }
}

/// A rank key given to a format that does not take it, or one it needs that is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMismatch {
    /// Given, not taken.
    Unexpected(RankKey),
    /// Taken, not given.
    Missing(RankKey),
}

/// What a format's `ranks` list holds for a layer of D modes.
#[derive(Clone, Copy, Debug)]
pub struct RankList {
    /// How many ranks, for D.
    pub len: fn(usize) -> usize,
    /// What they are, for messages (`r_0 .. r_D`).
    pub names: &'static str,
}

/// One format of the table: its name, its rank keys, and how the keys' values make it.
#[derive(Clone, Copy, Debug)]
pub struct FormatEntry {
    /// The name, as `format:` and `--format` spell it.
    pub name: &'static str,
    /// The rank keys it takes, every one of them required.
    pub keys: &'static [RankKey],
    /// The list of ranks it takes (for a format with the `ranks` key).
    pub ranks: Option<RankList>,
    /// The format from its keys' values (a missing one reads as 0 or an empty list, which
    /// validation reports).
    make: fn(RankArgs) -> Format,
}

impl FormatEntry {
    /// The format from its keys' values; what is missing reads as 0 (or no ranks), which
    /// validation then reports.
    pub fn make(&self, args: RankArgs) -> Format {
        (self.make)(args)
    }

    /// The format from its keys' values, or the first rank key that is given but not taken or
    /// taken but not given (in [`RankKey::ALL`]'s order): what the command line and the Python
    /// package check before [`make`](FormatEntry::make).
    pub fn checked(&self, args: RankArgs) -> Result<Format, KeyMismatch> {
        for key in RankKey::ALL {
            match (args.has(key), self.takes(key)) {
                (true, false) => return Err(KeyMismatch::Unexpected(key)),
                (false, true) => return Err(KeyMismatch::Missing(key)),
                _ => {}
            }
        }
        Ok(self.make(args))
    }

    /// A stand-in of this format for D modes, every rank 1: what a declaration with errors
    /// gets, so that its stub has the declared format's API.
    pub fn stand_in(&self, modes: usize) -> Format {
        let ranks = self.ranks.map(|list| vec![1; (list.len)(modes)]);
        self.make(RankArgs { rank: Some(1), ranks, blocks: Some(1) })
    }

    /// Whether it takes `key`.
    pub fn takes(&self, key: RankKey) -> bool {
        self.keys.contains(&key)
    }
}

/// The table of formats: name, rank keys and constructor of each, in the order docs list them.
pub const FORMATS: [FormatEntry; 6] = [
    FormatEntry {
        name: "kcp",
        keys: &[RankKey::Rank],
        ranks: None,
        make: |a| Format::Kcp { rank: a.rank.unwrap_or(0) },
    },
    FormatEntry { name: "cp", keys: &[RankKey::Rank], ranks: None, make: |a| Format::Cp { rank: a.rank.unwrap_or(0) } },
    FormatEntry {
        name: "tt",
        keys: &[RankKey::Ranks],
        ranks: Some(RankList { len: |d| d + 1, names: "r_0 .. r_D" }),
        make: |a| Format::Tt { ranks: a.ranks.unwrap_or_default() },
    },
    FormatEntry {
        name: "tr",
        keys: &[RankKey::Ranks],
        ranks: Some(RankList { len: |d| 2 * d, names: "p_0 .. p_{2D-1}" }),
        make: |a| Format::Tr { ranks: a.ranks.unwrap_or_default() },
    },
    FormatEntry {
        name: "bt",
        keys: &[RankKey::Blocks, RankKey::Ranks],
        ranks: Some(RankList { len: |d| d, names: "R_1 .. R_D" }),
        make: |a| Format::Bt { blocks: a.blocks.unwrap_or(0), ranks: a.ranks.unwrap_or_default() },
    },
    FormatEntry { name: "ht", keys: &[RankKey::Rank], ranks: None, make: |a| Format::Ht { rank: a.rank.unwrap_or(0) } },
];

impl Format {
    /// The table's entry of a format name (`None` for a name that is not one).
    pub fn entry(name: &str) -> Option<&'static FormatEntry> {
        FORMATS.iter().find(|entry| entry.name == name)
    }

    /// Every format's name, comma-separated, for messages.
    pub fn names() -> String {
        FORMATS.iter().map(|entry| entry.name).collect::<Vec<_>>().join(", ")
    }

    /// A KCP format of rank R.
    pub fn kcp(rank: usize) -> Format {
        Format::Kcp { rank }
    }

    /// Its name, as `--format` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Kcp { .. } => "kcp",
            Format::Cp { .. } => "cp",
            Format::Tt { .. } => "tt",
            Format::Tr { .. } => "tr",
            Format::Bt { .. } => "bt",
            Format::Ht { .. } => "ht",
        }
    }

    /// Its table entry.
    pub fn table_entry(&self) -> &'static FormatEntry {
        let name = self.name();
        // Every variant's name is in the table (a test checks it).
        FORMATS.iter().find(|entry| entry.name == name).unwrap_or(&FORMATS[0])
    }

    /// The values of its rank keys.
    pub fn rank_args(&self) -> RankArgs {
        match self {
            Format::Kcp { rank } | Format::Cp { rank } | Format::Ht { rank } => {
                RankArgs { rank: Some(*rank), ..RankArgs::default() }
            }
            Format::Tt { ranks } | Format::Tr { ranks } => {
                RankArgs { ranks: Some(ranks.clone()), ..RankArgs::default() }
            }
            Format::Bt { blocks, ranks } => RankArgs { blocks: Some(*blocks), ranks: Some(ranks.clone()), rank: None },
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ranks: &[usize]| ranks.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        match self {
            Format::Kcp { rank } | Format::Cp { rank } | Format::Ht { rank } => {
                write!(f, "{} rank {rank}", self.name())
            }
            Format::Tt { ranks } | Format::Tr { ranks } => write!(f, "{} ranks {}", self.name(), list(ranks)),
            Format::Bt { blocks, ranks } => write!(f, "bt {blocks} blocks, ranks {}", list(ranks)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_makes_its_own_format_and_back() {
        for entry in &FORMATS {
            let format = entry.stand_in(4);
            assert_eq!(format.name(), entry.name);
            assert_eq!(format.table_entry().name, entry.name);
            let args = format.rank_args();
            for key in RankKey::ALL {
                assert_eq!(args.has(key), entry.takes(key), "{} {}", entry.name, key.name());
            }
            assert_eq!(entry.make(args), format);
        }
    }
}
