//! The classifier head: a dense [`Linear`] layer on the last hidden state, its logits scored by
//! [`softmax_cross_entropy`].

use kcp_runtime::{NamedTensor, Rng, ShapeError};

use super::{Parameters, TrainError};

/// A dense layer `y = x W^T + b`, W `[outputs, inputs]` row-major: the classifier on an RNN's
/// last hidden state (and, as a structure of the same shapes, its gradient).
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// The input size.
    pub inputs: usize,
    /// The output size.
    pub outputs: usize,
    /// W, `[outputs, inputs]`.
    pub weight: Vec<f32>,
    /// b, `[outputs]`.
    pub bias: Vec<f32>,
}

impl Linear {
    /// A seeded layer with PyTorch's initialisation: W and b uniform in +-1/sqrt(inputs).
    pub fn new(inputs: usize, outputs: usize, seed: u64) -> Linear {
        let bound = 1.0 / (inputs.max(1) as f64).sqrt();
        let mut rng = Rng::new(seed);
        Linear { inputs, outputs, weight: rng.vec_f32(outputs * inputs, bound), bias: rng.vec_f32(outputs, bound) }
    }

    /// A layer of zeros (a gradient to accumulate into).
    pub fn zeros(inputs: usize, outputs: usize) -> Linear {
        Linear { inputs, outputs, weight: vec![0.0; outputs * inputs], bias: vec![0.0; outputs] }
    }

    /// The rows of `x` (`[B, inputs]`), checked against `y` (`[B, outputs]`).
    fn rows(&self, x: &[f32], y_len: usize) -> Result<usize, ShapeError> {
        if self.inputs == 0 || !x.len().is_multiple_of(self.inputs) {
            return Err(ShapeError::Input { len: x.len(), input: self.inputs });
        }
        let rows = x.len() / self.inputs;
        if rows.checked_mul(self.outputs) != Some(y_len) {
            return Err(ShapeError::Output { len: y_len, rows, output: self.outputs });
        }
        Ok(rows)
    }

    /// `y = x W^T + b` for x `[B, inputs]` and y `[B, outputs]`.
    pub fn forward(&self, x: &[f32], y: &mut [f32]) -> Result<(), ShapeError> {
        self.rows(x, y.len())?;
        for (x, y) in x.chunks_exact(self.inputs).zip(y.chunks_exact_mut(self.outputs)) {
            for ((y, w), b) in y.iter_mut().zip(self.weight.chunks_exact(self.inputs)).zip(&self.bias) {
                *y = b + kcp_runtime::__private::dot(w, x);
            }
        }
        Ok(())
    }

    /// The gradients of a forward pass on `x` given `dy = dL/dy`: `grad` accumulates dL/dW =
    /// dy^T x and dL/db = the column sums of dy; `dx`, if given, is overwritten with dL/dx = dy W.
    pub fn backward(&self, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>, grad: &mut Linear) -> Result<(), ShapeError> {
        self.rows(x, dy.len())?;
        if (grad.inputs, grad.outputs) != (self.inputs, self.outputs) {
            return Err(ShapeError::Buffer {
                name: "gradient weight",
                len: grad.weight.len(),
                expected: self.weight.len(),
            });
        }
        for (x, dy) in x.chunks_exact(self.inputs).zip(dy.chunks_exact(self.outputs)) {
            for ((g, b), &d) in grad.weight.chunks_exact_mut(self.inputs).zip(&mut grad.bias).zip(dy) {
                *b += d;
                kcp_runtime::__private::axpy(g, x, d);
            }
        }
        if let Some(dx) = dx {
            if dx.len() != x.len() {
                return Err(ShapeError::Buffer { name: "dx", len: dx.len(), expected: x.len() });
            }
            for (dx, dy) in dx.chunks_exact_mut(self.inputs).zip(dy.chunks_exact(self.outputs)) {
                dx.fill(0.0);
                for (w, &d) in self.weight.chunks_exact(self.inputs).zip(dy) {
                    kcp_runtime::__private::axpy(dx, w, d);
                }
            }
        }
        Ok(())
    }

    /// The named tensors `{prefix}weight` and `{prefix}bias`, for [`kcp_runtime::save`].
    pub fn named(&self, prefix: &str) -> Vec<NamedTensor> {
        vec![
            NamedTensor::new(format!("{prefix}weight"), vec![self.outputs, self.inputs], self.weight.clone()),
            NamedTensor::new(format!("{prefix}bias"), vec![self.outputs], self.bias.clone()),
        ]
    }

    /// The layer `{prefix}weight` `[outputs, inputs]` and `{prefix}bias` of a file.
    #[cfg(feature = "files")]
    pub fn load(
        file: &kcp_runtime::TensorFile,
        prefix: &str,
        inputs: usize,
        outputs: usize,
    ) -> Result<Linear, kcp_runtime::Error> {
        let weight = file.tensor(&format!("{prefix}weight"), &[outputs, inputs])?;
        let bias = file.tensor(&format!("{prefix}bias"), &[outputs])?;
        Ok(Linear { inputs, outputs, weight, bias })
    }
}

impl Parameters for Linear {
    fn values(&self) -> Vec<&[f32]> {
        vec![&self.weight, &self.bias]
    }

    fn values_mut(&mut self) -> Vec<&mut [f32]> {
        vec![&mut self.weight, &mut self.bias]
    }
}

/// The mean softmax cross-entropy of `logits` (`[B, classes]`) against `labels` (`[B]`), and
/// its gradient written to `dlogits` (`(softmax - one_hot) / B`). Computed with the largest
/// logit of each row subtracted first, so no logit overflows; in f64 within each row.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
    dlogits: &mut [f32],
) -> Result<f32, TrainError> {
    let rows = labels.len();
    let expected = rows.checked_mul(classes);
    for (name, len) in [("logits", logits.len()), ("dlogits", dlogits.len())] {
        if Some(len) != expected || classes == 0 {
            return Err(ShapeError::Buffer { name, len, expected: expected.unwrap_or(usize::MAX) }.into());
        }
    }
    if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(TrainError::Label { row, label, classes });
    }
    let mut loss = 0.0f64;
    for ((z, d), &label) in logits.chunks_exact(classes).zip(dlogits.chunks_exact_mut(classes)).zip(labels) {
        let top = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let exps: Vec<f64> = z.iter().map(|&v| f64::from(v - top).exp()).collect();
        let sum: f64 = exps.iter().sum();
        loss += sum.ln() - f64::from(z[label] - top);
        for (k, (d, e)) in d.iter_mut().zip(&exps).enumerate() {
            let p = e / sum - if k == label { 1.0 } else { 0.0 };
            *d = (p / rows as f64) as f32;
        }
    }
    Ok((loss / rows.max(1) as f64) as f32)
}

/// The fraction of rows of `logits` (`[B, classes]`) whose largest logit is at their label;
/// an error where `logits` does not hold one row of `classes` logits per label.
pub fn accuracy(logits: &[f32], labels: &[usize], classes: usize) -> Result<f32, ShapeError> {
    let expected = labels.len().checked_mul(classes);
    if classes == 0 || expected != Some(logits.len()) {
        return Err(ShapeError::Buffer { name: "logits", len: logits.len(), expected: expected.unwrap_or(usize::MAX) });
    }
    let hits = logits
        .chunks_exact(classes.max(1))
        .zip(labels)
        .filter(|(z, &label)| {
            let best = z.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (k, &v)| if v > b.1 { (k, v) } else { b });
            best.0 == label
        })
        .count();
    Ok(hits as f32 / labels.len().max(1) as f32)
}
