//! A recurrent cell whose declaration has one mistake, used through every item of a cell's
//! API: the stub has them all (it is emitted by the same code as a real cell), so the only
//! error is the mistake itself.

kcp::kcp_layer! {
    /// A cell with a mistake.
    pub struct Cell {
        in_shape: [8, 3],
        out_shape: [3, 8],
        rank: 0,
        cell: gru,
        hidden: 8,
    }
}

fn main() {
    let sizes: [usize; 4] = [Cell::IN, Cell::HIDDEN, Cell::GATES, Cell::RANK];
    let counts: [u64; 4] = [Cell::PARAMS, Cell::DENSE_PARAMS, Cell::MACS_PER_SAMPLE, Cell::RECURRENT_MACS_PER_STEP];
    let _plan: &str = Cell::PLAN;
    let cell = Cell::random(1);
    let copy: Cell = cell.clone();
    let _ = format!("{copy:?} {sizes:?} {counts:?}");
    let _: Result<Cell, kcp::Error> = Cell::from_parts(vec![], vec![], vec![], vec![]);
    let _: Result<Cell, kcp::Error> = Cell::load("cell.safetensors");
    let _: &kcp::Weights = cell.input().weights();
    let _hidden: usize = cell.cell().hidden();
    let mut state = Cell::zero_state(1);
    let mut hs = vec![0.0; Cell::HIDDEN];
    let _: Result<(), kcp::ShapeError> = cell.forward(&[], 1, &mut hs, &mut state);
    let _: Result<(), kcp::ShapeError> = cell.forward_par(&[], 1, &mut hs, &mut state);
}
