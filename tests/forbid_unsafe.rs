//! A crate that forbids `unsafe` can declare and run layers: generated code is safe Rust (the
//! runtime's dispatch owns the one `unsafe` that enters AVX2 code).

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

kcp::kcp_layer! { struct Small { in_shape: [4, 6], out_shape: [3, 2], rank: 2, bias: true } }
kcp::kcp_layer! { struct Cell { in_shape: [4, 6], out_shape: [3, 4], rank: 2, cell: gru, hidden: 4 } }

#[test]
fn layers_run_in_a_crate_without_unsafe() {
    let layer = Small::random(1);
    let (x, mut y) = (vec![1.0; 3 * Small::IN], vec![0.0; 3 * Small::OUT]);
    layer.forward(&x, &mut y).unwrap();
    layer.forward_par(&x, &mut y).unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
    let cell = Cell::random(2);
    let (mut hs, mut state) = (vec![0.0; 2 * Cell::HIDDEN], Cell::zero_state(1));
    cell.forward(&[1.0; 2 * Cell::IN], 1, &mut hs, &mut state).unwrap();
    assert!(hs.iter().all(|v| v.is_finite()));
}
