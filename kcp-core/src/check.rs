//! Validation of programs built outside the compiler: every kernel's buffers are of its
//! program's kind and hold every element its loops and inner operation reach, so that the
//! interpreters ([`Program::run_row`], [`BackwardProgram::run_row`]) neither index out of
//! bounds nor meet a buffer they have no arm for. The runtime's executor checks once, when a
//! program is handed to it.

use std::fmt;

use crate::backward::BackwardProgram;
use crate::program::{Buffer, Inner, Kernel, Program};

/// What is wrong with a program: the kernel (as the plan prints its step) and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramError {
    /// The kernel's step, as the plan prints it (empty for the program as a whole).
    pub kernel: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kernel.is_empty() {
            write!(f, "invalid program: {}", self.problem)
        } else {
            write!(f, "invalid program: kernel `{}`: {}", self.kernel, self.problem)
        }
    }
}

impl std::error::Error for ProgramError {}

impl Kernel {
    /// The lengths `out`, `a` and `w` must at least have for [`Kernel::run`]: the largest
    /// offset its loops reach plus what the inner operation reads from there; `None` if one
    /// overflows `usize`.
    pub fn reach(&self) -> Option<[usize; 3]> {
        if self.loops.iter().any(|l| l.extent == 0) {
            return Some([0; 3]);
        }
        let mut at = [0usize; 3];
        for l in &self.loops {
            for (at, stride) in at.iter_mut().zip(l.strides) {
                *at = at.checked_add(stride.checked_mul(l.extent - 1)?)?;
            }
        }
        let inner = match self.inner {
            Inner::Axpy { len } => [len, len, 1],
            Inner::Mul { len } => [len, len, len],
            Inner::Dot { len } => [1, len, len],
            Inner::Gemm { shape, .. } => shape.extents()?,
            // The micro-kernel reads this product's `w` as its `a` and its `a` as its `w`.
            Inner::GemmRowsFromA { shape, .. } => {
                let [out, w, a] = shape.gemm().extents()?;
                [out, a, w]
            }
        };
        Some([at[0].checked_add(inner[0])?, at[1].checked_add(inner[1])?, at[2].checked_add(inner[2])?])
    }

    /// Whether the kernel covers `out_len` elements of an `out` of `out` elements and reaches
    /// no further in `out`, `a` and `w` than their lengths.
    fn fits(&self, [out, a, w]: [usize; 3]) -> Result<(), ProgramError> {
        let error = |problem: String| ProgramError { kernel: self.comment.clone(), problem };
        if self.out_len > out {
            return Err(error(format!("writes {} elements of {} ({out} long)", self.out_len, self.out)));
        }
        let Some(reach) = self.reach() else {
            return Err(error("its loops reach past usize".into()));
        };
        for ((reach, len), (buffer, what)) in reach.into_iter().zip([self.out_len, a, w]).zip([
            (self.out, "writes"),
            (self.a, "reads"),
            (self.w, "reads"),
        ]) {
            if reach > len {
                return Err(error(format!("{what} {reach} elements of {buffer}, which has {len}")));
            }
        }
        Ok(())
    }
}

/// A kernel's error about one of its buffers.
fn buffer_error(kernel: &Kernel, buffer: Buffer, why: &str) -> ProgramError {
    ProgramError { kernel: kernel.comment.clone(), problem: format!("{buffer}: {why}") }
}

impl Program {
    /// Check the program: every load-time kernel writes a pre-product from the cores, ones and
    /// other pre-products, every per-row kernel writes y or a scratch buffer from x, the cores,
    /// the pre-products and the other scratch buffer, each within its buffers' lengths.
    pub fn check(&self) -> Result<(), ProgramError> {
        let whole = |problem: &str| ProgramError { kernel: String::new(), problem: problem.into() };
        if self.lanes == 0 {
            return Err(whole("0 lanes"));
        }
        let (n, m) = (self.input_size().checked_mul(self.lanes), self.output_size().checked_mul(self.lanes));
        let (Some(n), Some(m)) = (n, m) else {
            return Err(whole("its rows overflow usize"));
        };
        let weight = |kernel: &Kernel, buffer: Buffer, own: Option<usize>| -> Result<usize, ProgramError> {
            match buffer {
                Buffer::Factor(d) => self.cores.get(d).map(|c| c.len()).ok_or("no such core"),
                Buffer::Prep(k) if Some(k) != own => self.prep_lens.get(k).copied().ok_or("no such pre-product"),
                Buffer::Prep(_) => Err("the pre-product the kernel writes"),
                Buffer::Ones => Ok(self.ones),
                _ => Err("not a weight"),
            }
            .map_err(|why| buffer_error(kernel, buffer, why))
        };
        for kernel in &self.prep {
            let Buffer::Prep(k) = kernel.out else {
                return Err(buffer_error(kernel, kernel.out, "a load-time kernel writes a pre-product"));
            };
            let out = weight(kernel, kernel.out, None)?;
            kernel.fits([out, weight(kernel, kernel.a, Some(k))?, weight(kernel, kernel.w, Some(k))?])?;
        }
        for kernel in &self.call {
            let (out, written) = match kernel.out {
                Buffer::Y => (m, None),
                Buffer::Scratch(o @ (0 | 1)) => (self.scratch_len, Some(o)),
                other => return Err(buffer_error(kernel, other, "a per-row kernel writes y or scratch")),
            };
            let scratch: Vec<usize> = [kernel.a, kernel.w]
                .iter()
                .filter_map(|b| if let Buffer::Scratch(i) = b { Some(*i) } else { None })
                .collect();
            if scratch.len() > 1 {
                return Err(buffer_error(kernel, kernel.a, "both operands are scratch"));
            }
            let read = |buffer: Buffer| match buffer {
                Buffer::X => Ok(n),
                Buffer::Scratch(i) if i < 2 && Some(i) != written => Ok(self.scratch_len),
                Buffer::Scratch(_) => Err(buffer_error(kernel, buffer, "not the other scratch buffer")),
                _ => weight(kernel, buffer, None),
            };
            kernel.fits([out, read(kernel.a)?, read(kernel.w)?])?;
        }
        Ok(())
    }
}

impl BackwardProgram {
    /// Check the program against the forward program whose training pass keeps what it reads:
    /// the same shapes and cores, every kept intermediate the output of one of its per-row
    /// kernels, every step writing its temporary, dx (if the program writes dx) or a core's
    /// gradient from x, dy, the cores, the kept intermediates and the other temporaries, each
    /// within its buffers' lengths.
    pub fn check(&self, forward: &Program) -> Result<(), ProgramError> {
        let whole = |problem: String| ProgramError { kernel: String::new(), problem };
        if self.in_shape != forward.in_shape || self.out_shape != forward.out_shape || self.cores != forward.cores {
            return Err(whole("the backward program of another layer".into()));
        }
        for &crate::backward::Kept { k, len, from } in &self.kept {
            let fits = forward.call.get(from).is_some_and(|c| matches!(c.out, Buffer::Scratch(_)) && c.out_len >= len);
            if !fits {
                return Err(whole(format!("f{k} ({len} elements) is not the output of the forward kernel {from}")));
            }
        }
        let starts: Vec<usize> = self
            .temp_lens
            .iter()
            .scan(0usize, |at, &len| {
                let start = *at;
                *at = at.saturating_add(len);
                Some(start)
            })
            .collect();
        let (n, m) = (forward.input_size(), forward.output_size());
        for step in &self.steps {
            let kernel = &step.kernel;
            let (out, own) = match kernel.out {
                Buffer::Temp(k) if k < self.temp_lens.len() => (self.temp_lens[k], Some(k)),
                Buffer::Dx if self.dx => (n, None),
                Buffer::Grad(d) if d < self.cores.len() => (self.cores[d].len(), None),
                other => return Err(buffer_error(kernel, other, "not a temporary, dx or a core's gradient")),
            };
            let read = |buffer: Buffer| -> Result<usize, ProgramError> {
                let len = match buffer {
                    Buffer::X => Ok(n),
                    Buffer::Dy => Ok(m),
                    Buffer::Factor(d) => self.cores.get(d).map(|c| c.len()).ok_or("no such core"),
                    Buffer::Kept(k) => self.kept.iter().find(|kept| kept.k == k).map(|kept| kept.len).ok_or("not kept"),
                    Buffer::Temp(k) if Some(k) == own => Err("the temporary the step writes"),
                    // Readable only clear of the temporary the step writes (run_row splits there).
                    Buffer::Temp(k) => match (starts.get(k).copied(), self.temp_lens.get(k).copied()) {
                        (Some(start), Some(len)) => {
                            let (own_start, own_len) = own.map_or((usize::MAX, 0), |o| (starts[o], self.temp_lens[o]));
                            let clear =
                                start.saturating_add(len) <= own_start || start >= own_start.saturating_add(own_len);
                            if clear && (start != own_start || len == 0) {
                                Ok(len)
                            } else {
                                Err("overlaps the temporary the step writes")
                            }
                        }
                        _ => Err("no such temporary"),
                    },
                    _ => Err("not a buffer of a backward program"),
                };
                len.map_err(|why| buffer_error(kernel, buffer, why))
            };
            kernel.fits([out, read(kernel.a)?, read(kernel.w)?])?;
            if let Some(d) = step.broadcast {
                if d >= self.cores.len() || own.is_none() {
                    return Err(buffer_error(kernel, Buffer::Grad(d), "a broadcast needs a temporary and a core"));
                }
            }
        }
        Ok(())
    }
}
