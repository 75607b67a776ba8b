//! The recurrent cells a layer's projection can feed.

/// Which cell: PyTorch's gate order and equations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// Gates `[i, f, g, o]`, state (h, c).
    Lstm,
    /// Gates `[r, z, n]`, state h.
    Gru,
}

impl CellKind {
    /// G, the number of gates stacked along the projection's output.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}
