//! The two printers of a contraction graph: a compact text form and Graphviz dot.

use std::fmt::{self, Write};

use petgraph::visit::EdgeRef;

use super::{ContractionGraph, Index, Node, Operand};

impl ContractionGraph {
    fn write_tensor(&self, f: &mut impl Write, name: &dyn fmt::Display, indices: super::IndexSet) -> fmt::Result {
        write!(f, "{name}[{indices}]")
    }

    /// The graph in Graphviz dot: tensors are boxes, r is a point joined to every factor.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("graph kcp {\n  node [shape=box];\n");
        for node in self.graph.node_indices() {
            let label = match self.graph[node] {
                Node::Operand(operand) => format!("{operand}[{}]", self.indices(operand)),
                Node::Output => format!("y[{}]", self.output_indices),
                Node::Hyperedge(index) => format!("{index}"),
            };
            let shape = if matches!(self.graph[node], Node::Hyperedge(_)) { ", shape=point, xlabel=\"r\"" } else { "" };
            let _ = writeln!(out, "  n{} [label=\"{label}\"{shape}];", node.index());
        }
        for edge in self.graph.edge_references() {
            let index = *edge.weight();
            let _ = writeln!(
                out,
                "  n{} -- n{} [label=\"{index}={}\"];",
                edge.source().index(),
                edge.target().index(),
                self.size(index)
            );
        }
        out.push_str("}\n");
        out
    }
}

impl fmt::Display for ContractionGraph {
    /// The einsum, then one line per index with its size and the tensors it joins.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for position in 0..self.operand_count() {
            if position > 0 {
                f.write_str(" * ")?;
            }
            let operand = Operand::at(position);
            self.write_tensor(f, &operand, self.indices(operand))?;
        }
        f.write_str(" -> ")?;
        self.write_tensor(f, &"y", self.output_indices)?;
        f.write_str("\n")?;
        let mut indices: Vec<Index> = self.graph.edge_weights().copied().collect();
        indices.sort();
        indices.dedup();
        for index in indices {
            let mut joins: Vec<String> = Vec::new();
            for edge in self.graph.edge_references().filter(|e| *e.weight() == index) {
                for end in [edge.source(), edge.target()] {
                    let name = match self.graph[end] {
                        Node::Operand(operand) => operand.to_string(),
                        Node::Output => "y".to_string(),
                        Node::Hyperedge(_) => continue,
                    };
                    if !joins.contains(&name) {
                        joins.push(name);
                    }
                }
            }
            let kind = if joins.len() > 2 { "hyperedge" } else { "edge" };
            writeln!(f, "  {index} = {}: {kind} {}", self.size(index), joins.join(" "))?;
        }
        Ok(())
    }
}
