//! Programs are checked before they run: every program the compiler lowers passes
//! `Program::check` / `BackwardProgram::check` (forward nests, interleaved nests, row splits,
//! backward programs with and without dx, every format), and a program changed by hand so
//! that a kernel reaches outside its buffers, or names a buffer of the wrong kind, is a typed
//! error of `Executor::new` or of the training pass, never a panic or a kernel skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kcp::ir::network::Format;
use kcp::ir::{compile, lower_backward, Options, Spec};
use kcp::{Buffer, Error, Executor, Inner, ShapeError, Threads};

fn formats() -> Vec<Format> {
    vec![
        Format::Kcp { rank: 4 },
        Format::Cp { rank: 3 },
        Format::Tt { ranks: vec![1, 2, 3, 1] },
        Format::Tr { ranks: vec![2, 2, 1, 2, 3, 2] },
        Format::Bt { blocks: 2, ranks: vec![2, 1, 2] },
        Format::Ht { rank: 2 },
    ]
}

#[test]
fn every_lowered_program_passes_its_check() {
    for (in_shape, out_shape) in [([4, 3, 5], [2, 3, 2]), ([8, 1, 6], [3, 4, 1]), ([16, 16, 16], [8, 8, 8])] {
        for format in formats() {
            let name = format!("{format} {in_shape:?} -> {out_shape:?}");
            let c = compile(&Spec::new(&in_shape, &out_shape, format).with_bias(true), &Options::default()).unwrap();
            c.nest.check().unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(lanes) = &c.lanes {
                lanes.check().unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            if let Some(split) = &c.split {
                split.check(&c.nest).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            for dx in [false, true] {
                let backward = lower_backward(&c.backward(dx), &c.graph);
                backward.check(&c.nest).unwrap_or_else(|e| panic!("{name}, dx {dx}: {e}"));
            }
        }
    }
}

fn is_program_error(result: Result<Executor, Error>) -> String {
    match result {
        Err(Error::Shape(ShapeError::Program(e))) => e.to_string(),
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("a broken program was accepted"),
    }
}

#[test]
fn a_broken_program_is_a_typed_error() {
    let c = compile(&Spec::new(&[4, 3, 5], &[2, 3, 2], Format::kcp(2)), &Options::default()).unwrap();
    let weights = kcp::random_weights(c.network(), false, 1);
    type Break = Box<dyn Fn(&mut kcp::Program)>;
    let breaks: Vec<(&str, Break)> = vec![
        ("a stride past the buffer", Box::new(|p| p.call[0].loops[0].strides[1] += 1000)),
        ("an extent past the buffer", Box::new(|p| p.call[0].loops[0].extent += 50)),
        ("out_len past the buffer", Box::new(|p| p.call[0].out_len = p.scratch_len + 1)),
        ("a core it does not have", Box::new(|p| p.call[0].w = Buffer::Factor(9))),
        ("a pre-product it does not have", Box::new(|p| p.call[0].w = Buffer::Prep(3))),
        ("a per-row kernel writing a core", Box::new(|p| p.call[0].out = Buffer::Factor(0))),
        ("a kernel reading the scratch it writes", Box::new(|p| p.call[0].a = p.call[0].out)),
        ("a backward buffer in a forward program", Box::new(|p| p.call[0].a = Buffer::Dy)),
        ("no lanes", Box::new(|p| p.lanes = 0)),
        (
            "an inner run too long",
            Box::new(|p| {
                let last = p.call.len() - 1;
                p.call[last].inner = Inner::Dot { len: 1 << 20 };
            }),
        ),
    ];
    for (what, change) in breaks {
        let mut program = c.nest.clone();
        change(&mut program);
        let message = is_program_error(Executor::new(program, weights.clone()));
        assert!(message.starts_with("invalid program"), "{what}: {message}");
    }
    // A backward program whose step reads past a kept intermediate, or writes dx when the
    // program says it does not: the training pass refuses it.
    let executor = Executor::new(c.nest.clone(), weights).unwrap();
    let program = lower_backward(&c.backward(true), &c.graph);
    let (x, dy) = (vec![0.5f32; 2 * 60], vec![1.0f32; 2 * 12]);
    let mut dx = vec![0.0f32; x.len()];
    executor.gradients(&program, &x, &dy, Some(&mut dx), Threads::ONE).unwrap();
    let mut no_dx = program.clone();
    no_dx.dx = false;
    let mut wide = program.clone();
    wide.steps[0].kernel.loops.iter_mut().for_each(|l| l.strides = [l.strides[0], l.strides[1] + 7, l.strides[2] + 7]);
    for (what, broken) in [("dx", no_dx), ("strides", wide)] {
        match executor.gradients(&broken, &x, &dy, None, Threads::ONE) {
            Err(Error::Shape(ShapeError::Program(e))) => assert!(e.to_string().starts_with("invalid program"), "{e}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}
