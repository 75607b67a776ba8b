//! Training building blocks: what a loop that trains a compressed recurrent network needs
//! beside the layers' own gradients.
//!
//! - [`Parameters`]: a model's trainable tensors in a fixed order; gradients are structures of
//!   the same type (the same shapes and names), so that one walk zeroes, measures, clips and
//!   updates both;
//! - [`Linear`] with [`softmax_cross_entropy`]: the classifier head on the last hidden state;
//! - [`Optimizer`], over [`Adam`] and [`Sgd`] (with momentum), PyTorch's update rules; [`clip_grad_norm`] by the
//!   global norm; [`zero`] and [`global_norm`].

mod head;
mod optim;

pub use head::{accuracy, softmax_cross_entropy, Linear};
pub use optim::{Adam, Optimizer, Sgd};

use kcp_runtime::{CellGrads, Recurrent, ShapeError, Weights};

/// What can be wrong with a training step's inputs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A buffer of the wrong length.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A label that is not a class.
    #[error("label {label} of row {row} is not one of the {classes} classes")]
    Label {
        /// The row of the batch.
        row: usize,
        /// Its label.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
}

/// A model's trainable tensors, or their gradients: the same type holds both.
pub trait Parameters {
    /// Every tensor, in a fixed order.
    fn values(&self) -> Vec<&[f32]>;
    /// Every tensor, mutable, in the same order.
    fn values_mut(&mut self) -> Vec<&mut [f32]>;
}

impl Parameters for Weights {
    fn values(&self) -> Vec<&[f32]> {
        self.cores.iter().map(Vec::as_slice).chain(self.bias.as_deref()).collect()
    }

    fn values_mut(&mut self) -> Vec<&mut [f32]> {
        self.cores.iter_mut().map(Vec::as_mut_slice).chain(self.bias.as_deref_mut()).collect()
    }
}

impl Parameters for Recurrent {
    fn values(&self) -> Vec<&[f32]> {
        vec![self.weight_hh(), self.bias_hh()]
    }

    fn values_mut(&mut self) -> Vec<&mut [f32]> {
        let (w, b) = self.weights_mut();
        vec![w, b]
    }
}

impl Parameters for CellGrads {
    fn values(&self) -> Vec<&[f32]> {
        vec![&self.weight_hh, &self.bias_hh]
    }

    fn values_mut(&mut self) -> Vec<&mut [f32]> {
        vec![&mut self.weight_hh, &mut self.bias_hh]
    }
}

/// Two parts of a model, the first's tensors first.
impl<A: Parameters, B: Parameters> Parameters for (A, B) {
    fn values(&self) -> Vec<&[f32]> {
        let mut all = self.0.values();
        all.extend(self.1.values());
        all
    }

    fn values_mut(&mut self) -> Vec<&mut [f32]> {
        let mut all = self.0.values_mut();
        all.extend(self.1.values_mut());
        all
    }
}

/// Set every tensor to zero (gradients, before a batch accumulates into them).
pub fn zero(p: &mut impl Parameters) {
    p.values_mut().into_iter().for_each(|t| t.fill(0.0));
}

/// The Euclidean norm of all tensors together (summed in f64).
pub fn global_norm(p: &impl Parameters) -> f32 {
    let sum: f64 = p.values().iter().flat_map(|t| t.iter()).map(|&v| f64::from(v) * f64::from(v)).sum();
    sum.sqrt() as f32
}

/// Scale gradients so that their global norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: by `max_norm / (norm + 1e-6)` when that is below 1); returns the norm
/// before clipping. A non-finite norm leaves the gradients as they are (the caller decides).
pub fn clip_grad_norm(grads: &mut impl Parameters, max_norm: f32) -> f32 {
    let norm = global_norm(grads);
    let scale = max_norm / (norm + 1e-6);
    if norm.is_finite() && scale < 1.0 {
        grads.values_mut().into_iter().flat_map(|t| t.iter_mut()).for_each(|v| *v *= scale);
    }
    norm
}

/// A parameter tensor and its gradient.
type Pair<'a, 'b> = (&'a mut [f32], &'b [f32]);

/// The tensors of `grads` beside those of `params`, checked: as many, of the same lengths.
fn paired<'a, 'b>(
    params: &'a mut impl Parameters,
    grads: &'b impl Parameters,
) -> Result<Vec<Pair<'a, 'b>>, ShapeError> {
    let (p, g) = (params.values_mut(), grads.values());
    if p.len() != g.len() {
        return Err(ShapeError::Buffer { name: "gradient tensors", len: g.len(), expected: p.len() });
    }
    p.into_iter()
        .zip(g)
        .map(|(p, g)| {
            if p.len() == g.len() {
                Ok((p, g))
            } else {
                Err(ShapeError::Buffer { name: "gradient", len: g.len(), expected: p.len() })
            }
        })
        .collect()
}
