//! The text form of a plan: one line per step, then the totals.
//!
//! ```text
//! call t0[b,r,i1,j2] = x[b,j1,j2] * A1[r,i1,j1]  sum j1  1x2x3x4  24 MACs
//! ```

use std::fmt;

use super::{Phase, Plan, Step, Value};
use crate::graph::Index;
use crate::spec::Batch;

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Operand(operand) => write!(f, "{operand}"),
            Value::Temp(k) => write!(f, "t{k}"),
            Value::Output => f.write_str("y"),
            Value::Ones => f.write_str("1"),
        }
    }
}

impl Plan {
    /// One step as a line of text: `call t0[..] = x[..] * A2[..]  sum j2  Bx4x8  921600 MACs`.
    pub fn describe_step(&self, step: &Step) -> String {
        let phase = match step.phase {
            Phase::Prep => "prep",
            Phase::Call => "call",
        };
        let [(a, ai), (b, bi)] = step.inputs;
        let mut line = format!("{phase} {}[{}] = {a}[{ai}] * {b}[{bi}]", step.output, step.indices);
        if !step.summed.is_empty() {
            line += &format!("  sum {}", step.summed);
        }
        let dims: Vec<String> = step
            .indices
            .iter()
            .zip(&step.shape)
            .map(|(index, dim)| match (index, self.batch) {
                (Index::Batch, Batch::Symbolic) => "B".to_string(),
                _ => dim.to_string(),
            })
            .collect();
        line + &format!("  {}  {} MACs", dims.join("x"), step.macs)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "{}", self.describe_step(step))?;
        }
        let per = match self.batch {
            Batch::Fixed(b) => format!("per call (batch {b})"),
            Batch::Symbolic => "per row".to_string(),
        };
        write!(f, "total {} MACs {per}, {} MACs at load", self.macs(), self.prep_macs())
    }
}
