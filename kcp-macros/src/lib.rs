//! The `kcp_layer!` proc macro. It stays thin: [`parse`] reads the declaration into a kcp-ir
//! spec and an origin table, kcp-ir compiles and emits, [`expand`] wraps the result or maps the
//! errors back to the offending tokens. All meaning lives in kcp-ir.

mod expand;
mod parse;

/// Declare a KCP layer whose forward pass is compiled from the planner's cheapest plan.
///
/// ```ignore
/// kcp::kcp_layer! {
///     /// The UCF11 input projection.
///     pub struct Ucf11Input {
///         in_shape: [8, 20, 20, 18],
///         out_shape: [4, 4, 4, 16],
///         rank: 4,
///         bias: true,      // optional, default false
///         threads: 2,      // optional: the most threads forward_par uses, default all
///     }
/// }
/// ```
#[proc_macro]
pub fn kcp_layer(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand::expand(input.into()).into()
}
