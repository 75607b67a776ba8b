//! The `kcp_layer!` proc macro. It stays thin: `parse` reads the declaration into a kcp-ir
//! spec and an origin table, kcp-ir compiles and emits, `expand` wraps the result or maps the
//! errors back to the offending tokens. All meaning lives in kcp-ir.

#![warn(missing_docs)]

mod expand;
mod parse;

/// Declare a KCP layer whose forward pass is compiled from the planner's cheapest plan. Use it
/// through the `kcp` crate (`kcp::kcp_layer!`), whose documentation has compiled examples: the
/// code it generates refers to `::kcp`.
#[proc_macro]
pub fn kcp_layer(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand::expand(input.into()).into()
}
