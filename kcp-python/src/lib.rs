//! `kcp._kcp`, the extension module of the Python package `kcp`: a layer of any format planned
//! by kcp's compiler for shapes known at run time and run by its executor, forward and
//! backward, on NumPy arrays. The Python half (`python/kcp/`) wraps it: `kcp.Layer`,
//! `kcp.plan`, and the PyTorch modules of `kcp.torch`.
//!
//! Every argument is checked before any kernel runs, and every failure is a `ValueError` or a
//! `TypeError` (never a Rust panic, which Python would see as a `BaseException`). The GIL is
//! released while kernels run; x, dy and the arrays returned are not copied (x and dy must be
//! C-contiguous float32, which the Python half arranges), the cores are copied once per call
//! into the executor's weights (they are small: the point of the format).

use std::num::NonZeroUsize;

use kcp::ir::network::{Format, KeyMismatch, RankArgs};
use kcp::ir::{compile, lower_backward, Compiled, Options, Spec};
use kcp::{BackwardProgram, CoreShape, Executor, Threads, Weights};
use numpy::{PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn};
use numpy::{PyUntypedArrayMethods, ToPyArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The format of a name and rank keys, as `kcp_layer!` takes them.
fn format_of(name: &str, rank: Option<usize>, ranks: Option<Vec<usize>>, blocks: Option<usize>) -> PyResult<Format> {
    let entry = Format::entry(name).ok_or_else(|| {
        PyValueError::new_err(format!("unknown format {name:?}: expected one of {}", Format::names()))
    })?;
    entry.checked(RankArgs { rank, ranks, blocks }).map_err(|mismatch| {
        PyValueError::new_err(match mismatch {
            KeyMismatch::Unexpected(key) => format!("format {:?} takes no {}=", entry.name, key.name()),
            KeyMismatch::Missing(key) => format!("format {:?} needs {}=", entry.name, key.name()),
        })
    })
}

/// The compiled layer of these arguments (`batch` rows for the costs; a layer runs any batch).
#[allow(clippy::too_many_arguments)]
fn compiled(
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    format: &str,
    rank: Option<usize>,
    ranks: Option<Vec<usize>>,
    blocks: Option<usize>,
    bias: bool,
    batch: usize,
) -> PyResult<Compiled> {
    let format = format_of(format, rank, ranks, blocks)?;
    let spec = Spec::new(&in_shape, &out_shape, format).with_batch(batch).with_bias(bias);
    compile(&spec, &Options::default()).map_err(|errors| PyValueError::new_err(errors.to_string()))
}

/// A weight file's error: `OSError` where the file cannot be read or written, `ValueError`
/// where it does not hold the layer.
fn file_error(error: kcp::Error) -> PyErr {
    match error {
        kcp::Error::Io { .. } => pyo3::exceptions::PyOSError::new_err(error.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// The threads of a `threads=` argument: `None` for all of the pool.
fn threads_of(threads: Option<usize>) -> PyResult<Threads> {
    match threads {
        None => Ok(Threads::All),
        Some(n) => NonZeroUsize::new(n)
            .map(Threads::AtMost)
            .ok_or_else(|| PyValueError::new_err("threads must be at least 1 (None: all of them)")),
    }
}

/// A contiguous array's values, or a `ValueError` naming it.
fn values<'a>(array: &'a PyReadonlyArrayDyn<'_, f32>, name: &str) -> PyResult<&'a [f32]> {
    array.as_slice().map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// A layer of any format, planned for its shapes: forward and backward passes on NumPy arrays
/// whose weights (cores, in `core_names` order, and the bias) come with each call.
#[pyclass(module = "kcp._kcp", frozen)]
struct Layer {
    compiled: Compiled,
    /// The backward programs: the cores' and bias' gradients, and those with dx.
    weights_only: BackwardProgram,
    with_dx: BackwardProgram,
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
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(executor.interleaved(self.compiled.lanes.clone()))
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
            values_of.push(values(array, &core.name)?.to_vec());
        }
        let bias = match (bias, self.compiled.spec.bias()) {
            (Some(b), true) => {
                Some(b.as_slice().map_err(|_| PyValueError::new_err("bias must be C-contiguous"))?.to_vec())
            }
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
        let weights_only = lower_backward(&compiled.backward(false), &compiled.graph);
        let with_dx = lower_backward(&compiled.backward(true), &compiled.graph);
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
        let threads = threads_of(threads)?;
        let rows = self.rows(&x, "x")?;
        let executor = self.executor(&cores, bias.as_ref())?;
        let xs = x.as_slice().map_err(|_| PyValueError::new_err("x must be C-contiguous"))?;
        let mut y = vec![0.0f32; rows * self.compiled.nest.output_size()];
        py.detach(|| executor.forward_par(xs, &mut y, threads)).map_err(|e| PyValueError::new_err(e.to_string()))?;
        PyArray1::from_vec(py, y).reshape([rows, self.compiled.nest.output_size()])
    }

    /// The gradients of `L = sum(dy * y)`: `(dx, dcores, dbias)`, dx `None` unless asked for,
    /// dbias `None` for a layer without bias. dy `[B, M]` float32 C-contiguous.
    #[pyo3(signature = (x, dy, cores, bias = None, dx = false, threads = None))]
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn backward<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        dy: PyReadonlyArray2<'py, f32>,
        cores: Vec<PyReadonlyArrayDyn<'py, f32>>,
        bias: Option<PyReadonlyArray1<'py, f32>>,
        dx: bool,
        threads: Option<usize>,
    ) -> PyResult<(
        Option<Bound<'py, PyArray2<f32>>>,
        Vec<Bound<'py, PyArrayDyn<f32>>>,
        Option<Bound<'py, PyArray1<f32>>>,
    )> {
        let threads = threads_of(threads)?;
        let rows = self.rows(&x, "x")?;
        let (m, n) = (self.compiled.nest.output_size(), self.compiled.nest.input_size());
        if dy.shape() != [rows, m] {
            return Err(PyValueError::new_err(format!("dy must have shape [{rows}, {m}], found {:?}", dy.shape())));
        }
        let executor = self.executor(&cores, bias.as_ref())?;
        let xs = x.as_slice().map_err(|_| PyValueError::new_err("x must be C-contiguous"))?;
        let dys = dy.as_slice().map_err(|_| PyValueError::new_err("dy must be C-contiguous"))?;
        let program = if dx { &self.with_dx } else { &self.weights_only };
        let mut dx_values = vec![0.0f32; if dx { rows * n } else { 0 }];
        let grads = py
            .detach(|| executor.gradients(program, xs, dys, dx.then_some(&mut dx_values[..]), threads))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let dx = if dx { Some(PyArray1::from_vec(py, dx_values).reshape([rows, n])?) } else { None };
        let dcores = grads
            .cores
            .iter()
            .zip(self.cores())
            .map(|(g, core)| g.to_pyarray(py).reshape(core.shape.clone()))
            .collect::<PyResult<Vec<_>>>()?;
        let dbias = grads.bias.map(|b| PyArray1::from_vec(py, b));
        Ok((dx, dcores, dbias))
    }

    /// The cores and bias of a weight file (safetensors: the cores under `core_names`, `bias`),
    /// checked against the layer: `(cores, bias)`, bias None for a layer without one.
    #[allow(clippy::type_complexity)]
    fn load<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
    ) -> PyResult<(Vec<Bound<'py, PyArrayDyn<f32>>>, Option<Bound<'py, PyArray1<f32>>>)> {
        let bias_len = self.compiled.spec.bias().then(|| self.compiled.nest.output_size());
        let weights = py.detach(|| Weights::load(&path, "", self.cores(), bias_len)).map_err(file_error)?;
        let cores = weights
            .cores
            .iter()
            .zip(self.cores())
            .map(|(values, core)| values.to_pyarray(py).reshape(core.shape.clone()))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((cores, weights.bias.map(|b| PyArray1::from_vec(py, b))))
    }

    /// Write the cores and bias to a weight file that `load`, the Rust layers and the `kcp`
    /// command line read: complete, or not at all.
    #[pyo3(signature = (path, cores, bias = None))]
    fn save(
        &self,
        py: Python<'_>,
        path: std::path::PathBuf,
        cores: Vec<PyReadonlyArrayDyn<'_, f32>>,
        bias: Option<PyReadonlyArray1<'_, f32>>,
    ) -> PyResult<()> {
        let tensors = self.weights(&cores, bias.as_ref())?.tensors("", self.cores());
        py.detach(|| kcp::save(&path, &tensors)).map_err(file_error)
    }

    fn __repr__(&self) -> String {
        format!("kcp.Layer({})", self.compiled.spec)
    }
}

/// The JSON of `kcp plan --json` for a layer of these arguments, `batch` rows.
#[pyfunction]
#[pyo3(signature = (in_shape, out_shape, format = "kcp", rank = None, ranks = None, blocks = None, bias = false, batch = 1, backward = false))]
#[allow(clippy::too_many_arguments)]
fn plan_json(
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    format: &str,
    rank: Option<usize>,
    ranks: Option<Vec<usize>>,
    blocks: Option<usize>,
    bias: bool,
    batch: usize,
    backward: bool,
) -> PyResult<String> {
    if batch == 0 {
        return Err(PyValueError::new_err("batch must be at least 1"));
    }
    let compiled = compiled(in_shape, out_shape, format, rank, ranks, blocks, bias, batch)?;
    Ok(kcp::report::plan_json(&compiled, batch, backward).to_string())
}

/// The names of the formats, as `format=` takes them.
#[pyfunction]
fn formats() -> Vec<&'static str> {
    kcp::ir::network::FORMATS.iter().map(|entry| entry.name).collect()
}

#[pymodule]
fn _kcp(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Layer>()?;
    module.add_function(wrap_pyfunction!(plan_json, module)?)?;
    module.add_function(wrap_pyfunction!(formats, module)?)?;
    Ok(())
}
