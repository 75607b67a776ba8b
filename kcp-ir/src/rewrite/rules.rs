//! The rewrite rules, one per line. Commutativity and one associativity reach every pairwise
//! contraction tree: `(a * b) * c` = `c * (a * b)` -> `(c * a) * b` = `b * (c * a)` ->
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
    //! small layers, evaluate to the same tensor.

    use egg::{PatternAst, Var};

    use super::*;
    use crate::eval::{interpret, relative_error, Rng};
    use crate::graph::Operand;
    use crate::plan::{Plan, Tree};
    use crate::{compile, Options, Spec};

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
            Spec::new(&[2, 3, 2], &[3, 2, 1], 2).with_batch(2),
            Spec::new(&[1, 4, 3], &[2, 2, 5], 3).with_batch(1),
            Spec::new(&[3, 1, 2], &[1, 3, 2], 1).with_batch(3),
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
        let options = Options { max_prep_elems: u64::MAX, ..Options::default() };
        let mut checked = 0;
        for rule in rules() {
            let lhs = rule.searcher.get_pattern_ast().unwrap();
            let rhs = rule.applier.get_pattern_ast().unwrap();
            let vars = rule.searcher.vars();
            for spec in &specs {
                let c = compile(spec, &options).unwrap();
                let mut rng = Rng::new(7);
                let factors = rng.factors(&c.spec);
                let x = rng.vec(c.spec.cost_batch() * c.spec.input_size());
                for binding in &bindings {
                    let bind = |v: Var| binding[vars.iter().position(|u| *u == v).unwrap()].clone();
                    let (l, r) = (instantiate(lhs, &bind), instantiate(rhs, &bind));
                    if vars.len() == 2 {
                        // Commutativity binds two subtrees: join the third on top.
                        let (l, r) = (Tree::contract(l, binding[2].clone()), Tree::contract(r, binding[2].clone()));
                        checked += check(&c, &l, &r, &x, &factors);
                    } else {
                        checked += check(&c, &l, &r, &x, &factors);
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 3 * 4);
    }

    fn check(c: &crate::Compiled, l: &Tree, r: &Tree, x: &[f64], factors: &[Vec<f64>]) -> usize {
        assert_ne!(l, r);
        let run = |t: &Tree| {
            let plan = Plan::new(&c.graph, t, c.spec.batch(), u64::MAX);
            interpret(&plan, &c.graph, x, factors, c.spec.cost_batch())
        };
        let (yl, yr) = (run(l), run(r));
        assert!(relative_error(&yl, &yr) < 1e-12, "{l:?} vs {r:?}");
        1
    }
}
