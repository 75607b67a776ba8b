//! The loop-nest program of a layer: the format the compiler lowers a plan to, and its generic
//! executor. Generated kernels are the specialised twins of [`Program::run_row`].
//!
//! A program runs one batch row at a time, or [`Program::lanes`] rows interleaved. `prep` kernels
//! run once, when weights are loaded, and fill the `Prep` buffers; `call` kernels run per row,
//! from `X` (one row of x) through two ping-pong `Scratch` buffers to `Y` (one row of y, which
//! the driver first fills with the bias or zeros). Every kernel is a loop nest `out[o] += a[ia] * w[iw]` whose innermost run is an
//! [`Inner`] operation over contiguous memory.

use std::fmt;

use crate::kernels::{axpy, dot, gemm, mul_add, Gemm, Isa, Real, Repeat};

/// A buffer a kernel reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buffer {
    /// One row of x, `[N]` (`[N, lanes]` interleaved); the slice may go on with the rest of the
    /// batch, which kernels only prefetch.
    X,
    /// One row of y, `[M]` (`[M, lanes]` interleaved).
    Y,
    /// The factor stack A_d, `[R, m_d, n_d]` (zero-based d).
    Factor(usize),
    /// A weight-only pre-product, computed at load time.
    Prep(usize),
    /// Per-row scratch, 0 or 1.
    Scratch(usize),
    /// Ones ([`Program::ones`] of them): a load-time kernel that multiplies a factor by them sums
    /// it over the indices only it has (a KCP layer's rank, with one mode).
    Ones,
    /// One row of dy = dL/dy, `[M]` (backward programs).
    Dy,
    /// One row of dx = dL/dx, `[N]` (backward programs).
    Dx,
    /// The gradient of A_d, `[R, m_d, n_d]`, accumulated over the rows (backward programs).
    Grad(usize),
    /// The forward intermediate f_k of one row, kept by the training forward pass (backward
    /// programs).
    Kept(usize),
    /// The result of step k of a backward program, for one row.
    Temp(usize),
}

impl fmt::Display for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buffer::X => f.write_str("x"),
            Buffer::Y => f.write_str("y"),
            Buffer::Factor(d) => write!(f, "A{}", d + 1),
            Buffer::Prep(k) => write!(f, "p{k}"),
            Buffer::Scratch(k) => write!(f, "s{k}"),
            Buffer::Ones => f.write_str("1"),
            Buffer::Dy => f.write_str("dy"),
            Buffer::Dx => f.write_str("dx"),
            Buffer::Grad(d) => write!(f, "dA{}", d + 1),
            Buffer::Kept(k) => write!(f, "f{k}"),
            Buffer::Temp(k) => write!(f, "t{k}"),
        }
    }
}

/// One loop of a nest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Loop {
    /// The index it runs over, for printing (`r`, `i2`, `j3`).
    pub index: String,
    /// The trip count.
    pub extent: usize,
    /// The step of the offsets into out, a and w per iteration.
    pub strides: [usize; 3],
    /// Whether emission unrolls it.
    pub unroll: bool,
}

/// The innermost operation of a nest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Inner {
    /// `out[o + k] += w[iw] * a[ia + k]` for k < len.
    Axpy {
        /// The run's length.
        len: usize,
    },
    /// `out[o + k] += a[ia + k] * w[iw + k]` for k < len: a run that all three share (an
    /// index of both operands that the product keeps, such as the rank of a CP layer's step
    /// that pairs two rank-indexed tensors).
    Mul {
        /// The run's length.
        len: usize,
    },
    /// `out[o] += sum_k a[ia + k] * w[iw + k]` for k < len.
    Dot {
        /// The run's length.
        len: usize,
    },
    /// The small matrix product `shape` at `out[o..]`, `a[ia..]`, `w[iw..]` (see [`Gemm`]): `a`
    /// supplies the columns, `w` the rows.
    Gemm {
        /// The product.
        shape: Gemm,
        /// Whether generated code writes it out as its axpys (a few dozen vector FMAs, cheaper
        /// than a call) instead of calling the micro-kernel. The executor always calls.
        written_out: bool,
    },
    /// A small matrix product whose rows come from `a` and whose columns from `w` (see
    /// [`RowsFromA`]).
    GemmRowsFromA {
        /// The product.
        shape: RowsFromA,
        /// Whether generated code writes it out as its dots instead of calling the micro-kernel.
        written_out: bool,
    },
}

/// The shape of a small matrix product whose rows come from `a` and whose columns from `w`,
/// both contiguous over the sum: `out[m * out_row + q] (+)= sum_k a[m * a_row + k] *
/// w[q * w_col + k]` for `m < rows`, `q < len`, `k < depth` (the last step of a plan whose
/// output's last mode is a mode of the weight only). The micro-kernel runs it as [`Gemm`] with
/// the operands exchanged ([`RowsFromA::gemm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowsFromA {
    /// Rows of `out`, from `a`.
    pub rows: usize,
    /// The summed index, contiguous in `a` and `w`.
    pub depth: usize,
    /// Columns of `out` (contiguous there), from `w`.
    pub len: usize,
    /// Stride of `out` per row.
    pub out_row: usize,
    /// Stride of `a` per row.
    pub a_row: usize,
    /// Stride of `w` per column.
    pub w_col: usize,
    /// Whether the product overwrites `out` instead of adding to it.
    pub overwrite: bool,
    /// Where `a` is a row of x with the batch going on after it, the distance to the same
    /// product in the next row (as [`Gemm::stream`]): its rows of the next row are swept into
    /// L2 block by block; 0 for none.
    pub stream: usize,
    /// How often the product is done (see [`Repeat`]; its `a` and `w` strides are this
    /// product's).
    pub repeat: Repeat,
}

impl RowsFromA {
    /// The product as the micro-kernel's [`Gemm`], whose `a` (the columns) is this product's
    /// `w`, read transposed, and whose `w` (the rows) is this product's `a`.
    pub fn gemm(&self) -> Gemm {
        Gemm {
            out_row: self.out_row,
            a_row: 1,
            a_col: self.w_col,
            w_row: self.a_row,
            overwrite: self.overwrite,
            stream: self.stream,
            repeat: Repeat { a: self.repeat.w, w: self.repeat.a, ..self.repeat },
            ..Gemm::row_major(self.rows, self.depth, self.len)
        }
    }
}

/// One pairwise contraction as a loop nest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// What it writes, and how many elements.
    pub out: Buffer,
    /// The length of `out` that the kernel covers.
    pub out_len: usize,
    /// Whether `out` is zeroed first (scratch and pre-products); y is filled by the driver.
    pub zero: bool,
    /// The operand that carries x (or the first of two weights).
    pub a: Buffer,
    /// The weight operand.
    pub w: Buffer,
    /// The loops, outermost first.
    pub loops: Vec<Loop>,
    /// The innermost operation.
    pub inner: Inner,
    /// The step this kernel implements, as the plan prints it.
    pub comment: String,
}

/// One weight tensor a program reads (`Buffer::Factor(k)` is core k): a core of the layer's
/// format.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoreShape {
    /// Its name: `factor.0` for a KCP layer's first factor stack.
    pub name: String,
    /// Its shape, in storage order (row-major).
    pub shape: Vec<usize>,
    /// The tensors of a weights file it is read from, in order: its own name, or one tensor per
    /// value of its first index (a block term's blocks), stacked.
    pub tensors: Vec<String>,
}

impl CoreShape {
    /// Its number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is stacked from its file tensors along its first index (one tensor per
    /// value of it, as a block term's blocks: `block.{k}.factor.0` for `block.factor.0`), even
    /// from one; a core read from the tensor of its own name is that tensor.
    pub fn is_stacked(&self) -> bool {
        self.tensors.len() != 1 || self.tensors[0] != self.name
    }

    /// The shape of each tensor of the file it is read from (a stacked core's without its first
    /// index).
    pub fn tensor_shape(&self) -> &[usize] {
        if self.is_stacked() {
            &self.shape[1.min(self.shape.len())..]
        } else {
            &self.shape
        }
    }
}

/// A layer's whole loop-nest program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Program {
    /// n_1 .. n_D.
    pub in_shape: Vec<usize>,
    /// m_1 .. m_D.
    pub out_shape: Vec<usize>,
    /// R, the size of the rank (or block) hyperedge; 1 for a format without one.
    pub rank: usize,
    /// The weights it reads, in order.
    pub cores: Vec<CoreShape>,
    /// How many ones the load-time sums read (0 if none does).
    pub ones: usize,
    /// The lengths of the pre-product buffers.
    pub prep_lens: Vec<usize>,
    /// The length of each of the two scratch buffers.
    pub scratch_len: usize,
    /// Kernels run once at load time.
    pub prep: Vec<Kernel>,
    /// Kernels run per row.
    pub call: Vec<Kernel>,
    /// MACs per row of the call kernels.
    pub macs_per_row: u64,
    /// The rows one run of the call kernels computes: 1, or that many rows interleaved, x as
    /// `[N, lanes]` and y as `[M, lanes]` (the batch index last).
    pub lanes: usize,
}

impl Program {
    /// N.
    pub fn input_size(&self) -> usize {
        self.in_shape.iter().product()
    }
    /// M.
    pub fn output_size(&self) -> usize {
        self.out_shape.iter().product()
    }
    /// Calls of the micro-kernel per run of the call kernels: each called GEMM once per
    /// iteration of the loops around it (a loop that runs inside the call, its [`Repeat`], is
    /// not one). A call costs about as much as a thousand multiply-adds, whatever its size.
    pub fn calls_per_row(&self) -> usize {
        let called = |k: &&Kernel| {
            matches!(k.inner, Inner::Gemm { written_out: false, .. } | Inner::GemmRowsFromA { written_out: false, .. })
        };
        self.call.iter().filter(called).map(|k| k.loops.iter().map(|l| l.extent).product::<usize>()).sum()
    }

    /// The shape `[R, m_d, n_d]` of every factor stack of a KCP layer's program (of another
    /// format's: see [`Program::cores`]).
    pub fn factor_shapes(&self) -> Vec<[usize; 3]> {
        self.in_shape.iter().zip(&self.out_shape).map(|(&n, &m)| [self.rank, m, n]).collect()
    }

    /// Run the prep kernels on the factors, returning the pre-products.
    ///
    /// # Panics
    /// On a program that fails [`Program::check`] (the compiler's never do).
    pub fn prepare<T: Real>(&self, factors: &[Vec<T>]) -> Vec<Vec<T>> {
        let mut prep: Vec<Vec<T>> = self.prep_lens.iter().map(|&len| vec![T::ZERO; len]).collect();
        let ones = vec![T::ONE; self.ones];
        for kernel in &self.prep {
            let Buffer::Prep(k) = kernel.out else {
                unreachable!("a load-time kernel writes a pre-product (Program::check)")
            };
            let mut out = std::mem::take(&mut prep[k]);
            let read = |b: Buffer| -> &[T] {
                match b {
                    Buffer::Factor(d) => &factors[d],
                    Buffer::Prep(j) => &prep[j],
                    Buffer::Ones => &ones,
                    other => unreachable!("a load-time kernel reads {other} (Program::check)"),
                }
            };
            kernel.run(&mut out, read(kernel.a), read(kernel.w));
            prep[k] = out;
        }
        prep
    }

    /// Run the call kernels on one row (on `lanes` rows interleaved: x `[N, lanes]`, y
    /// `[M, lanes]`). `y` must already hold the bias (or zeros); `scratch` must hold
    /// `2 * scratch_len` elements.
    ///
    /// # Panics
    /// On a program that fails [`Program::check`] (the compiler's never do), or buffers shorter
    /// than the program's.
    pub fn run_row<T: Real>(&self, x: &[T], y: &mut [T], scratch: &mut [T], factors: &[Vec<T>], prep: &[Vec<T>]) {
        self.run_row_keeping(x, y, scratch, factors, prep, &mut |_, _| {});
    }

    /// [`Program::run_row`], handing the result of every call kernel that writes scratch to
    /// `keep` (with the kernel's number) as soon as it is computed: what a training forward
    /// pass keeps for the backward pass.
    pub fn run_row_keeping<T: Real>(
        &self,
        x: &[T],
        y: &mut [T],
        scratch: &mut [T],
        factors: &[Vec<T>],
        prep: &[Vec<T>],
        keep: &mut dyn FnMut(usize, &[T]),
    ) {
        let (s0, s1) = scratch.split_at_mut(self.scratch_len);
        let mut s = [s0, s1];
        for (number, kernel) in self.call.iter().enumerate() {
            match kernel.out {
                Buffer::Y => {
                    let other: &[T] = match (kernel.a, kernel.w) {
                        (Buffer::Scratch(i), _) | (_, Buffer::Scratch(i)) => &s[i][..],
                        _ => &[],
                    };
                    let read = |b| source(b, x, factors, prep, other);
                    kernel.run(y, read(kernel.a), read(kernel.w));
                }
                Buffer::Scratch(o) => {
                    let [s0, s1] = &mut s;
                    let (out, other) = if o == 0 { (&mut **s0, &**s1) } else { (&mut **s1, &**s0) };
                    let read = |b| source(b, x, factors, prep, other);
                    kernel.run(out, read(kernel.a), read(kernel.w));
                    keep(number, &out[..kernel.out_len]);
                }
                other => unreachable!("a per-row kernel writes {other} (Program::check)"),
            }
        }
    }
}

/// What a call kernel reads from `buffer`, in either slot: x, a weight, a pre-product, or the
/// scratch buffer it does not write (`other`).
fn source<'a, T>(buffer: Buffer, x: &'a [T], factors: &'a [Vec<T>], prep: &'a [Vec<T>], other: &'a [T]) -> &'a [T] {
    match buffer {
        Buffer::X => x,
        Buffer::Factor(d) => &factors[d],
        Buffer::Prep(k) => &prep[k],
        Buffer::Scratch(_) => other,
        buffer => unreachable!("a per-row kernel reads {buffer} (Program::check)"),
    }
}

impl Kernel {
    /// Run the nest on its buffers.
    pub fn run<T: Real>(&self, out: &mut [T], a: &[T], w: &[T]) {
        let out = &mut out[..self.out_len];
        if self.zero {
            out.fill(T::ZERO);
        }
        self.run_loops(0, out, a, w, [0, 0, 0]);
    }

    fn run_loops<T: Real>(&self, depth: usize, out: &mut [T], a: &[T], w: &[T], at: [usize; 3]) {
        // The two innermost loops around an axpy as plain loops, without a call per step:
        // for the short axpys of pre-products (outer products, sums over a short rank) the
        // calls cost more than the multiply-adds (a tensor ring's pre-products took 0.4 ms).
        if let (Inner::Axpy { len }, true) = (self.inner, depth < self.loops.len() && depth + 2 >= self.loops.len()) {
            let last = &self.loops[depth..];
            match len {
                1 => innermost(last, at, |o, ia, iw| out[o] += w[iw] * a[ia]),
                _ => innermost(last, at, |o, ia, iw| axpy(&mut out[o..o + len], &a[ia..ia + len], w[iw])),
            }
            return;
        }
        let Some(l) = self.loops.get(depth) else {
            let [o, ia, iw] = at;
            match self.inner {
                Inner::Axpy { len } => axpy(&mut out[o..o + len], &a[ia..ia + len], w[iw]),
                Inner::Mul { len } => mul_add(&mut out[o..o + len], &a[ia..ia + len], &w[iw..iw + len]),
                // A long dot is worth a call compiled for the kernel path (wider vectors).
                Inner::Dot { len } if len >= 64 => out[o] += T::dot_called(&a[ia..ia + len], &w[iw..iw + len]),
                Inner::Dot { len } => out[o] += dot(&a[ia..ia + len], &w[iw..iw + len]),
                Inner::Gemm { shape, .. } => gemm(&mut out[o..], &a[ia..], &w[iw..], shape),
                Inner::GemmRowsFromA { shape, .. } => gemm(&mut out[o..], &w[iw..], &a[ia..], shape.gemm()),
            }
            return;
        };
        for k in 0..l.extent {
            let at = [at[0] + k * l.strides[0], at[1] + k * l.strides[1], at[2] + k * l.strides[2]];
            self.run_loops(depth + 1, out, a, w, at);
        }
    }
}

/// The one or two innermost loops of a nest, `at` the offsets they start from: `step(o, ia,
/// iw)` at every step, in order.
#[inline(always)]
fn innermost(loops: &[Loop], at: [usize; 3], mut step: impl FnMut(usize, usize, usize)) {
    let ((outer, [so, sa, sw]), inner) = match loops {
        [outer, inner] => ((outer.extent, outer.strides), inner),
        [only] => ((1, [0; 3]), only),
        _ => unreachable!("one or two loops"),
    };
    let [io, ia, iw] = inner.strides;
    for p in 0..outer {
        let [o, a, w] = [at[0] + p * so, at[1] + p * sa, at[2] + p * sw];
        for k in 0..inner.extent {
            step(o + k * io, a + k * ia, w + k * iw);
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.comment)?;
        let assigns = self.zero
            || matches!(self.inner, Inner::Gemm { shape: Gemm { overwrite: true, .. }, .. })
            || matches!(self.inner, Inner::GemmRowsFromA { shape: RowsFromA { overwrite: true, .. }, .. });
        write!(f, "  {}[{}] {}= {} * {}", self.out, self.out_len, if assigns { "" } else { "+" }, self.a, self.w)?;
        writeln!(f)?;
        for (depth, l) in self.loops.iter().enumerate() {
            let [o, a, w] = l.strides;
            let unroll = if l.unroll { " unrolled" } else { "" };
            writeln!(
                f,
                "  {:indent$}for {} in 0..{}{unroll}  (out +{o}, a +{a}, w +{w})",
                "",
                l.index,
                l.extent,
                indent = 2 * depth
            )?;
        }
        let indent = 2 * self.loops.len();
        let how = |written_out: bool| if written_out { "written out" } else { "call" };
        let op = |overwrite: bool| if overwrite { "" } else { "+" };
        match self.inner {
            Inner::Axpy { len } => write!(f, "  {:indent$}axpy {len}: out[o..] += w[iw] * a[ia..]", ""),
            Inner::Mul { len } => write!(f, "  {:indent$}mul {len}: out[o..] += a[ia..] * w[iw..]", ""),
            Inner::Dot { len } => write!(f, "  {:indent$}dot {len}: out[o] += a[ia..] . w[iw..]", ""),
            Inner::Gemm { shape: g, written_out } => {
                write!(
                    f,
                    "  {:indent$}gemm {}x{}x{} {}: out[o..] {}= w[iw..] * a[ia..]  (rows: out +{}, w +{}; sum: a +{}, w +{})",
                    "",
                    g.rows,
                    g.depth,
                    g.len,
                    how(written_out),
                    op(g.overwrite),
                    g.out_row,
                    g.w_row,
                    g.a_row,
                    g.w_col
                )?;
                if g.outer > 1 {
                    write!(f, " x {} (a +{}, w +{})", g.outer, g.a_outer, g.w_outer)?;
                }
                called(f, written_out, g.repeat, &g)
            }
            Inner::GemmRowsFromA { shape: g, written_out } => {
                write!(
                    f,
                    "  {:indent$}gemm {}x{}x{} {}, rows from a: out[o..] {}= a[ia..] * w[iw..]^T  (rows: out +{}, a +{}; columns: w +{})",
                    "",
                    g.rows,
                    g.depth,
                    g.len,
                    how(written_out),
                    op(g.overwrite),
                    g.out_row,
                    g.a_row,
                    g.w_col
                )?;
                called(f, written_out, g.repeat, &g.gemm())
            }
        }
    }
}

/// What a called GEMM adds to its line: the products it repeats inside the call (`r`, with the
/// strides the line names), and how the micro-kernel runs it (`g`'s [`Gemm::route`], the
/// decision the kernels dispatch on), on each SIMD path where the two differ.
fn called(f: &mut fmt::Formatter<'_>, written_out: bool, r: Repeat, g: &Gemm) -> fmt::Result {
    if written_out {
        return Ok(());
    }
    if r.count > 1 {
        write!(f, ", {} times in one call (out +{}, a +{}, w +{})", r.count, r.out, r.a, r.w)?;
    }
    match (g.route(Isa::Avx512), g.route(Isa::Avx2)) {
        (Some(wide), Some(narrow)) if wide == narrow => write!(f, ", {wide}"),
        (Some(wide), Some(narrow)) => write!(f, ", AVX-512 {wide}; AVX2 {narrow}"),
        _ => Ok(()),
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lanes > 1 {
            writeln!(f, "{} rows at once, interleaved (x [N, {0}], y [M, {0}])", self.lanes)?;
        }
        writeln!(
            f,
            "scratch 2 x {}, pre-products {:?}, per row: {} MACs, kernel calls {}",
            self.scratch_len,
            self.prep_lens,
            self.macs_per_row,
            self.calls_per_row()
        )?;
        for kernel in self.prep.iter().chain(&self.call) {
            writeln!(f, "{kernel}")?;
        }
        Ok(())
    }
}
