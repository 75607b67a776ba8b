//! `kcp._kcp.Recurrence`: the Rust crate's recurrence (`Recurrent`: an LSTM's or GRU's
//! hidden-to-hidden half over projected inputs) and its backpropagation through time, on NumPy
//! arrays: what `kcp.torch.LSTM` and `GRU` run on float32 CPU tensors
//! (`kcp-python/benchmarks/recurrence.py` times it beside torch's).

use kcp::{CellGrads, CellKind, Recurrent, State, Tape};
use numpy::{PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3};
use numpy::{PyUntypedArrayMethods, ToPyArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{contiguous, error, threads_of};

/// `(dproj, dweight_hh, dbias_hh, dh0, dc0)`, dc0 None for a GRU.
type CellGradients<'py> = (
    Bound<'py, PyArray3<f32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray2<f32>>,
    Option<Bound<'py, PyArray2<f32>>>,
);

/// The recurrence of an LSTM or GRU cell of `hidden` units (PyTorch's gate order and
/// equations).
#[pyclass(module = "kcp._kcp", frozen)]
pub struct Recurrence {
    kind: CellKind,
    hidden: usize,
}

#[pymethods]
impl Recurrence {
    #[new]
    fn new(cell: &str, hidden: usize) -> PyResult<Recurrence> {
        let kind = crate::layer::cell_kind(cell)?;
        if hidden == 0 {
            return Err(PyValueError::new_err("hidden must be at least 1"));
        }
        Ok(Recurrence { kind, hidden })
    }

    /// The hidden states `[T, B, H]` of projected inputs `proj` `[T, B, G*H]` (x W_ih^T + b_ih)
    /// from the state `h0` (`[B, H]`, and for an LSTM `c0`; None: zeros), the final cell state
    /// `c_n` (an LSTM's; None for a GRU), and the tape of the pass for
    /// `RecurrenceTape.backward`. `threads`: the most threads the pass and its backward pass
    /// use (None: all of kcp's pool).
    #[pyo3(signature = (proj, weight_hh, bias_hh, h0 = None, c0 = None, threads = None))]
    #[allow(clippy::type_complexity, clippy::too_many_arguments)] // Python's signature
    fn forward_train<'py>(
        &self,
        py: Python<'py>,
        proj: PyReadonlyArray3<'py, f32>,
        weight_hh: PyReadonlyArray2<'py, f32>,
        bias_hh: PyReadonlyArray1<'py, f32>,
        h0: Option<PyReadonlyArray2<'py, f32>>,
        c0: Option<PyReadonlyArray2<'py, f32>>,
        threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyArray3<f32>>, Option<Bound<'py, PyArray2<f32>>>, RecurrenceTape)> {
        let threads = threads_of(threads)?;
        let (h, g) = (self.hidden, self.kind.gates() * self.hidden);
        let [steps, batch, width] = [proj.shape()[0], proj.shape()[1], proj.shape()[2]];
        if width != g || batch == 0 {
            return Err(PyValueError::new_err(format!(
                "proj must be [T, B, {g}] with B at least 1, found {:?}",
                proj.shape()
            )));
        }
        let cell = Recurrent::new(
            self.kind,
            h,
            contiguous(&weight_hh, "weight_hh")?.to_vec(),
            contiguous(&bias_hh, "bias_hh")?.to_vec(),
        )
        .map_err(error)?;
        let proj = contiguous(&proj, "proj")?;
        let mut hs = vec![0.0f32; steps * batch * h];
        let mut state = State::zeros(self.kind, batch, h);
        for (given, into, name) in [(&h0, &mut state.h, "h0"), (&c0, &mut state.c, "c0")] {
            if let Some(given) = given {
                if given.shape() != [batch, h] || into.len() != batch * h {
                    return Err(PyValueError::new_err(format!(
                        "{name} must be [{batch}, {h}] (c0 for an LSTM only), found {:?}",
                        given.shape()
                    )));
                }
                into.copy_from_slice(contiguous(given, name)?);
            }
        }
        let tape = py
            .detach(|| cell.run_taped(proj, batch, &mut hs, &mut state, threads))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let out = hs.to_pyarray(py).reshape([steps, batch, h])?;
        let c_n = (self.kind == CellKind::Lstm).then(|| state.c.to_pyarray(py).reshape([batch, h])).transpose()?;
        Ok((out, c_n, RecurrenceTape { cell, tape, hs }))
    }
}

/// What `Recurrence.forward_train` keeps for the backward pass.
#[pyclass(module = "kcp._kcp", frozen)]
pub struct RecurrenceTape {
    cell: Recurrent,
    tape: Tape,
    hs: Vec<f32>,
}

#[pymethods]
impl RecurrenceTape {
    /// Backpropagation through time for dL/dh of every step, `dhs` `[T, B, H]`, and of the
    /// final cell state (`dc_n` `[B, H]`, an LSTM's; None: zero): `(dproj, dweight_hh,
    /// dbias_hh, dh0, dc0)`, dc0 None for a GRU.
    #[pyo3(signature = (dhs, dc_n = None))]
    fn backward<'py>(
        &self,
        py: Python<'py>,
        dhs: PyReadonlyArray3<'py, f32>,
        dc_n: Option<PyReadonlyArray2<'py, f32>>,
    ) -> PyResult<CellGradients<'py>> {
        let (steps, batch, h) = (self.tape.steps(), self.tape.batch(), self.cell.hidden());
        let g = self.cell.kind().gates() * h;
        if dhs.shape() != [steps, batch, h] {
            return Err(PyValueError::new_err(format!(
                "dhs must have shape [{steps}, {batch}, {h}], found {:?}",
                dhs.shape()
            )));
        }
        let dhs = contiguous(&dhs, "dhs")?;
        let dc_n = dc_n.as_ref().map(|dc| contiguous(dc, "dc_n")).transpose()?;
        let mut dproj = vec![0.0f32; steps * batch * g];
        let mut grads = CellGrads::zeros(&self.cell);
        let initial = py
            .detach(|| self.cell.backward_through(&self.tape, &self.hs, dhs, dc_n, &mut dproj, &mut grads))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let lstm = self.cell.kind() == CellKind::Lstm;
        Ok((
            PyArray1::from_vec(py, dproj).reshape([steps, batch, g])?,
            PyArray1::from_vec(py, grads.weight_hh).reshape([g, h])?,
            PyArray1::from_vec(py, grads.bias_hh),
            PyArray1::from_vec(py, initial.h).reshape([batch, h])?,
            lstm.then(|| PyArray1::from_vec(py, initial.c).reshape([batch, h])).transpose()?,
        ))
    }
}
