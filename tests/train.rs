//! The training building blocks against independent references: the head's and the loss's
//! gradients against central finite differences of an f64 re-implementation, the optimizers
//! against their update rules written out, clipping against its definition.

#![allow(clippy::unwrap_used)]

use kcp::train::{
    accuracy, clip_grad_norm, global_norm, softmax_cross_entropy, zero, Adam, Linear, Optimizer, Parameters, Sgd,
    TrainError,
};
use kcp::{Rng, ShapeError, Weights};

/// The loss of the head on `x` against `labels`, all in f64: `mean(-log softmax(x W^T + b))`.
fn loss64(w: &[f64], b: &[f64], x: &[f64], labels: &[usize], inputs: usize) -> f64 {
    let classes = b.len();
    let mut total = 0.0;
    for (row, &label) in x.chunks_exact(inputs).zip(labels) {
        let z: Vec<f64> =
            (0..classes).map(|c| b[c] + (0..inputs).map(|i| w[c * inputs + i] * row[i]).sum::<f64>()).collect();
        let top = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - top).exp()).sum();
        total += sum.ln() + top - z[label];
    }
    total / labels.len() as f64
}

/// dL/dW, dL/db and dL/dx of the head with softmax cross-entropy, over random shapes (sizes 1
/// included), against central differences in f64 of the f64 loss.
#[test]
fn head_gradients_match_finite_differences() {
    let mut rng = Rng::new(11);
    for (rows, inputs, classes) in [(1, 1, 1), (3, 5, 4), (4, 1, 11), (2, 7, 2), (5, 3, 11)] {
        let head = Linear::new(inputs, classes, rng.next_u64());
        let x = rng.vec_f32(rows * inputs, 1.0);
        let labels: Vec<usize> = (0..rows).map(|_| (rng.next_u64() % classes as u64) as usize).collect();
        let mut logits = vec![0.0; rows * classes];
        head.forward(&x, &mut logits).unwrap();
        let mut dlogits = vec![0.0; rows * classes];
        let loss = softmax_cross_entropy(&logits, &labels, classes, &mut dlogits).unwrap();
        let mut grad = Linear::zeros(inputs, classes);
        let mut dx = vec![f32::NAN; x.len()];
        head.backward(&x, &dlogits, Some(&mut dx), &mut grad).unwrap();

        let f64s = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        let (w, b, x64) = (f64s(&head.weight), f64s(&head.bias), f64s(&x));
        assert!((f64::from(loss) - loss64(&w, &b, &x64, &labels, inputs)).abs() < 1e-5);
        let h = 1e-6;
        let diff = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        let check = |got: f32, want: f64, what: &str| {
            assert!((f64::from(got) - want).abs() <= 1e-5 * (1.0 + want.abs()), "{what}: {got} vs {want}");
        };
        for k in 0..w.len() {
            let at = |e: f64| {
                let mut w = w.clone();
                w[k] += e;
                loss64(&w, &b, &x64, &labels, inputs)
            };
            check(grad.weight[k], diff(&at), "dW");
        }
        for k in 0..b.len() {
            let at = |e: f64| {
                let mut b = b.clone();
                b[k] += e;
                loss64(&w, &b, &x64, &labels, inputs)
            };
            check(grad.bias[k], diff(&at), "db");
        }
        for k in 0..x64.len() {
            let at = |e: f64| {
                let mut x = x64.clone();
                x[k] += e;
                loss64(&w, &b, &x, &labels, inputs)
            };
            check(dx[k], diff(&at), "dx");
        }
    }
}

/// The loss is stable for huge logits, and bad inputs are typed errors.
#[test]
fn cross_entropy_is_stable_and_checked() {
    let mut d = vec![0.0; 3];
    let loss = softmax_cross_entropy(&[1e30, -1e30, 0.0], &[0], 3, &mut d).unwrap();
    assert!(loss.abs() < 1e-6 && d.iter().all(|v| v.is_finite()));
    assert_eq!(
        softmax_cross_entropy(&[0.0; 3], &[3], 3, &mut d),
        Err(TrainError::Label { row: 0, label: 3, classes: 3 })
    );
    assert!(matches!(softmax_cross_entropy(&[0.0; 4], &[0], 3, &mut d), Err(TrainError::Shape(_))));
    assert_eq!(accuracy(&[0.1, 0.9, 0.8, 0.2], &[1, 1], 2), Ok(0.5));
    // Logits of another number of rows than the labels are an error, not a truncated count.
    for (logits, labels, classes) in [(&[0.1, 0.9, 0.8][..], &[1, 1][..], 2), (&[0.1, 0.9, 0.8, 0.2], &[1], 2)] {
        assert!(matches!(accuracy(logits, labels, classes), Err(ShapeError::Buffer { name: "logits", .. })));
    }
    assert!(accuracy(&[], &[], 0).is_err());
}

/// Adam's first step moves each parameter by lr * g / (|g| + eps) (both moments debiased);
/// the second follows the update rule written out in f64.
#[test]
fn adam_follows_its_update_rule() {
    let (lr, g1, g2) = (0.1f32, [0.5f32, -2.0, 1e-3], [-1.0f32, 0.25, 0.0]);
    let mut p = Linear { inputs: 3, outputs: 1, weight: vec![1.0, 2.0, 3.0], bias: vec![0.0] };
    let start = p.weight.clone();
    let grad = |g: [f32; 3]| Linear { inputs: 3, outputs: 1, weight: g.to_vec(), bias: vec![0.0] };
    let mut adam = Adam::new(lr);
    adam.step(&mut p, &grad(g1)).unwrap();
    for k in 0..3 {
        let want = f64::from(start[k]) - 0.1 * f64::from(g1[k]) / (f64::from(g1[k]).abs() + 1e-8);
        assert!((f64::from(p.weight[k]) - want).abs() < 1e-6, "step 1, {k}");
    }
    adam.step(&mut p, &grad(g2)).unwrap();
    for k in 0..3 {
        let (a, b) = (f64::from(g1[k]), f64::from(g2[k]));
        let (m, v) = (0.9 * 0.1 * a + 0.1 * b, 0.999 * 0.001 * a * a + 0.001 * b * b);
        let (mh, vh) = (m / (1.0 - 0.81), v / (1.0 - 0.999f64.powi(2)));
        let first = f64::from(start[k]) - 0.1 * a / (a.abs() + 1e-8);
        let want = first - 0.1 * mh / (vh.sqrt() + 1e-8);
        assert!((f64::from(p.weight[k]) - want).abs() < 1e-5, "step 2, {k}: {} vs {want}", p.weight[k]);
    }
    assert_eq!(adam.steps(), 2);
}

/// SGD with momentum: p1 = p0 - lr g1, p2 = p1 - lr (mu g1 + g2).
#[test]
fn sgd_with_momentum_follows_its_update_rule() {
    let mut w = Weights { cores: vec![vec![1.0, -1.0]], bias: Some(vec![0.5]) };
    let grads = |a: f32, b: f32, c: f32| Weights { cores: vec![vec![a, b]], bias: Some(vec![c]) };
    let mut sgd = Sgd::new(0.5, 0.9);
    sgd.step(&mut w, &grads(1.0, 2.0, -1.0)).unwrap();
    sgd.step(&mut w, &grads(0.0, 1.0, 1.0)).unwrap();
    let want = [1.0 - 0.5 * 1.0 - 0.5 * 0.9, -1.0 - 0.5 * 2.0 - 0.5 * (1.8 + 1.0), 0.5 + 0.5 - 0.5 * (-0.9 + 1.0)];
    for (got, want) in w.values().concat().iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

/// Optimizers refuse gradients that do not match the parameters (or their own state), and
/// move nothing then.
#[test]
fn optimizers_check_shapes() {
    let mut w = Weights { cores: vec![vec![1.0, 2.0]], bias: None };
    let short = Weights { cores: vec![vec![1.0]], bias: None };
    let extra = Weights { cores: vec![vec![1.0, 1.0]], bias: Some(vec![1.0]) };
    let mut adam = Adam::new(0.1);
    assert!(adam.step(&mut w, &short).is_err());
    assert!(adam.step(&mut w, &extra).is_err());
    assert_eq!(w.cores[0], [1.0, 2.0]);
    adam.step(&mut w, &Weights { cores: vec![vec![1.0, 1.0]], bias: None }).unwrap();
    let mut other = Weights { cores: vec![vec![0.0; 3]], bias: None };
    assert!(adam.step(&mut other, &Weights { cores: vec![vec![1.0; 3]], bias: None }).is_err());
    assert!(Sgd::new(0.1, 0.0).step(&mut w, &short).is_err());
}

/// Clipping scales to the bound, keeps the direction, leaves small gradients alone; zero
/// zeroes; and the pair of two parts walks both.
#[test]
fn clipping_zeroing_and_norms() {
    let mut g = (
        Linear { inputs: 2, outputs: 1, weight: vec![3.0, 0.0], bias: vec![4.0] },
        Weights { cores: vec![vec![0.0]], bias: None },
    );
    assert_eq!(global_norm(&g), 5.0);
    assert_eq!(clip_grad_norm(&mut g, 10.0), 5.0);
    assert_eq!(global_norm(&g), 5.0);
    assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
    assert!((global_norm(&g) - 1.0).abs() < 1e-5);
    assert!((g.0.weight[0] / g.0.bias[0] - 0.75).abs() < 1e-6);
    zero(&mut g);
    assert_eq!(global_norm(&g), 0.0);
}

/// Adam drives a least-squares problem on the head to its solution: the pieces compose.
#[test]
fn adam_fits_a_linear_map() {
    let mut rng = Rng::new(5);
    let truth = Linear::new(4, 2, 9);
    let x = rng.vec_f32(64 * 4, 1.0);
    let mut target = vec![0.0; 64 * 2];
    truth.forward(&x, &mut target).unwrap();
    let mut model = Linear::zeros(4, 2);
    let mut adam = Adam::new(0.05);
    let mut y = vec![0.0; 64 * 2];
    for _ in 0..500 {
        model.forward(&x, &mut y).unwrap();
        let dy: Vec<f32> = y.iter().zip(&target).map(|(a, b)| 2.0 * (a - b) / 64.0).collect();
        let mut grad = Linear::zeros(4, 2);
        model.backward(&x, &dy, None, &mut grad).unwrap();
        adam.step(&mut model, &grad).unwrap();
    }
    for (a, b) in model.weight.iter().chain(&model.bias).zip(truth.weight.iter().chain(&truth.bias)) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

/// A shape error about sizes near usize::MAX prints its numbers without overflowing.
#[test]
fn shape_errors_print_without_overflow() {
    let error = ShapeError::Output { len: 3, rows: usize::MAX, output: 2 };
    assert_eq!(
        error.to_string(),
        format!("y has 3 elements but {} rows of output size 2 need {}", usize::MAX, 2 * u128::from(u64::MAX))
    );
}

/// A loop generic over the optimiser: Adam and SGD, through the trait, both descend a
/// quadratic, and a schedule sets their learning rates.
#[test]
fn a_loop_generic_over_the_optimizer_descends() {
    fn descend<O: Optimizer>(mut optimizer: O) -> f32 {
        let mut w = Weights { cores: vec![vec![3.0, -2.0]], bias: None };
        for step in 0..200 {
            if step == 100 {
                let lr = optimizer.learning_rate();
                optimizer.set_learning_rate(lr / 2.0);
            }
            // The gradient of |w|^2 / 2 is w.
            let grads = w.clone();
            optimizer.step(&mut w, &grads).unwrap();
        }
        assert_eq!(optimizer.learning_rate(), 0.025);
        w.cores[0].iter().map(|v| v * v).sum()
    }
    assert!(descend(Adam::new(0.05)) < 1e-2);
    assert!(descend(Sgd::new(0.05, 0.5)) < 1e-6);
}
