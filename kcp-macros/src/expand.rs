//! Wrapping: the parsed declaration through kcp-ir, and the final expansion, either the layer
//! or, on error, `compile_error!`s at the offending tokens plus a stub of the same name and API
//! (kcp-ir's `emit_stub`: the same emitter on a stand-in spec), so that one typo gives one error.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use kcp_ir::{compile, Location, Options};
use kcp_ir::{emit_layer, emit_stub, Item};

use crate::parse::{self, Declaration, Errors};

/// Expand a `kcp_layer!` invocation.
pub fn expand(input: TokenStream) -> TokenStream {
    let decl: Declaration = match syn::parse2(input) {
        Ok(decl) => decl,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::default();
    let parsed = parse::spec(&decl, &mut errors);
    let compiled = match compile(&parsed.spec, &Options::default()) {
        Ok(compiled) => Some(compiled),
        Err(ir_errors) => {
            let repeats = |location: Location| match location {
                Location::Shape(side) | Location::Dim(side, _) => parsed.reported.contains(&side),
                _ => false,
            };
            for error in ir_errors.into_iter().filter(|e| !repeats(e.location())) {
                let span = parsed.origins.get(&error.location()).copied().unwrap_or_else(|| decl.name.span());
                errors.push_at(span, error);
            }
            None
        }
    };
    let item = Item {
        attrs: parse::attrs(&decl),
        vis: decl.vis.to_token_stream(),
        name: decl.name.clone(),
        threads: parsed.threads,
        backward: parsed.backward,
    };
    match (errors.into_result(), compiled) {
        (Ok(()), Some(compiled)) => emit_layer(&compiled, compiled.half_rank(&Options::default()).as_ref(), &item),
        (result, _) => {
            let error = result.err().map_or_else(TokenStream::new, |e| e.to_compile_error());
            let stub = emit_stub(&parsed.spec, parsed.is_cell, &item);
            quote!(#error #stub)
        }
    }
}
