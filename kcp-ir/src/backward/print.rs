//! The text form of a backward plan: what it keeps, one line per step, then the totals.
//!
//! ```text
//! sweep in the order A2, A3, A1, A4, keeping f1, f2, f3 of the forward pass (59904 per row)
//! t0[b,r,i1,i2,i3,j4] = dy[b,i1,i2,i3,i4] * A4[r,i4,j4]  sum i4  73728 MACs
//! dA4[r,i4,j4] += f3[b,r,i1,i2,i3,j4] * dy[b,i1,i2,i3,i4]  sum b,i1,i2,i3  73728 MACs
//! ```

use std::fmt;

use super::{BackwardPlan, BackwardStep, BackwardStrategy, BackwardTensor};

impl fmt::Display for BackwardTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackwardTensor::X => f.write_str("x"),
            BackwardTensor::Dy => f.write_str("dy"),
            BackwardTensor::Factor(d) => write!(f, "A{}", d + 1),
            BackwardTensor::Kept(k) => write!(f, "f{k}"),
            BackwardTensor::Temp(k) => write!(f, "t{k}"),
            BackwardTensor::Dx => f.write_str("dx"),
            BackwardTensor::Grad(d) => write!(f, "dA{}", d + 1),
        }
    }
}

impl fmt::Display for BackwardStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [(a, ai), (b, bi)] = self.inputs;
        let op = if matches!(self.output, BackwardTensor::Grad(_)) { "+=" } else { "=" };
        write!(f, "{}[{}] {op} {a}[{ai}] * {b}[{bi}]", self.output, self.indices)?;
        if !self.summed.is_empty() {
            write!(f, "  sum {}", self.summed)?;
        }
        write!(f, "  {} MACs", self.macs)
    }
}

impl fmt::Display for BackwardPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.strategy {
            BackwardStrategy::Sweep { order, kept } => {
                let order: Vec<String> = order.iter().map(|d| format!("A{}", d + 1)).collect();
                write!(f, "sweep in the order {}", order.join(", "))?;
                if kept.is_empty() {
                    writeln!(f, ", keeping nothing of the forward pass")?;
                } else {
                    let kept: Vec<String> = kept.iter().map(|k| format!("f{k}")).collect();
                    writeln!(f, ", keeping {} of the forward pass ({} elements)", kept.join(", "), self.saved_elems)?;
                }
            }
            BackwardStrategy::Separate if self.macs < self.separate_macs => {
                writeln!(f, "every gradient planned on its own, reusing what an earlier one computed")?;
            }
            BackwardStrategy::Separate => writeln!(f, "every gradient planned on its own")?,
        }
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        writeln!(f, "dbias[i] = sum over b of dy[b,i]  (no contraction)")?;
        write!(
            f,
            "total {} MACs ({:.2}x the forward pass's {}; separately {})",
            self.macs,
            self.macs as f64 / self.forward_macs.max(1) as f64,
            self.forward_macs,
            self.separate_macs
        )
    }
}
