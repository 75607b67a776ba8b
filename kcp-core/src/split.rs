//! One row on two threads: an index of the layer's network cut in two, each part a program of
//! its own over its slice of every core that has the index. A rank or a bond cut sums (each
//! part adds its terms to y), x's first mode cut reads a block of x per part, an output mode
//! cut writes a slab of y per part. The compiler chooses the index (`kcp_ir::compile`); the
//! runtime's driver runs part 0 on the calling thread and part 1 on another.

use std::fmt;
use std::ops::Range;

use crate::check::ProgramError;
use crate::program::{CoreShape, Program};

/// Where the cut index sits in x and y.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cut {
    /// An index of the cores only (a rank, a bond, the blocks of a block term): each part
    /// reads all of x and adds its terms to all of y.
    Sum,
    /// x's first mode: each part reads its block of x, `stride` elements per value of the
    /// index, and adds its terms to all of y.
    Input {
        /// x's elements per value of its first mode.
        stride: usize,
    },
    /// An output mode: each part writes its slab of y, which is `outer` blocks of `inner`
    /// elements per value of the index.
    Output {
        /// The product of the output modes before it.
        outer: usize,
        /// The product of the output modes after it.
        inner: usize,
    },
}

/// How one row is cut in two: the index and where, without the parts' programs (what
/// generated code carries; [`Split`] adds the programs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RowSplit {
    /// The index, as the plan prints it (`r`, `t3`, `j1`, `i2`).
    pub index: String,
    /// Where it sits in x and y.
    pub cut: Cut,
    /// Its size.
    pub size: usize,
    /// Part 0 takes its values below `at`, part 1 the rest.
    pub at: usize,
    /// For each core of the layer, the axis of its storage order that the index runs along
    /// (`None`: the core does not have it, and both parts read all of it).
    pub axes: Vec<Option<usize>>,
}

impl RowSplit {
    /// The values of the index that part `k` (0 or 1) takes.
    pub fn range(&self, k: usize) -> Range<usize> {
        if k == 0 {
            0..self.at
        } else {
            self.at..self.size
        }
    }

    /// Part `k`'s slice of every core (`shapes` the whole layer's, in storage order).
    pub fn cores<T: Copy>(&self, k: usize, cores: &[Vec<T>], shapes: &[CoreShape]) -> Vec<Vec<T>> {
        let range = self.range(k);
        cores
            .iter()
            .zip(shapes)
            .zip(&self.axes)
            .map(|((core, shape), axis)| match axis {
                Some(axis) => slice(core, &shape.shape, *axis, range.clone()),
                None => core.clone(),
            })
            .collect()
    }

    /// The elements of y's row that part `k` writes: the whole row's `output` unless an output
    /// mode is cut.
    pub fn output_len(&self, k: usize, output: usize) -> usize {
        match self.cut {
            Cut::Output { outer, inner } => outer * self.range(k).len() * inner,
            Cut::Sum | Cut::Input { .. } => output,
        }
    }

    /// The scratch part `k` needs beyond its program's: a row of its slab of y where an output
    /// mode is cut.
    pub fn extra_scratch(&self, k: usize, output: usize) -> usize {
        match self.cut {
            Cut::Output { .. } => self.output_len(k, output),
            Cut::Sum | Cut::Input { .. } => 0,
        }
    }

    /// Part `k` of one row: `row(x, y, scratch)` runs the part's program on its x, adding to a
    /// y of its own, which is then added to the row's `y`. `scratch` holds at least the
    /// program's scratch plus [`RowSplit::extra_scratch`].
    pub fn run_part<T: Copy + Default + std::ops::AddAssign>(
        &self,
        k: usize,
        x: &[T],
        y: &mut [T],
        scratch: &mut [T],
        row: impl FnOnce(&[T], &mut [T], &mut [T]),
    ) {
        let range = self.range(k);
        match self.cut {
            Cut::Sum => row(x, y, scratch),
            Cut::Input { stride } => row(&x[range.start * stride..], y, scratch),
            Cut::Output { outer, inner } => {
                let len = self.output_len(k, y.len());
                let (part, scratch) = scratch.split_at_mut(len);
                part.fill(T::default());
                row(x, part, scratch);
                let (size, width) = (self.size * inner, range.len() * inner);
                for o in 0..outer {
                    let to = &mut y[o * size + range.start * inner..][..width];
                    for (v, p) in to.iter_mut().zip(&part[o * width..(o + 1) * width]) {
                        *v += *p;
                    }
                }
            }
        }
    }
}

impl fmt::Display for RowSplit {
    /// `r at 5 of 9 (sum)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.cut {
            Cut::Sum => "the parts' terms summed",
            Cut::Input { .. } => "a block of x per part, the parts' terms summed",
            Cut::Output { .. } => "a slab of y per part",
        };
        write!(f, "{} cut at {} of {}: {what}", self.index, self.at, self.size)
    }
}

/// A row split with its parts' programs: what the generic executor runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Split {
    /// The cut.
    pub row: RowSplit,
    /// Each part's program, over its slice of the cores.
    pub parts: [Program; 2],
}

impl Split {
    /// The scratch either part needs for one row of a layer of `output` elements: its
    /// program's two buffers and, where an output mode is cut, its slab of y.
    pub fn scratch_len(&self, output: usize) -> usize {
        (0..2).map(|k| 2 * self.parts[k].scratch_len + self.row.extra_scratch(k, output)).max().unwrap_or(0)
    }

    /// Whether the split fits `whole` (the layer's program): the cut lies within the index,
    /// every core's axis within its shape, and each part's program passes its check, reads
    /// the cores' slices and writes its part of y.
    pub fn check(&self, whole: &Program) -> Result<(), ProgramError> {
        let error = |problem: String| Err(ProgramError { kernel: String::new(), problem: format!("split: {problem}") });
        let row = &self.row;
        if row.at == 0 || row.at >= row.size || row.axes.len() != whole.cores.len() {
            return error(format!("a cut at {} of {} over {} cores", row.at, row.size, row.axes.len()));
        }
        for (k, part) in self.parts.iter().enumerate() {
            part.check()?;
            let len = row.range(k).len();
            let expected: Vec<Vec<usize>> = whole
                .cores
                .iter()
                .zip(&row.axes)
                .map(|(core, axis)| {
                    let mut shape = core.shape.clone();
                    if let Some(axis) = *axis {
                        if shape.get(axis) == Some(&row.size) {
                            shape[axis] = len;
                        } else {
                            shape.clear();
                        }
                    }
                    shape
                })
                .collect();
            let shapes: Vec<&Vec<usize>> = part.cores.iter().map(|c| &c.shape).collect();
            if part.lanes != 1 || shapes != expected.iter().collect::<Vec<_>>() {
                return error(format!("part {k} reads other cores than the layer's slices"));
            }
            let (input, output) = (part.input_size(), part.output_size());
            let fits = match row.cut {
                Cut::Sum => input == whole.input_size() && output == whole.output_size(),
                Cut::Input { stride } => {
                    input == len * stride && row.size * stride == whole.input_size() && output == whole.output_size()
                }
                Cut::Output { outer, inner } => {
                    input == whole.input_size()
                        && output == row.output_len(k, whole.output_size())
                        && outer * row.size * inner == whole.output_size()
                }
            };
            if !fits {
                return error(format!("part {k}'s x or y is not its part of the layer's"));
            }
        }
        Ok(())
    }
}

/// The values `range` of axis `axis` of a row-major tensor of `shape`.
fn slice<T: Copy>(tensor: &[T], shape: &[usize], axis: usize, range: Range<usize>) -> Vec<T> {
    let inner: usize = shape[axis + 1..].iter().product();
    let block = shape[axis] * inner;
    tensor.chunks_exact(block.max(1)).flat_map(|b| &b[range.start * inner..range.end * inner]).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(cut: Cut, size: usize, at: usize) -> RowSplit {
        RowSplit { index: "i2".into(), cut, size, at, axes: vec![Some(1), None] }
    }

    #[test]
    fn a_slice_takes_the_values_of_its_axis() {
        // [2, 3, 2]: values 100 a + 10 b + c.
        let t: Vec<u32> =
            (0..2).flat_map(|a| (0..3).flat_map(move |b| (0..2).map(move |c| 100 * a + 10 * b + c))).collect();
        assert_eq!(slice(&t, &[2, 3, 2], 1, 1..3), [10, 11, 20, 21, 110, 111, 120, 121]);
        assert_eq!(slice(&t, &[2, 3, 2], 0, 1..2), t[6..]);
        assert_eq!(slice(&t, &[2, 3, 2], 2, 0..1), [0, 10, 20, 100, 110, 120]);
    }

    #[test]
    fn the_cores_of_a_part_are_sliced_where_they_have_the_index() {
        let shapes = [
            CoreShape { name: "a".into(), shape: vec![1, 3], tensors: vec!["a".into()] },
            CoreShape { name: "b".into(), shape: vec![2], tensors: vec!["b".into()] },
        ];
        let s = split(Cut::Sum, 3, 1);
        let cores = vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0]];
        assert_eq!(s.cores(0, &cores, &shapes), [vec![1.0], vec![4.0, 5.0]]);
        assert_eq!(s.cores(1, &cores, &shapes), [vec![2.0, 3.0], vec![4.0, 5.0]]);
    }

    #[test]
    fn an_output_part_adds_to_its_slab_of_y() {
        // y [2, 3, 2], the middle mode cut at 1: part 1 writes y[:, 1..3, :].
        let s = split(Cut::Output { outer: 2, inner: 2 }, 3, 1);
        let mut y = vec![1.0f32; 12];
        let mut scratch = vec![f32::NAN; 8 + 1];
        s.run_part(1, &[0.5], &mut y, &mut scratch, |x, part, rest| {
            assert_eq!((part.len(), rest.len()), (8, 1));
            assert!(part.iter().all(|&v| v == 0.0));
            for (k, v) in part.iter_mut().enumerate() {
                *v += x[0] * k as f32;
            }
        });
        assert_eq!(y, [1.0, 1.0, 1.0, 1.5, 2.0, 2.5, 1.0, 1.0, 3.0, 3.5, 4.0, 4.5]);
    }

    #[test]
    fn an_input_part_reads_its_block_of_x() {
        let s = split(Cut::Input { stride: 2 }, 3, 1);
        let x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let mut seen = Vec::new();
        s.run_part(1, &x, &mut [0.0], &mut [], |x, _, _| seen = x.to_vec());
        assert_eq!(seen, [2.0, 3.0, 4.0, 5.0]);
        s.run_part(0, &x, &mut [0.0], &mut [], |x, _, _| seen = x.to_vec());
        assert_eq!(seen, x);
    }
}
