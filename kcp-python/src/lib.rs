//! `kcp._kcp`, the extension module of the Python package `kcp`: a layer of any format planned
//! by kcp's compiler for shapes known at run time and run by its executor, forward and
//! backward, on NumPy arrays (`layer.rs`), and the synthetic UCF11-shaped clips (`data.rs`). The
//! Python half (`python/kcp/`) wraps it: `kcp.Layer`, `kcp.plan`, `kcp.data` and the PyTorch
//! modules of `kcp.torch`.
//!
//! Every argument is checked before any kernel runs, and every failure is a `ValueError`, a
//! `TypeError` or (a file that cannot be read or written) an `OSError`; never a Rust panic,
//! which Python would see as a `BaseException`. The GIL is released while kernels run.

mod data;
mod layer;
mod recurrence;

use std::num::NonZeroUsize;

use kcp::ir::network::{Format, KeyMismatch, RankArgs};
use kcp::ir::{compile, Compiled, Options, Spec};
use kcp::Threads;
use pyo3::exceptions::{PyOSError, PyValueError};
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

/// A kcp error as Python's: `OSError` where a file cannot be read or written, `ValueError`
/// otherwise (a file that does not hold the layer, shapes, values).
fn error(error: kcp::Error) -> PyErr {
    match error {
        kcp::Error::Io { .. } => PyOSError::new_err(error.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// A C-contiguous array's values, or a `ValueError` naming it.
fn contiguous<'a, T: numpy::Element, D: numpy::ndarray::Dimension>(
    array: &'a numpy::PyReadonlyArray<'_, T, D>,
    name: &str,
) -> PyResult<&'a [T]> {
    array.as_slice().map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
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
    module.add_class::<layer::Layer>()?;
    module.add_class::<layer::ForwardTrace>()?;
    module.add_class::<layer::Prepared>()?;
    module.add_class::<recurrence::Recurrence>()?;
    module.add_class::<recurrence::RecurrenceTape>()?;
    module.add_function(wrap_pyfunction!(plan_json, module)?)?;
    module.add_function(wrap_pyfunction!(formats, module)?)?;
    data::register(module)
}
