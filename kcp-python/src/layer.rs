//! `kcp._kcp.Layer`: one layer planned for its shapes, its weights given with each call; the
//! trace a training forward pass keeps for its backward pass (`Trace`); the plan's steps as
//! einsum equations (what `kcp.torch` runs on devices kcp's kernels do not serve); fits of a
//! dense weight; weight files, a recurrent layer's included.
//!
//! x, dy and the arrays returned are not copied (x and dy must be C-contiguous float32, which
//! the Python half arranges); the cores are copied once per call into the executor's weights
//! (they are small: the point of the format).

use std::path::PathBuf;
use std::sync::Arc;

use kcp::compress::{compress, compress_cp, tt_svd, FitOptions};
use kcp::ir::network::Format;
use kcp::ir::{lower_backward, Compiled, Index, IndexSet, Operand, Value};
use kcp::{BackwardProgram, CellKind, CoreShape, Executor, NamedTensor, Recurrent, Trace, Weights};
use numpy::{PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn};
use numpy::{PyUntypedArrayMethods, ToPyArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{compiled, contiguous, error, threads_of};

/// The most bytes of forward intermediates a training forward pass keeps for its backward
/// pass; a batch whose intermediates need more is run again, row by row, by the backward pass.
/// Kept intermediates save the backward pass a forward pass only while they stay in the last
/// level cache: measured on the UCF11 layer (KCP rank 4, 184 KB kept per row; Zen 5, 32 MB L3),
/// forward + backward per row took 60 us kept against 99 us recomputed at batch 1, 82 against
/// 98 at batch 128 (24 MB kept), and 185 against 98 at batch 256 (47 MB).
const MAX_KEPT_BYTES: usize = 16 << 20;

/// `(dx, dcores, dbias)`, as `backward` returns them.
type Gradients<'py> =
    (Option<Bound<'py, PyArray2<f32>>>, Vec<Bound<'py, PyArrayDyn<f32>>>, Option<Bound<'py, PyArray1<f32>>>);

/// A tensor a step of [`Layer::einsum_steps`] reads or writes: its kind (`"x"`, `"core"`,
/// `"temp"` or `"y"`) and number.
type Slot = (&'static str, usize);

/// A cell kind from its name.
pub(crate) fn cell_kind(name: &str) -> PyResult<CellKind> {
    match name {
        "lstm" => Ok(CellKind::Lstm),
        "gru" => Ok(CellKind::Gru),
        other => Err(PyValueError::new_err(format!("unknown cell {other:?}: expected \"lstm\" or \"gru\""))),
    }
}

/// A layer of any format, planned for its shapes: forward and backward passes on NumPy arrays
/// whose weights (cores, in `core_names` order, and the bias) come with each call.
#[pyclass(module = "kcp._kcp", frozen)]
pub struct Layer {
    compiled: Compiled,
    /// The backward programs: the cores' and bias' gradients, and those with dx.
    weights_only: Arc<BackwardProgram>,
    with_dx: Arc<BackwardProgram>,
}

impl Layer {
    /// The cores' names and shapes, in the order calls take them.
    fn cores(&self) -> &[CoreShape] {
        &self.compiled.nest.cores
    }

    /// The executor of this layer with these cores and bias, all checked.
    fn executor(
        &self,
        cores: &[PyReadonlyArrayDyn<'_, f32>],
        bias: Option<&PyReadonlyArray1<'_, f32>>,
    ) -> PyResult<Executor> {
        let executor = Executor::new(self.compiled.nest.clone(), self.weights(cores, bias)?)
            .and_then(|e| e.interleaved(self.compiled.lanes.clone()).split(self.compiled.split.clone()))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(executor)
    }

    /// These cores and bias as the layer's weights, their number and shapes checked.
    fn weights(
        &self,
        cores: &[PyReadonlyArrayDyn<'_, f32>],
        bias: Option<&PyReadonlyArray1<'_, f32>>,
    ) -> PyResult<Weights> {
        if cores.len() != self.cores().len() {
            return Err(PyValueError::new_err(format!(
                "the layer has {} cores ({}), found {}",
                self.cores().len(),
                self.core_names().join(", "),
                cores.len()
            )));
        }
        let mut values_of = Vec::with_capacity(cores.len());
        for (array, core) in cores.iter().zip(self.cores()) {
            if array.shape() != core.shape.as_slice() {
                return Err(PyValueError::new_err(format!(
                    "core {} must have shape {:?}, found {:?}",
                    core.name,
                    core.shape,
                    array.shape()
                )));
            }
            values_of.push(contiguous(array, &core.name)?.to_vec());
        }
        let bias = match (bias, self.compiled.spec.bias()) {
            (Some(b), true) => Some(contiguous(b, "bias")?.to_vec()),
            (None, false) => None,
            (Some(_), false) => return Err(PyValueError::new_err("the layer has no bias, but one was given")),
            (None, true) => return Err(PyValueError::new_err("the layer has a bias, but none was given")),
        };
        Ok(Weights { cores: values_of, bias })
    }

    /// The rows of x `[B, N]`, checked against the layer's N.
    fn rows(&self, x: &PyReadonlyArray2<'_, f32>, name: &str) -> PyResult<usize> {
        let [rows, n] = [x.shape()[0], x.shape()[1]];
        if n != self.compiled.nest.input_size() {
            return Err(PyValueError::new_err(format!(
                "{name} must have {} columns (the product of in_shape), found {n}",
                self.compiled.nest.input_size()
            )));
        }
        Ok(rows)
    }

    /// Weights as NumPy arrays of the cores' shapes: `(cores, bias)`.
    #[allow(clippy::type_complexity)]
    fn arrays<'py>(
        &self,
        py: Python<'py>,
        weights: &Weights,
    ) -> PyResult<(Vec<Bound<'py, PyArrayDyn<f32>>>, Option<Bound<'py, PyArray1<f32>>>)> {
        let cores = weights
            .cores
            .iter()
            .zip(self.cores())
            .map(|(values, core)| values.to_pyarray(py).reshape(core.shape.clone()))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((cores, weights.bias.as_ref().map(|b| b.to_pyarray(py))))
    }

    /// The kind of a cell's name and its hidden size, the layer's M being gates x hidden.
    fn cell(&self, name: &str) -> PyResult<(CellKind, usize)> {
        let kind = cell_kind(name)?;
        if !self.compiled.spec.bias() {
            return Err(PyValueError::new_err(
                "kcp's recurrent weight files hold a cell with biases (bias_ih, bias_hh); this layer has none",
            ));
        }
        let m = self.compiled.nest.output_size();
        if !m.is_multiple_of(kind.gates()) {
            return Err(PyValueError::new_err(format!(
                "a {name} cell's projection has {} x hidden outputs; this layer has {m}",
                kind.gates()
            )));
        }
        Ok((kind, m / kind.gates()))
    }

    /// The backward program with or without dx.
    fn backward_program(&self, dx: bool) -> &Arc<BackwardProgram> {
        if dx {
            &self.with_dx
        } else {
            &self.weights_only
        }
    }
}

#[pymethods]
impl Layer {
    #[new]
    #[pyo3(signature = (in_shape, out_shape, format = "kcp", rank = None, ranks = None, blocks = None, bias = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        in_shape: Vec<usize>,
        out_shape: Vec<usize>,
        format: &str,
        rank: Option<usize>,
        ranks: Option<Vec<usize>>,
        blocks: Option<usize>,
        bias: bool,
    ) -> PyResult<Layer> {
        let compiled = compiled(in_shape, out_shape, format, rank, ranks, blocks, bias, 1)?;
        let weights_only = Arc::new(lower_backward(&compiled.backward(false), &compiled.graph));
        let with_dx = Arc::new(lower_backward(&compiled.backward(true), &compiled.graph));
        Ok(Layer { compiled, weights_only, with_dx })
    }

    /// The format's name.
    #[getter]
    fn format(&self) -> &'static str {
        self.compiled.network().format().name()
    }

    /// The input modes.
    #[getter]
    fn in_shape(&self) -> Vec<usize> {
        self.compiled.network().in_shape().to_vec()
    }

    /// The output modes.
    #[getter]
    fn out_shape(&self) -> Vec<usize> {
        self.compiled.network().out_shape().to_vec()
    }

    /// N, the product of `in_shape`.
    #[getter]
    fn in_features(&self) -> usize {
        self.compiled.nest.input_size()
    }

    /// M, the product of `out_shape`.
    #[getter]
    fn out_features(&self) -> usize {
        self.compiled.nest.output_size()
    }

    /// Whether the layer adds a bias.
    #[getter]
    fn has_bias(&self) -> bool {
        self.compiled.spec.bias()
    }

    /// The cores' names, in the order `forward` takes them.
    #[getter]
    fn core_names(&self) -> Vec<String> {
        self.cores().iter().map(|c| c.name.clone()).collect()
    }

    /// The cores' shapes, in `core_names` order.
    #[getter]
    fn core_shapes(&self) -> Vec<Vec<usize>> {
        self.cores().iter().map(|c| c.shape.clone()).collect()
    }

    /// The per-core scales of a random initialisation (uniform in [-scale, scale]) that keeps
    /// y's variance near x's, as the Rust layers' `random` uses.
    #[getter]
    fn init_scales(&self) -> Vec<f64> {
        self.compiled.network().init_scales()
    }

    /// The parameters of the cores (the bias not counted).
    #[getter]
    fn params(&self) -> u64 {
        self.compiled.network().params()
    }

    /// Multiply-adds per row of the planned forward pass.
    #[getter]
    fn macs(&self) -> u64 {
        self.compiled.plan.macs()
    }

    /// The plan, as `kcp plan` prints it.
    #[getter]
    fn plan(&self) -> String {
        self.compiled.plan.to_string()
    }

    /// The plan's steps, load-time steps first, each one einsum: `(equation, inputs, output)`,
    /// the inputs and output as `(kind, number)` with kind `"x"` (x as `[B, n_1, .., n_D]`),
    /// `"core"` (core `number` in its stored shape), `"temp"` (step `number`'s result) or
    /// `"y"` (`[B, m_1, .., m_D]`). A step summing a core over indices has one input.
    #[getter]
    fn einsum_steps(&self) -> PyResult<Vec<(String, Vec<Slot>, Slot)>> {
        let graph = &self.compiled.graph;
        let slot = |value: Value| -> Option<Slot> {
            match value {
                Value::Operand(Operand::Input) => Some(("x", 0)),
                Value::Operand(Operand::Factor(k)) => Some(("core", k)),
                Value::Temp(k) => Some(("temp", k)),
                Value::Output => Some(("y", 0)),
                Value::Ones => None,
            }
        };
        // A core's indices in its storage order; anything else's in the global order (x's is
        // b, j_1..j_D; y's b, i_1..i_D).
        let layout = |value: Value, set: IndexSet| -> Vec<Index> {
            match value {
                Value::Operand(operand @ Operand::Factor(_)) => graph.layout(operand),
                _ => set.iter().collect(),
            }
        };
        let mut steps = Vec::with_capacity(self.compiled.plan.steps().len());
        for step in self.compiled.plan.steps() {
            let mut letters: Vec<Index> = Vec::new();
            let mut subscripts = |indices: &[Index]| -> PyResult<String> {
                let mut text = String::new();
                for &index in indices {
                    let k = letters.iter().position(|&i| i == index).unwrap_or_else(|| {
                        letters.push(index);
                        letters.len() - 1
                    });
                    let letter = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".get(k).ok_or_else(|| {
                        PyValueError::new_err("a step of this plan has more than 52 indices, more than einsum takes")
                    })?;
                    text.push(*letter as char);
                }
                Ok(text)
            };
            let mut terms = Vec::new();
            let mut inputs = Vec::new();
            for (value, set) in step.inputs {
                if let Some(input) = slot(value) {
                    terms.push(subscripts(&layout(value, set))?);
                    inputs.push(input);
                }
            }
            let output = subscripts(&step.indices.iter().collect::<Vec<_>>())?;
            let written = slot(step.output).ok_or_else(|| PyValueError::new_err("a step writing a ones tensor"))?;
            steps.push((format!("{}->{output}", terms.join(",")), inputs, written));
        }
        Ok(steps)
    }

    /// These cores and bias checked and bound to the layer, its load-time pre-products computed
    /// once: what `forward` and `forward_train` do on every call, for callers whose weights
    /// stay the same across calls.
    #[pyo3(signature = (cores, bias = None))]
    fn prepare(
        &self,
        cores: Vec<PyReadonlyArrayDyn<'_, f32>>,
        bias: Option<PyReadonlyArray1<'_, f32>>,
    ) -> PyResult<Prepared> {
        Ok(Prepared {
            executor: Arc::new(self.executor(&cores, bias.as_ref())?),
            weights_only: Arc::clone(&self.weights_only),
            with_dx: Arc::clone(&self.with_dx),
        })
    }

    /// y = x W^T + b for x `[B, N]` float32 C-contiguous, with the cores (and bias) given.
    #[pyo3(signature = (x, cores, bias = None, threads = None))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        cores: Vec<PyReadonlyArrayDyn<'py, f32>>,
        bias: Option<PyReadonlyArray1<'py, f32>>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.prepare(cores, bias)?.forward(py, x, threads)
    }

    /// y as `forward` computes it, and the trace of the pass (the executor, x itself and, up to
    /// [`MAX_KEPT_BYTES`], the intermediates the backward pass reads), whose `backward` then
    /// gives the gradients without building the executor again and, where the intermediates
    /// were kept, without running the forward pass again. `dx`: whether that backward pass
    /// computes dx.
    #[pyo3(signature = (x, cores, bias = None, dx = false, threads = None))]
    fn forward_train<'py>(
        &self,
        py: Python<'py>,
        x: Bound<'py, PyArray2<f32>>,
        cores: Vec<PyReadonlyArrayDyn<'py, f32>>,
        bias: Option<PyReadonlyArray1<'py, f32>>,
        dx: bool,
        threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, ForwardTrace)> {
        self.prepare(cores, bias)?.forward_train(py, x, dx, threads)
    }

    /// The gradients of `L = sum(dy * y)`: `(dx, dcores, dbias)`, dx `None` unless asked for,
    /// dbias `None` for a layer without bias. dy `[B, M]` float32 C-contiguous. Runs the
    /// forward pass again (row by row, keeping nothing); `forward_train` keeps it instead.
    #[pyo3(signature = (x, dy, cores, bias = None, dx = false, threads = None))]
    #[allow(clippy::too_many_arguments)]
    fn backward<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        dy: PyReadonlyArray2<'py, f32>,
        cores: Vec<PyReadonlyArrayDyn<'py, f32>>,
        bias: Option<PyReadonlyArray1<'py, f32>>,
        dx: bool,
        threads: Option<usize>,
    ) -> PyResult<Gradients<'py>> {
        let threads = threads_of(threads)?;
        let rows = self.rows(&x, "x")?;
        let executor = self.executor(&cores, bias.as_ref())?;
        let (xs, dys) = (contiguous(&x, "x")?, dy_values(&dy, rows, self.compiled.nest.output_size())?);
        let program = self.backward_program(dx);
        let n = self.compiled.nest.input_size();
        let mut dx_values = vec![0.0f32; if dx { rows * n } else { 0 }];
        let grads = py
            .detach(|| executor.gradients(program, xs, dys, dx.then_some(&mut dx_values[..]), threads))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        gradients(py, self.cores(), grads, dx.then_some(dx_values), rows, n)
    }

    /// Cores fitted to a dense weight w `[M, N]` (float32, C-contiguous): by alternating least
    /// squares for a KCP or CP layer (`iters` sweeps at most, random start from `seed`), by TT-SVD for
    /// a tensor train (exact where the ranks allow). Returns `(cores, relative_error,
    /// sweeps)`, sweeps None for TT-SVD; the bias is not fitted.
    #[pyo3(signature = (w, iters = 100, seed = 0))]
    #[allow(clippy::type_complexity)]
    fn compress<'py>(
        &self,
        py: Python<'py>,
        w: PyReadonlyArray2<'py, f32>,
        iters: usize,
        seed: u64,
    ) -> PyResult<(Vec<Bound<'py, PyArrayDyn<f32>>>, f64, Option<usize>)> {
        let (m, n) = (self.compiled.nest.output_size(), self.compiled.nest.input_size());
        if w.shape() != [m, n] {
            return Err(PyValueError::new_err(format!("w must have shape [{m}, {n}], found {:?}", w.shape())));
        }
        let w = contiguous(&w, "w")?;
        let network = self.compiled.network();
        let (in_shape, out_shape) = (network.in_shape(), network.out_shape());
        let fit = match *network.format() {
            Format::Kcp { rank } => py.detach(|| {
                let options = FitOptions { iters, seed, ..FitOptions::default() };
                compress(w, in_shape, out_shape, rank, &options, |_, _| {})
                    .map(|fit| (fit.weights, fit.relative_error, Some(fit.iterations)))
            }),
            Format::Cp { rank } => py.detach(|| {
                let options = FitOptions { iters, seed, ..FitOptions::default() };
                compress_cp(w, in_shape, out_shape, rank, &options, |_, _| {})
                    .map(|fit| (fit.weights, fit.relative_error, Some(fit.iterations)))
            }),
            Format::Tt { ref ranks } => {
                py.detach(|| tt_svd(w, in_shape, out_shape, ranks).map(|fit| (fit.weights, fit.relative_error, None)))
            }
            ref other => {
                return Err(PyValueError::new_err(format!(
                    "dense weights are fitted to kcp and cp (ALS) and tt (TT-SVD) layers, not {}",
                    other.name()
                )))
            }
        };
        let (weights, relative_error, sweeps) = fit.map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok((self.arrays(py, &weights)?.0, relative_error, sweeps))
    }

    /// The cores and bias of a weight file (safetensors: the cores under `core_names`, `bias`),
    /// checked against the layer: `(cores, bias)`, bias None for a layer without one.
    #[allow(clippy::type_complexity)]
    fn load<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
    ) -> PyResult<(Vec<Bound<'py, PyArrayDyn<f32>>>, Option<Bound<'py, PyArray1<f32>>>)> {
        let bias_len = self.compiled.spec.bias().then(|| self.compiled.nest.output_size());
        let weights = py.detach(|| Weights::load(&path, "", self.cores(), bias_len)).map_err(error)?;
        self.arrays(py, &weights)
    }

    /// Write the cores and bias to a weight file that `load`, the Rust layers and the `kcp`
    /// command line read: complete, or not at all.
    #[pyo3(signature = (path, cores, bias = None))]
    fn save(
        &self,
        py: Python<'_>,
        path: PathBuf,
        cores: Vec<PyReadonlyArrayDyn<'_, f32>>,
        bias: Option<PyReadonlyArray1<'_, f32>>,
    ) -> PyResult<()> {
        let tensors = self.weights(&cores, bias.as_ref())?.tensors("", self.cores());
        py.detach(|| kcp::save(&path, &tensors)).map_err(error)
    }

    /// A recurrent layer's weight file whose input projection is this layer (`cell` "lstm" or
    /// "gru"; the layer's M is gates x hidden): `(cores, bias_ih, weight_hh, bias_hh)`, as the
    /// Rust recurrent layers and `kcp run --cell` read them (`weight_ih.{core}`, `bias_ih`,
    /// `weight_hh`, `bias_hh`).
    #[allow(clippy::type_complexity)]
    fn load_cell<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
        cell: &str,
    ) -> PyResult<(
        Vec<Bound<'py, PyArrayDyn<f32>>>,
        Bound<'py, PyArray1<f32>>,
        Bound<'py, PyArray2<f32>>,
        Bound<'py, PyArray1<f32>>,
    )> {
        let (kind, hidden) = self.cell(cell)?;
        let (weights, recurrent) =
            py.detach(|| kcp::load_recurrent(&path, self.cores(), kind, hidden)).map_err(error)?;
        let g = kind.gates() * hidden;
        let bias_ih = weights.bias.as_deref().unwrap_or_default().to_pyarray(py);
        let cores = self.arrays(py, &Weights { bias: None, ..weights })?.0;
        let weight_hh = recurrent.weight_hh().to_pyarray(py).reshape([g, hidden])?;
        Ok((cores, bias_ih, weight_hh, recurrent.bias_hh().to_pyarray(py)))
    }

    /// Write a recurrent layer's weight file (the names of `load_cell`): complete, or not at
    /// all.
    #[allow(clippy::too_many_arguments)]
    fn save_cell(
        &self,
        py: Python<'_>,
        path: PathBuf,
        cell: &str,
        cores: Vec<PyReadonlyArrayDyn<'_, f32>>,
        bias_ih: PyReadonlyArray1<'_, f32>,
        weight_hh: PyReadonlyArray2<'_, f32>,
        bias_hh: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<()> {
        let (kind, hidden) = self.cell(cell)?;
        let weights = self.weights(&cores, Some(&bias_ih))?;
        let g = kind.gates() * hidden;
        if weight_hh.shape() != [g, hidden] {
            return Err(PyValueError::new_err(format!(
                "weight_hh must have shape [{g}, {hidden}], found {:?}",
                weight_hh.shape()
            )));
        }
        let (w_hh, b_hh) = (contiguous(&weight_hh, "weight_hh")?.to_vec(), contiguous(&bias_hh, "bias_hh")?.to_vec());
        let cell = Recurrent::new(kind, hidden, w_hh, b_hh).map_err(error)?;
        let bias = weights.bias.clone().unwrap_or_default();
        let mut tensors = Weights { bias: None, ..weights }.tensors("weight_ih.", self.cores());
        tensors.push(NamedTensor::new("bias_ih", vec![g], bias));
        tensors.push(NamedTensor::new("weight_hh", vec![g, hidden], cell.weight_hh().to_vec()));
        tensors.push(NamedTensor::new("bias_hh", vec![g], cell.bias_hh().to_vec()));
        py.detach(|| kcp::save(&path, &tensors)).map_err(error)
    }

    fn __repr__(&self) -> String {
        format!("kcp.Layer({})", self.compiled.spec)
    }
}

/// dy's values, its shape checked to be `[rows, m]`.
fn dy_values<'a>(dy: &'a PyReadonlyArray2<'_, f32>, rows: usize, m: usize) -> PyResult<&'a [f32]> {
    if dy.shape() != [rows, m] {
        return Err(PyValueError::new_err(format!("dy must have shape [{rows}, {m}], found {:?}", dy.shape())));
    }
    contiguous(dy, "dy")
}

/// Gradients as NumPy arrays: dx `[rows, n]` if computed, the cores' in their shapes, the bias'.
fn gradients<'py>(
    py: Python<'py>,
    cores: &[CoreShape],
    grads: Weights,
    dx: Option<Vec<f32>>,
    rows: usize,
    n: usize,
) -> PyResult<Gradients<'py>> {
    let dx = dx.map(|dx| PyArray1::from_vec(py, dx).reshape([rows, n])).transpose()?;
    let dcores = grads
        .cores
        .iter()
        .zip(cores)
        .map(|(g, core)| g.to_pyarray(py).reshape(core.shape.clone()))
        .collect::<PyResult<Vec<_>>>()?;
    let dbias = grads.bias.map(|b| PyArray1::from_vec(py, b));
    Ok((dx, dcores, dbias))
}

/// A layer with its weights bound (`Layer.prepare`): forward passes without checking the
/// weights or computing pre-products again.
#[pyclass(module = "kcp._kcp", frozen)]
pub struct Prepared {
    executor: Arc<Executor>,
    weights_only: Arc<BackwardProgram>,
    with_dx: Arc<BackwardProgram>,
}

impl Prepared {
    /// The rows of x `[B, N]`, checked against the layer's N.
    fn rows(&self, x: &PyReadonlyArray2<'_, f32>) -> PyResult<usize> {
        let n = self.executor.program().input_size();
        if x.shape()[1] != n {
            return Err(PyValueError::new_err(format!(
                "x must have {n} columns (the product of in_shape), found {}",
                x.shape()[1]
            )));
        }
        Ok(x.shape()[0])
    }
}

#[pymethods]
impl Prepared {
    /// As `Layer.forward`, with the bound weights.
    #[pyo3(signature = (x, threads = None))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let threads = threads_of(threads)?;
        let rows = self.rows(&x)?;
        let xs = contiguous(&x, "x")?;
        let m = self.executor.program().output_size();
        let mut y = vec![0.0f32; rows * m];
        let executor = &self.executor;
        py.detach(|| executor.forward_par(xs, &mut y, threads)).map_err(|e| PyValueError::new_err(e.to_string()))?;
        PyArray1::from_vec(py, y).reshape([rows, m])
    }

    /// As `Layer.forward_train`, with the bound weights.
    #[pyo3(signature = (x, dx = false, threads = None))]
    fn forward_train<'py>(
        &self,
        py: Python<'py>,
        x: Bound<'py, PyArray2<f32>>,
        dx: bool,
        threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, ForwardTrace)> {
        let threads = threads_of(threads)?;
        let readonly = x.readonly();
        let rows = self.rows(&readonly)?;
        let backward = Arc::clone(if dx { &self.with_dx } else { &self.weights_only });
        let xs = contiguous(&readonly, "x")?;
        let m = self.executor.program().output_size();
        let mut y = vec![0.0f32; rows * m];
        let keep = rows.saturating_mul(backward.kept_len()).saturating_mul(size_of::<f32>()) <= MAX_KEPT_BYTES;
        let executor = &self.executor;
        let trace = if keep {
            let mut trace = Trace::new();
            py.detach(|| executor.forward_train(&backward, xs, &mut y, &mut trace, threads)).map_err(error)?;
            Some(trace)
        } else {
            py.detach(|| executor.forward_par(xs, &mut y, threads))
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            None
        };
        let y = PyArray1::from_vec(py, y).reshape([rows, m])?;
        drop(readonly);
        Ok((y, ForwardTrace { executor: Arc::clone(&self.executor), backward, trace, x: x.unbind(), dx }))
    }
}

/// What a training forward pass (`Layer.forward_train`) keeps for its backward pass: the
/// executor with its weights, the intermediates the backward plan reads, and x.
#[pyclass(module = "kcp._kcp", name = "Trace")]
pub struct ForwardTrace {
    executor: Arc<Executor>,
    backward: Arc<BackwardProgram>,
    /// The kept intermediates; None where the backward pass runs the forward pass again.
    trace: Option<Trace>,
    x: Py<PyArray2<f32>>,
    dx: bool,
}

#[pymethods]
impl ForwardTrace {
    /// The gradients of `L = sum(dy * y)` for the pass that made this trace: `(dx, dcores,
    /// dbias)` as `Layer.backward` returns them (dx computed if the pass was asked for it). May
    /// be called again (with another dy).
    #[pyo3(signature = (dy, threads = None))]
    fn backward<'py>(
        &mut self,
        py: Python<'py>,
        dy: PyReadonlyArray2<'py, f32>,
        threads: Option<usize>,
    ) -> PyResult<Gradients<'py>> {
        let threads = threads_of(threads)?;
        let x = self.x.bind(py).readonly();
        let program = self.executor.program();
        let (n, m) = (program.input_size(), program.output_size());
        let rows = x.shape()[0];
        let (xs, dys) = (contiguous(&x, "x")?, dy_values(&dy, rows, m)?);
        let cores = program.cores.clone();
        let mut grads = Weights::zeros(&cores, self.executor.weights().bias.as_ref().map(Vec::len));
        let mut dx = vec![0.0f32; if self.dx { rows * n } else { 0 }];
        let (executor, backward, trace, want_dx) = (&self.executor, &self.backward, self.trace.as_mut(), self.dx);
        if let Some(trace) = trace {
            py.detach(|| {
                executor.backward(backward, xs, dys, trace, want_dx.then_some(&mut dx[..]), &mut grads, threads)
            })
            .map_err(error)?;
        } else {
            grads = py
                .detach(|| executor.gradients(backward, xs, dys, want_dx.then_some(&mut dx[..]), threads))
                .map_err(error)?;
        }
        gradients(py, &cores, grads, self.dx.then_some(dx), rows, n)
    }
}
