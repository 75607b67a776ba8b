//! The rewrite rules, one per line: the specification of the planner's e-graph. The planner
//! builds what they saturate to directly ([`saturate`](super::saturate)); the tests here check
//! that each rule is sound, and those of `saturate` that the built e-graph is their closure.
//!
//! Commutativity and one associativity reach every pairwise contraction tree: `(a * b) * c` = `c * (a * b)` -> `(c * a) * b` = `b * (c * a)` ->
//! `(b * c) * a` = `a * (b * c)`, so the other association needs no rule of its own (and
//! saturation is faster without it).

use egg::{rewrite, Rewrite};

use super::{Contraction, Operands};

/// Every rule of the planner.
pub fn rules() -> Vec<Rewrite<Contraction, Operands>> {
    vec![
        // -- commutativity --
        rewrite!("contract-commute"; "(* ?a ?b)" => "(* ?b ?a)"),
        // -- associativity --
        rewrite!("contract-assoc"; "(* ?a (* ?b ?c))" => "(* (* ?a ?b) ?c)"),
    ]
}

#[cfg(test)]
mod tests {
    //! Soundness: both sides of every rule, instantiated with disjoint operand subtrees of random
    //! small layers, evaluate to the same tensor. Each side is evaluated as written, operand
    //! order kept ([`evaluate`] lays a contraction's result out as its left operand's indices,
    //! then its right operand's), not through a `Plan`, which orders operands canonically and
    //! would make `(* a b)` and `(* b a)` the same plan.

    use egg::{PatternAst, Var};

    use super::*;
    use crate::eval::{dense_forward, random_factors, relative_error};
    use crate::graph::{ContractionGraph, Index, Operand};
    use crate::network::Format;
    use crate::plan::Tree;
    use crate::{validate, Spec};
    use kcp_core::Rng;

    /// A dense tensor whose indices are laid out in the order listed (row-major).
    struct Tensor {
        indices: Vec<Index>,
        data: Vec<f64>,
    }

    impl Tensor {
        /// The position of an index assignment (`value` gives each index's value).
        fn offset(&self, graph: &ContractionGraph, value: &dyn Fn(Index) -> usize) -> usize {
            self.indices.iter().fold(0, |at, &i| at * graph.size(i) as usize + value(i))
        }
    }

    /// The tree evaluated pairwise as written: x and the factors in their own layouts at the
    /// leaves; each contraction sums over every index no other operand (or y) needs.
    fn evaluate(graph: &ContractionGraph, tree: &Tree, x: &[f64], factors: &[Vec<f64>]) -> Tensor {
        match tree {
            Tree::Leaf(op) => {
                let data = match op {
                    Operand::Input => x.to_vec(),
                    Operand::Factor(d) => factors[*d].clone(),
                };
                Tensor { indices: graph.indices(*op).iter().collect(), data }
            }
            Tree::Contract(l, r) => {
                let (a, b) = (evaluate(graph, l, x, factors), evaluate(graph, r, x, factors));
                let kept = graph.open_indices(l.operands().union(r.operands()));
                let mut all = a.indices.clone();
                all.extend(b.indices.iter().filter(|i| !a.indices.contains(i)));
                let indices: Vec<Index> = all.iter().copied().filter(|&i| kept.contains(i)).collect();
                let volume = |list: &[Index]| list.iter().map(|&i| graph.size(i) as usize).product::<usize>();
                let mut out = Tensor { data: vec![0.0; volume(&indices)], indices };
                for_each_assignment(graph, &all, |value| {
                    let (o, ia, ib) = (out.offset(graph, value), a.offset(graph, value), b.offset(graph, value));
                    out.data[o] += a.data[ia] * b.data[ib];
                });
                out
            }
        }
    }

    /// The tree a pattern denotes once each variable is bound to a subtree.
    fn instantiate(ast: &PatternAst<Contraction>, bind: &dyn Fn(Var) -> Tree) -> Tree {
        fn go(ast: &PatternAst<Contraction>, id: usize, bind: &dyn Fn(Var) -> Tree) -> Tree {
            match &ast.as_ref()[id] {
                egg::ENodeOrVar::Var(v) => bind(*v),
                egg::ENodeOrVar::ENode(Contraction::Leaf(op)) => Tree::Leaf(*op),
                egg::ENodeOrVar::ENode(Contraction::Contract([a, b])) => {
                    Tree::contract(go(ast, usize::from(*a), bind), go(ast, usize::from(*b), bind))
                }
            }
        }
        go(ast, ast.as_ref().len() - 1, bind)
    }

    #[test]
    fn every_rule_is_sound() {
        let specs = [
            Spec::new(&[2, 3, 2], &[3, 2, 1], Format::kcp(2)).with_batch(2),
            Spec::new(&[1, 4, 3], &[2, 2, 5], Format::kcp(3)).with_batch(1),
            Spec::new(&[3, 1, 2], &[1, 3, 2], Format::kcp(1)).with_batch(3),
        ];
        // Bindings for ?a ?b ?c: three disjoint subtrees covering x, A1, A2, A3.
        let x_a1 = Tree::contract(Tree::Leaf(Operand::Input), Tree::Leaf(Operand::Factor(0)));
        let leaf = |d| Tree::Leaf(Operand::Factor(d));
        let bindings = [
            [x_a1.clone(), leaf(1), leaf(2)],
            [leaf(1), x_a1.clone(), leaf(2)],
            [leaf(2), leaf(1), x_a1],
            [leaf(0), Tree::contract(leaf(1), leaf(2)), Tree::Leaf(Operand::Input)],
        ];
        let mut checked = 0;
        for rule in rules() {
            let lhs = rule.searcher.get_pattern_ast().unwrap();
            let rhs = rule.applier.get_pattern_ast().unwrap();
            let vars = rule.searcher.vars();
            for spec in &specs {
                let spec = validate(spec).unwrap();
                let graph = spec.network().graph();
                let mut rng = Rng::new(7);
                let factors = random_factors(&mut rng, &spec);
                let x = rng.vec(spec.cost_batch() * spec.input_size());
                let want = dense_forward(&spec, &factors, &x, spec.cost_batch());
                for binding in &bindings {
                    let bind = |v: Var| binding[vars.iter().position(|u| *u == v).unwrap()].clone();
                    let (mut l, mut r) = (instantiate(lhs, &bind), instantiate(rhs, &bind));
                    if vars.len() == 2 {
                        // Commutativity binds two subtrees: join the third on top.
                        (l, r) = (Tree::contract(l, binding[2].clone()), Tree::contract(r, binding[2].clone()));
                    }
                    assert_ne!(l, r);
                    let [yl, yr] = [&l, &r].map(|t| in_y_layout(&graph, &evaluate(&graph, t, &x, &factors)));
                    assert!(relative_error(&yl, &want) < 1e-12, "{}: {l:?} against the dense reference", rule.name);
                    assert!(relative_error(&yr, &want) < 1e-12, "{}: {r:?} against the dense reference", rule.name);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 2 * 3 * 4);
    }

    /// The evaluator keeps operand order: `x * A1` and `A1 * x` lay their results out
    /// differently (so the commutativity cases above compare two layouts), and agree once both
    /// are read in y's layout.
    #[test]
    fn evaluation_keeps_operand_order() {
        let spec = validate(&Spec::new(&[2, 3], &[3, 2], Format::kcp(2)).with_batch(2)).unwrap();
        let graph = spec.network().graph();
        let mut rng = Rng::new(3);
        let factors = random_factors(&mut rng, &spec);
        let x = rng.vec(spec.cost_batch() * spec.input_size());
        let (xl, a1) = (Tree::Leaf(Operand::Input), Tree::Leaf(Operand::Factor(0)));
        let xa = evaluate(&graph, &Tree::contract(xl.clone(), a1.clone()), &x, &factors);
        let ax = evaluate(&graph, &Tree::contract(a1, xl), &x, &factors);
        assert_eq!(xa.indices[0], Index::Batch);
        assert_eq!(ax.indices[0], Index::Rank);
        assert_ne!(xa.data, ax.data);
        let same = |i: &[Index]| i.iter().copied().collect::<crate::graph::IndexSet>();
        assert_eq!(same(&xa.indices), same(&ax.indices));
    }

    /// A result over y's indices, laid out as y is.
    fn in_y_layout(graph: &ContractionGraph, t: &Tensor) -> Vec<f64> {
        let mut y = Tensor { data: vec![0.0; t.data.len()], indices: graph.output_indices().iter().collect() };
        let order = y.indices.clone();
        for_each_assignment(graph, &order, |value| {
            let o = y.offset(graph, value);
            y.data[o] = t.data[t.offset(graph, value)];
        });
        y.data
    }

    /// `f` on every assignment of values to `indices` (the last one fastest).
    fn for_each_assignment(graph: &ContractionGraph, indices: &[Index], mut f: impl FnMut(&dyn Fn(Index) -> usize)) {
        let volume: usize = indices.iter().map(|&i| graph.size(i) as usize).product();
        let mut digits = vec![0usize; indices.len()];
        for _ in 0..volume {
            f(&|i: Index| digits[indices.iter().position(|&k| k == i).unwrap_or(0)]);
            for (k, digit) in digits.iter_mut().enumerate().rev() {
                *digit += 1;
                if *digit < graph.size(indices[k]) as usize {
                    break;
                }
                *digit = 0;
            }
        }
    }
}
