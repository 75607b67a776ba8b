//! Every malformed `kcp_layer!` gives a compile error at the offending token, and nothing else:
//! the `.stderr` files are pinned to this toolchain (regenerate with `TRYBUILD=overwrite`).

#[test]
fn macro_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
