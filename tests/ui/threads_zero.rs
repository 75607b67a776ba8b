kcp::kcp_layer! {
    /// A layer with a mistake.
    pub struct Layer {
        in_shape: [8, 3],
        out_shape: [4, 2],
        rank: 2,
        threads: 0,
    }
}

fn main() {
    // The stub keeps the rest of the crate quiet: one mistake, one error.
    let layer = Layer::zeros();
    let mut y = vec![0.0; Layer::OUT];
    layer.forward(&[], &mut y).ok();
}
