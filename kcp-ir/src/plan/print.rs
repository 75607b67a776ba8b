//! The text form of a plan: one line per step, then the totals.
//!
//! ```text
//! call t0[b,r,i1,j2] = x[b,j1,j2] * A1[r,i1,j1]  sum j1  1x2x3x4  24 MACs
//! ```

use std::fmt;

use super::{Phase, Plan, Value};
use crate::graph::Index;
use crate::spec::Batch;

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Operand(operand) => write!(f, "{operand}"),
            Value::Temp(k) => write!(f, "t{k}"),
            Value::Output => f.write_str("y"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            let phase = match step.phase {
                Phase::Prep => "prep",
                Phase::Call => "call",
            };
            let [(a, ai), (b, bi)] = step.inputs;
            write!(f, "{phase} {}[{}] = {a}[{ai}] * {b}[{bi}]", step.output, step.indices)?;
            if !step.summed.is_empty() {
                write!(f, "  sum {}", step.summed)?;
            }
            f.write_str("  ")?;
            for (k, (index, dim)) in step.indices.iter().zip(&step.shape).enumerate() {
                if k > 0 {
                    f.write_str("x")?;
                }
                match (index, self.batch) {
                    (Index::Batch, Batch::Symbolic) => f.write_str("B")?,
                    _ => write!(f, "{dim}")?,
                }
            }
            writeln!(f, "  {} MACs", step.macs)?;
        }
        let per = match self.batch {
            Batch::Fixed(b) => format!("per call (batch {b})"),
            Batch::Symbolic => "per row".to_string(),
        };
        write!(f, "total {} MACs {per}, {} MACs at load", self.macs(), self.prep_macs())
    }
}
