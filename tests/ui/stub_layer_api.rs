//! A layer whose declaration has one mistake, used through every item of a layer's API: the
//! stub has them all (it is emitted by the same code as a real layer), so the only error is the
//! mistake itself.

kcp::kcp_layer! {
    /// A layer with a mistake.
    pub struct Layer {
        in_shape: [8, 3],
        out_shape: [4, 0],
        rank: 2,
        bias: true,
    }
}

fn main() {
    let sizes: [usize; 3] = [Layer::IN, Layer::OUT, Layer::RANK];
    let shapes: ([usize; 2], [usize; 2], [[usize; 3]; 2]) = (Layer::IN_SHAPE, Layer::OUT_SHAPE, Layer::FACTOR_SHAPES);
    let counts: [u64; 4] = [Layer::PARAMS, Layer::DENSE_PARAMS, Layer::MACS_PER_SAMPLE, Layer::PREP_MACS];
    let (_bias, _plan): (bool, &str) = (Layer::HAS_BIAS, Layer::PLAN);
    let layer = Layer::zeros();
    let copy: Layer = Layer::random(1).clone();
    let _ = format!("{copy:?} {sizes:?} {shapes:?} {counts:?}");
    let _: Result<Layer, kcp::Error> = Layer::from_factors(vec![vec![0.0; 64]; 2], vec![0.0; 4]);
    let _: Result<Layer, kcp::Error> = Layer::from_weights(layer.weights().clone());
    let _: Result<Layer, kcp::Error> = Layer::load("layer.safetensors");
    let mut y = vec![0.0; Layer::OUT];
    let _: Result<(), kcp::ShapeError> = layer.forward(&[], &mut y);
    let _: Result<(), kcp::ShapeError> = layer.forward_par(&[], &mut y);
}
