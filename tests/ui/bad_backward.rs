kcp::kcp_layer! {
    /// A training layer with a mistake in its backward key.
    pub struct Layer {
        in_shape: [8, 3],
        out_shape: [4, 8],
        rank: 2,
        backward: dy,
    }
}

fn main() {
    let layer = Layer::random(1);
    let mut y = vec![0.0; Layer::OUT];
    layer.forward(&[0.0; 24], &mut y).ok();
}
