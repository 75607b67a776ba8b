//! Planning time: compile (validate, graph, e-graph saturation, extraction) for D = 2..8, and
//! the UCF11 layer.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kcp::ir::{compile, Options, Spec};

fn planning(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for d in 2..=8 {
        let spec = Spec::new(&vec![4; d], &vec![3; d], kcp::ir::Format::kcp(4));
        group.bench_with_input(BenchmarkId::new("modes", d), &spec, |b, spec| {
            b.iter(|| compile(spec, &Options::default()))
        });
    }
    let ucf11 = Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], kcp::ir::Format::kcp(4));
    group.bench_function("ucf11_out4x4x4x16_r4", |b| b.iter(|| compile(&ucf11, &Options::default())));
    group.finish();
}

criterion_group!(benches, planning);
criterion_main!(benches);
