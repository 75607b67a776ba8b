//! The loop-nest program of a layer's backward pass: what `kcp_ir::lower_backward` makes of a
//! backward plan, run one batch row at a time on the same kernels as the forward pass.
//!
//! Per row it reads x, dy, the factors and the forward intermediates the training forward pass
//! kept ([`Program::run_row_keeping`](crate::Program::run_row_keeping)), writes its temporaries
//! and dx, and accumulates every dA_d over the rows.

use std::fmt;

use crate::kernels::Real;
use crate::program::{Buffer, CoreShape, Kernel};

/// One step of a backward program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackwardKernel {
    /// The step as a loop nest.
    pub kernel: Kernel,
    /// With one mode no operand of a dA step has the rank, and every rank term of dA_1 gets
    /// the same gradient: the step writes its temporary, then adds it to each term of dA_d.
    pub broadcast: Option<usize>,
}

/// A forward intermediate a backward program reads, which the training forward pass keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kept {
    /// Which intermediate: f_k, read as [`Buffer::Kept`]`(k)`.
    pub k: usize,
    /// Its elements per row.
    pub len: usize,
    /// The forward program's call kernel that writes it.
    pub from: usize,
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
    /// The cores, as the forward program lists them: the gradients' shapes.
    pub cores: Vec<CoreShape>,
    /// The steps, in order.
    pub steps: Vec<BackwardKernel>,
    /// The length of each step's temporary (0 for a step that writes dx or a dA).
    pub temp_lens: Vec<usize>,
    /// The forward intermediates read, in the order a row's kept buffer holds them.
    pub kept: Vec<Kept>,
    /// Whether dx is written.
    pub dx: bool,
    /// MACs per row.
    pub macs_per_row: u64,
}

impl BackwardProgram {
    /// The elements of one row's kept forward intermediates, stored one after another in the
    /// order of [`BackwardProgram::kept`].
    pub fn kept_len(&self) -> usize {
        self.kept.iter().map(|kept| kept.len).sum()
    }

    /// The elements of one row's temporaries, stored one after another.
    pub fn temps_len(&self) -> usize {
        self.temp_lens.iter().sum()
    }

    /// Where kept intermediate f_k starts in a row's kept buffer, and its length.
    pub fn kept_at(&self, k: usize) -> (usize, usize) {
        let mut start = 0;
        for &Kept { k: j, len, .. } in &self.kept {
            if j == k {
                return (start, len);
            }
            start += len;
        }
        (start, 0)
    }

    /// For a training forward pass ([`Program::run_row_keeping`](crate::Program::run_row_keeping)):
    /// copy the output `out` of the forward program's call kernel `number` into the row's kept
    /// buffer `kept` ([`BackwardProgram::kept_len`] elements) if the backward program reads it.
    pub fn keep<T: Real>(&self, number: usize, out: &[T], kept: &mut [T]) {
        let mut start = 0;
        for &Kept { len, from, .. } in &self.kept {
            if from == number {
                kept[start..start + len].copy_from_slice(&out[..len]);
            }
            start += len;
        }
    }

    /// One row: x `[N]`, dy `[M]`, the row's kept intermediates (filled by
    /// [`BackwardProgram::keep`]), the temporaries ([`BackwardProgram::temps_len`] elements);
    /// dA_d accumulates into `grads[d]`; dx (`[N]`, if the program writes it) is overwritten.
    ///
    /// # Panics
    /// On a program that fails [`BackwardProgram::check`] (the compiler's never do), or
    /// buffers shorter than the program's.
    #[allow(clippy::too_many_arguments)]
    pub fn run_row<T: Real>(
        &self,
        x: &[T],
        dy: &[T],
        kept: &[T],
        factors: &[Vec<T>],
        temps: &mut [T],
        grads: &mut [Vec<T>],
        dx: &mut [T],
    ) {
        let start = |k: usize| self.temp_lens[..k].iter().sum::<usize>();
        for step in &self.steps {
            let kernel = &step.kernel;
            // The step's own temporary out of the buffer, the others readable around it.
            let (own, len) = match kernel.out {
                Buffer::Temp(k) => (start(k), self.temp_lens[k]),
                _ => (temps.len(), 0),
            };
            let (before, rest) = temps.split_at_mut(own);
            let (out, after) = rest.split_at_mut(len);
            let read = |b: Buffer| -> &[T] {
                match b {
                    Buffer::X => x,
                    Buffer::Dy => dy,
                    Buffer::Factor(d) => &factors[d],
                    Buffer::Kept(k) => {
                        let (start, len) = self.kept_at(k);
                        &kept[start..start + len]
                    }
                    Buffer::Temp(k) if start(k) < own => &before[start(k)..][..self.temp_lens[k]],
                    Buffer::Temp(k) if start(k) > own => &after[start(k) - own - len..][..self.temp_lens[k]],
                    // A temporary of no elements where the step's own starts.
                    Buffer::Temp(_) => &[],
                    other => unreachable!("a backward step reads {other} (BackwardProgram::check)"),
                }
            };
            let (a, w) = (read(kernel.a), read(kernel.w));
            match kernel.out {
                Buffer::Temp(_) => kernel.run(out, a, w),
                Buffer::Dx => kernel.run(dx, a, w),
                Buffer::Grad(d) => kernel.run(&mut grads[d], a, w),
                other => unreachable!("a backward step writes {other} (BackwardProgram::check)"),
            }
            if let (Some(d), Buffer::Temp(_)) = (step.broadcast, kernel.out) {
                for term in grads[d].chunks_exact_mut(out.len().max(1)) {
                    term.iter_mut().zip(&*out).for_each(|(g, &v)| *g += v);
                }
            }
        }
    }
}

impl fmt::Display for BackwardProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept: Vec<String> = self.kept.iter().map(|kept| format!("f{}[{}]", kept.k, kept.len)).collect();
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
