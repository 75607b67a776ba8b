kcp::kcp_layer! {
    /// A cell with a mistake.
    pub struct Cell {
        in_shape: [8, 3],
        out_shape: [4, 8],
        rank: 2,
        cell: rnn,
        hidden: 8,
    }
}

fn main() {
    // The stub keeps the rest of the crate quiet: one mistake, one error.
    let cell = Cell::random(1);
    let mut state = Cell::zero_state(1);
    let mut hs = vec![0.0; Cell::HIDDEN];
    cell.forward(&[], 1, &mut hs, &mut state).ok();
}
