//! The synthetic data set: making one clip (16 frames of 160x120x3, a normal value of noise per
//! channel), on one thread. Throughput is in values written.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kcp::data::{Split, CLIP};

fn clip(c: &mut Criterion) {
    let mut group = c.benchmark_group("data");
    group.sample_size(20);
    group.throughput(Throughput::Elements(CLIP as u64));
    let mut frames = vec![0.0f32; CLIP];
    let mut k = 0;
    group.bench_function("clip", |b| {
        b.iter(|| {
            k += 1;
            Split::TRAIN.clip_into(k % Split::TRAIN.len, &mut frames)
        })
    });
    group.finish();
}

criterion_group!(benches, clip);
criterion_main!(benches);
