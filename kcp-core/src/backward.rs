//! The loop-nest program of a layer's backward pass: what `kcp_ir::lower_backward` makes of a
//! backward plan, run one batch row at a time on the same kernels as the forward pass.
//!
//! Per row it reads x, dy, the factors and the forward intermediates the training forward pass
//! kept ([`Program::run_row_keeping`](crate::Program::run_row_keeping)), writes its temporaries
//! and dx, and accumulates every dA_d over the rows.

use std::fmt;

use crate::kernels::Real;
use crate::program::{Buffer, Kernel};

/// One step of a backward program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackwardKernel {
    /// The step as a loop nest.
    pub kernel: Kernel,
    /// With one mode no operand of a dA step has the rank, and every rank term of dA_1 gets
    /// the same gradient: the step writes its temporary, then adds it to each term of dA_d.
    pub broadcast: Option<usize>,
}

/// A layer's backward pass as loop nests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackwardProgram {
    /// n_1 .. n_D.
    pub in_shape: Vec<usize>,
    /// m_1 .. m_D.
    pub out_shape: Vec<usize>,
    /// R.
    pub rank: usize,
    /// The steps, in order.
    pub steps: Vec<BackwardKernel>,
    /// The length of each step's temporary (0 for a step that writes dx or a dA).
    pub temp_lens: Vec<usize>,
    /// The forward intermediates read: f_k, its length, and the forward program's call kernel
    /// that writes it.
    pub kept: Vec<(usize, usize, usize)>,
    /// Whether dx is written.
    pub dx: bool,
    /// MACs per row.
    pub macs_per_row: u64,
}

impl BackwardProgram {
    /// Fresh temporaries for [`BackwardProgram::run_row`].
    pub fn temps<T: Real>(&self) -> Vec<Vec<T>> {
        self.temp_lens.iter().map(|&len| vec![T::ZERO; len]).collect()
    }

    /// One row: x `[N]`, dy `[M]`, the kept intermediates in the order of
    /// [`BackwardProgram::kept`]; dA_d accumulates into `grads[d]`; dx (`[N]`, if the program
    /// writes it) is overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn run_row<T: Real>(
        &self,
        x: &[T],
        dy: &[T],
        kept: &[&[T]],
        factors: &[Vec<T>],
        temps: &mut [Vec<T>],
        grads: &mut [Vec<T>],
        dx: &mut [T],
    ) {
        for step in &self.steps {
            let kernel = &step.kernel;
            let mut out = match kernel.out {
                Buffer::Temp(k) => std::mem::take(&mut temps[k]),
                _ => Vec::new(),
            };
            {
                let read = |b: Buffer| -> &[T] {
                    match b {
                        Buffer::X => x,
                        Buffer::Dy => dy,
                        Buffer::Factor(d) => &factors[d],
                        Buffer::Kept(k) => self.kept.iter().position(|&(j, _, _)| j == k).map_or(&[][..], |p| kept[p]),
                        Buffer::Temp(k) => &temps[k],
                        _ => &[],
                    }
                };
                let (a, w) = (read(kernel.a), read(kernel.w));
                match kernel.out {
                    Buffer::Temp(_) => kernel.run(&mut out, a, w),
                    Buffer::Dx => kernel.run(dx, a, w),
                    Buffer::Grad(d) => kernel.run(&mut grads[d], a, w),
                    _ => {}
                }
            }
            if let (Some(d), Buffer::Temp(_)) = (step.broadcast, kernel.out) {
                for term in grads[d].chunks_exact_mut(out.len().max(1)) {
                    term.iter_mut().zip(&out).for_each(|(g, &v)| *g += v);
                }
            }
            if let Buffer::Temp(k) = kernel.out {
                temps[k] = out;
            }
        }
    }
}

impl fmt::Display for BackwardProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept: Vec<String> = self.kept.iter().map(|(k, len, _)| format!("f{k}[{len}]")).collect();
        writeln!(
            f,
            "backward, per row: {} MACs, reading {}",
            self.macs_per_row,
            if kept.is_empty() { "no kept intermediate".to_string() } else { kept.join(", ") }
        )?;
        for step in &self.steps {
            writeln!(f, "{}", step.kernel)?;
            if let Some(d) = step.broadcast {
                writeln!(f, "  added to every rank term of dA{}", d + 1)?;
            }
        }
        Ok(())
    }
}
