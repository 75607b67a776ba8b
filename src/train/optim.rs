//! Optimizers over [`Parameters`]: the [`Optimizer`] trait, and [`Adam`] and [`Sgd`] with
//! momentum, PyTorch's update rules, their state one buffer per tensor, made at the first step.

use kcp_runtime::ShapeError;

use super::{paired, Pair, Parameters};

/// An optimiser: its steps move parameters against their gradients, with state of its own
/// (moments, velocities) kept between steps. A training loop generic over `O: Optimizer`
/// runs Adam or SGD alike.
pub trait Optimizer {
    /// One step: `params` moved against `grads` (of the same shapes; an error, and nothing
    /// moved, if they or the state of earlier steps do not match).
    fn step(&mut self, params: &mut impl Parameters, grads: &impl Parameters) -> Result<(), ShapeError>;

    /// The learning rate.
    fn learning_rate(&self) -> f32;

    /// Set the learning rate (a schedule's step).
    fn set_learning_rate(&mut self, lr: f32);
}

/// Adam (Kingma and Ba), as `torch.optim.Adam`: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2)
/// g^2`, `p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`, with `g += weight_decay p`
/// first (L2, not decoupled).
#[derive(Clone, Debug)]
pub struct Adam {
    /// The learning rate.
    pub lr: f32,
    /// The decay of the first moment.
    pub beta1: f32,
    /// The decay of the second moment.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// L2 weight decay.
    pub weight_decay: f32,
    steps: i32,
    moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Adam {
    /// Adam with learning rate `lr` and PyTorch's defaults (0.9, 0.999, 1e-8, no decay).
    pub fn new(lr: f32) -> Adam {
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, steps: 0, moments: Vec::new() }
    }

    /// The steps taken.
    pub fn steps(&self) -> usize {
        self.steps as usize
    }
}

impl Optimizer for Adam {
    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn step(&mut self, params: &mut impl Parameters, grads: &impl Parameters) -> Result<(), ShapeError> {
        let pairs = paired(params, grads)?;
        if self.moments.is_empty() {
            self.moments = pairs.iter().map(|(p, _)| (vec![0.0; p.len()], vec![0.0; p.len()])).collect();
        }
        check_state(self.moments.iter().map(|(m, _)| m.len()), &pairs)?;
        self.steps = self.steps.saturating_add(1);
        let (b1, b2) = (self.beta1, self.beta2);
        let (c1, c2) = (1.0 - b1.powi(self.steps), 1.0 - b2.powi(self.steps));
        for ((p, g), (m, v)) in pairs.into_iter().zip(&mut self.moments) {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = g + self.weight_decay * *p;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= self.lr * (*m / c1) / ((*v / c2).sqrt() + self.eps);
            }
        }
        Ok(())
    }
}

/// Stochastic gradient descent with momentum, as `torch.optim.SGD`: `b = momentum b + g` (`b
/// = g` at the first step), `p -= lr b`; with momentum 0, `p -= lr g`.
#[derive(Clone, Debug)]
pub struct Sgd {
    /// The learning rate.
    pub lr: f32,
    /// The momentum.
    pub momentum: f32,
    velocity: Vec<Vec<f32>>,
}

impl Sgd {
    /// SGD with learning rate `lr` and `momentum`.
    pub fn new(lr: f32, momentum: f32) -> Sgd {
        Sgd { lr, momentum, velocity: Vec::new() }
    }
}

impl Optimizer for Sgd {
    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn step(&mut self, params: &mut impl Parameters, grads: &impl Parameters) -> Result<(), ShapeError> {
        let pairs = paired(params, grads)?;
        let first = self.velocity.is_empty();
        if first {
            self.velocity = pairs.iter().map(|(_, g)| g.to_vec()).collect();
        }
        check_state(self.velocity.iter().map(Vec::len), &pairs)?;
        for ((p, g), b) in pairs.into_iter().zip(&mut self.velocity) {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                if !first {
                    *b = self.momentum * *b + g;
                }
                *p -= self.lr * *b;
            }
        }
        Ok(())
    }
}

/// The state of earlier steps (one buffer per tensor, of `lens`) matches the tensors now.
fn check_state(lens: impl ExactSizeIterator<Item = usize>, pairs: &[Pair]) -> Result<(), ShapeError> {
    if lens.len() != pairs.len() {
        return Err(ShapeError::Buffer { name: "parameter tensors", len: pairs.len(), expected: lens.len() });
    }
    for (len, (p, _)) in lens.zip(pairs) {
        if len != p.len() {
            return Err(ShapeError::Buffer { name: "parameter", len: p.len(), expected: len });
        }
    }
    Ok(())
}
