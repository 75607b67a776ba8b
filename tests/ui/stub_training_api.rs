//! A training layer and a training cell whose declarations have one mistake each, used through
//! every item of the training API: their stubs have them all, so the only errors are the
//! mistakes themselves.

kcp::kcp_layer! {
    pub struct Layer {
        in_shape: [8, 3],
        out_shape: [4, 0],
        rank: 2,
        bias: true,
        backward: dx,
    }
}

kcp::kcp_layer! {
    pub struct Cell {
        in_shape: [8, 3],
        out_shape: [4, 8],
        rank: 0,
        cell: lstm,
        hidden: 8,
        backward: weights,
    }
}

fn main() {
    let counts: (u64, usize, bool, &str) =
        (Layer::BACKWARD_MACS_PER_SAMPLE, Layer::KEPT_PER_SAMPLE, Layer::BACKWARD_DX, Layer::BACKWARD_PLAN);
    let mut layer = Layer::random(1);
    let mut trace = kcp::Trace::new();
    let mut grads: kcp::Weights = Layer::zero_grads();
    let mut y = vec![0.0; Layer::OUT];
    let _: Result<(), kcp::Error> = layer.forward_train(&[], &mut y, &mut trace);
    let _: Result<(), kcp::Error> = layer.forward_train_par(&[], &mut y, &mut trace);
    let _: Result<(), kcp::Error> = layer.backward(&[], &[], &mut trace, None, &mut grads);
    let _: Result<(), kcp::Error> = layer.backward_par(&[], &[], &mut trace, None, &mut grads);
    let _: Result<(), kcp::Error> = layer.update_weights(|w| w.cores.clear());
    let mut cell = Cell::random(2);
    let _: Result<(kcp::Weights, kcp::CellGrads), kcp::Error> = cell.gradients(&[], 1, &[], None);
    let (input, _recurrent) = cell.parts_mut();
    let _: Result<(), kcp::Error> = input.update_weights(|_| ());
    let _ = format!("{counts:?}");
}
