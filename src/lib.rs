//! kcp: a tensor-algebra compiler that makes Kronecker CP (KCP) compressed layers fast.
//!
//! A KCP weight `W = sum_r A1[r] (x) ... (x) AD[r]` compresses a huge input-to-hidden matrix by
//! 10^4-10^5x; kcp plans the order of the multiplication by e-graph rewriting so that the
//! compressed layer is also the fast one. This facade re-exports the compiler ([`ir`]) and the
//! runtime that generated code links against.

pub use kcp_ir as ir;
