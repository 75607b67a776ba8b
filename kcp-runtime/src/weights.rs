//! Weights of a layer of any format: the format's cores (a KCP layer's `factor.0` ..
//! `factor.{D-1}`, each `[R, m_d, n_d]`), f32, and optionally a bias `[M]`. Their files are
//! `weight_files` (the default feature `files`).

use crate::{CoreShape, Error, Rng};

/// A named f32 tensor, as a weight file holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Its name in the file (`factor.0`, `bias`, `weight_ih.core.1`, ...).
    pub name: String,
    /// Its shape, row-major.
    pub shape: Vec<usize>,
    /// Its values.
    pub values: Vec<f32>,
}

impl NamedTensor {
    /// A tensor of these values under this name and shape.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, values: Vec<f32>) -> NamedTensor {
        NamedTensor { name: name.into(), shape, values }
    }
}

/// The cores and bias of one layer of any format, f32, row-major: core k in the layer's
/// `CORE_NAMES` order, each of its [`CoreShape`].
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    /// The cores (a KCP layer's factor stacks `[R, m_d, n_d]`).
    pub cores: Vec<Vec<f32>>,
    /// b, `[M]`, if the layer has one.
    pub bias: Option<Vec<f32>>,
}

impl Weights {
    /// Every weight zero.
    pub fn zeros(cores: &[CoreShape], bias_len: Option<usize>) -> Weights {
        Weights { cores: cores.iter().map(|c| vec![0.0; c.len()]).collect(), bias: bias_len.map(|m| vec![0.0; m]) }
    }

    /// Seeded weights: core k uniform in `±scales[k]` (the network's `init_scales`, which make
    /// the dense weight's entries of variance 1/N; a scale missing reads as 1), drawn core by
    /// core; the bias uniform in ±1/sqrt(N) for N = `input`.
    pub fn random(cores: &[CoreShape], scales: &[f64], input: usize, bias_len: Option<usize>, seed: u64) -> Weights {
        let mut rng = Rng::new(seed);
        let scale = |k: usize| scales.get(k).copied().unwrap_or(1.0);
        let cores = cores.iter().enumerate().map(|(k, c)| rng.vec_f32(c.len(), scale(k))).collect();
        let bias = bias_len.map(|m| rng.vec_f32(m, 1.0 / (input as f64).sqrt()));
        Weights { cores, bias }
    }

    /// The dense weight of a KCP layer's weights, `W = sum_r A1[r] (x) ... (x) AD[r]`, `[M, N]`
    /// row-major, built one Kronecker product at a time (R * M * N multiply-adds for the last
    /// product of each term).
    pub fn dense(&self, factor_shapes: &[[usize; 3]]) -> Vec<f32> {
        let m: usize = factor_shapes.iter().map(|s| s[1]).product();
        let n: usize = factor_shapes.iter().map(|s| s[2]).product();
        let rank = factor_shapes.first().map_or(0, |s| s[0]);
        let mut w = vec![0.0f32; m * n];
        for r in 0..rank {
            let (mut term, mut rows, mut cols) = (vec![1.0f32], 1, 1);
            for (factor, &[_, fm, fnn]) in self.cores.iter().zip(factor_shapes) {
                let block = &factor[r * fm * fnn..(r + 1) * fm * fnn];
                let mut next = vec![0.0f32; rows * fm * cols * fnn];
                for i in 0..rows {
                    for k in 0..fm {
                        let row = &mut next[(i * fm + k) * cols * fnn..][..cols * fnn];
                        for j in 0..cols {
                            let t = term[i * cols + j];
                            for (out, &b) in row[j * fnn..][..fnn].iter_mut().zip(&block[k * fnn..][..fnn]) {
                                *out = t * b;
                            }
                        }
                    }
                }
                (term, rows, cols) = (next, rows * fm, cols * fnn);
            }
            w.iter_mut().zip(&term).for_each(|(w, t)| *w += t);
        }
        w
    }

    /// Check every core against its shape and the bias against `bias_len` (`None`: no bias
    /// allowed), and that every value is finite.
    pub fn check(&self, cores: &[CoreShape], bias_len: Option<usize>) -> Result<(), Error> {
        if self.cores.len() != cores.len() {
            return Err(match cores.get(self.cores.len()) {
                Some(core) => Error::MissingTensor { name: core.name.clone() },
                None => Error::CoreCount {
                    found: self.cores.len(),
                    expected: cores.len(),
                    names: cores.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                },
            });
        }
        for (values, core) in self.cores.iter().zip(cores) {
            check_values(&core.name, values, &core.shape)?;
        }
        match (&self.bias, bias_len) {
            (Some(bias), Some(m)) => check_values("bias", bias, &[m]),
            (None, Some(_)) => Err(Error::MissingTensor { name: "bias".into() }),
            (Some(_), None) => Err(Error::UnexpectedTensor { name: "bias".into(), why: "it has no bias".into() }),
            (None, None) => Ok(()),
        }
    }

    /// The named tensors of these weights, ready for [`save`](crate::save), every name prefixed with
    /// `prefix` (a stacked core as its tensors).
    pub fn tensors(&self, prefix: &str, cores: &[CoreShape]) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        for (data, core) in self.cores.iter().zip(cores) {
            let part = core.tensor_shape().iter().product::<usize>();
            for (tensor, chunk) in core.tensors.iter().zip(data.chunks(part.max(1))) {
                out.push(NamedTensor::new(format!("{prefix}{tensor}"), core.tensor_shape().to_vec(), chunk.to_vec()));
            }
        }
        if let Some(bias) = &self.bias {
            out.push(NamedTensor::new(format!("{prefix}bias"), vec![bias.len()], bias.clone()));
        }
        out
    }
}

/// The cores of a KCP layer: `factor.d`, `[R, m_d, n_d]`.
pub fn kcp_cores(factor_shapes: &[[usize; 3]]) -> Vec<CoreShape> {
    let core = |(d, shape): (usize, &[usize; 3])| {
        let name = format!("factor.{d}");
        CoreShape { tensors: vec![name.clone()], name, shape: shape.to_vec() }
    };
    factor_shapes.iter().enumerate().map(core).collect()
}

pub(crate) fn check_values(name: &str, values: &[f32], shape: &[usize]) -> Result<(), Error> {
    if values.len() != shape.iter().product::<usize>() {
        return Err(Error::TensorShape { name: name.into(), expected: shape.to_vec(), found: vec![values.len()] });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite { name: name.into(), index, value: values[index] }),
        None => Ok(()),
    }
}
