//! Wrapping: the parsed declaration through kcp-ir, and the final expansion, either the layer
//! or, on error, `compile_error!`s at the offending tokens plus a stub of the same name and API
//! (kcp-ir's `emit_stub`: the same emitter on a stand-in spec), so that one typo gives one error.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use kcp_ir::{compile, emit_layer, emit_stub, validate, Item, Location, Options};

use crate::parse::{self, Declaration, Errors};

/// Expand a `kcp_layer!` invocation: one path for a layer of any format.
pub fn expand(input: TokenStream) -> TokenStream {
    let decl: Declaration = match syn::parse2(input) {
        Ok(decl) => decl,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::default();
    let parsed = parse::spec(&decl, &mut errors);
    // With errors already, the spec is only checked (to report its errors too), not planned.
    let compiled = if errors.is_empty() {
        compile(&parsed.spec, &Options::default()).map(Some)
    } else {
        validate(&parsed.spec).map(|_| None)
    };
    let compiled = compiled.unwrap_or_else(|ir_errors| {
        report(&decl, &parsed, ir_errors, &mut errors);
        None
    });
    let item = item(&decl, &parsed);
    match (errors.into_result(), compiled) {
        (Ok(()), Some(compiled)) => emit_layer(&compiled, &item),
        (result, _) => {
            let error = result.err().map_or_else(TokenStream::new, |e| e.to_compile_error());
            let stub = emit_stub(&parsed.spec, parsed.is_cell, &item);
            quote!(#error #stub)
        }
    }
}

/// Every error of kcp-ir at the token it came from (the declaration's name where none did),
/// except errors about a shape whose own error is already reported.
fn report(
    decl: &Declaration,
    parsed: &parse::Parsed,
    ir_errors: impl IntoIterator<Item = kcp_ir::Error>,
    errors: &mut Errors,
) {
    let repeats = |location: Location| match location {
        Location::Shape(side) | Location::Dim(side, _) => parsed.reported.contains(&side),
        _ => false,
    };
    for error in ir_errors.into_iter().filter(|e| !repeats(e.location())) {
        let span = parsed.origins.get(&error.location()).copied().unwrap_or_else(|| decl.name.span());
        errors.push_at(span, error);
    }
}

/// What the user wrote around the layer.
fn item(decl: &Declaration, parsed: &parse::Parsed) -> Item {
    Item {
        attrs: parse::attrs(decl),
        vis: decl.vis.to_token_stream(),
        name: decl.name.clone(),
        threads: parsed.threads,
        backward: parsed.backward,
        files: cfg!(feature = "files"),
    }
}
