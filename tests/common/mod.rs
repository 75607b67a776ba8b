//! What several integration tests share: each test's own temporary directory, and KCP weights
//! from factor shapes `[R, m_d, n_d]`.

#![allow(dead_code)]

use kcp::ir::network::Network;
use kcp::ir::{Batch, Format};
use kcp::Weights;

thread_local! {
    /// Each test's own directory (a test runs on a thread of its own), removed when it ends.
    static DIR: tempfile::TempDir = tempfile::tempdir().expect("a temporary directory");
}

/// This test's own temporary directory, removed when the test ends.
pub fn test_dir() -> std::path::PathBuf {
    DIR.with(|dir| dir.path().to_path_buf())
}

/// The network of a KCP layer with these factor shapes.
pub fn kcp_network(shapes: &[[usize; 3]]) -> Network {
    let (n, m): (Vec<usize>, Vec<usize>) = shapes.iter().map(|s| (s[2], s[1])).unzip();
    let rank = shapes.first().map_or(1, |s| s[0]);
    Network::new(&n, &m, Format::kcp(rank), Batch::Symbolic).expect("a valid KCP layer")
}

/// Its cores, as files name and shape them.
pub fn kcp_cores(shapes: &[[usize; 3]]) -> Vec<kcp::__private::CoreShape> {
    kcp_network(shapes).core_shapes()
}

/// Seeded random weights of the layer (a bias of M entries with `bias`), as its `random`.
pub fn kcp_random(shapes: &[[usize; 3]], bias: Option<usize>, seed: u64) -> Weights {
    let network = kcp_network(shapes);
    assert!(bias.is_none_or(|m| m == network.output_size()), "a bias has M entries");
    kcp::random_weights(&network, bias.is_some(), seed)
}
