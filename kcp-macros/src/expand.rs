//! Wrapping: the parsed declaration through kcp-ir, and the final expansion, either the layer
//! or, on error, `compile_error!`s at the offending tokens plus a stub of the same name and API,
//! so that one typo gives one error.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, ToTokens};

use kcp_ir::emit::{layer, Item};
use kcp_ir::{compile, Location, Options};

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
    match (errors.into_result(), compiled) {
        (Ok(()), Some(compiled)) => {
            let item = Item {
                attrs: parse::attrs(&decl),
                vis: decl.vis.to_token_stream(),
                name: decl.name.clone(),
                threads: parsed.threads,
            };
            layer(&compiled, compiled.half_rank(&Options::default()).as_ref(), &item)
        }
        (result, _) => {
            let error = result.err().map_or_else(TokenStream::new, |e| e.to_compile_error());
            let stub = stub(&decl, &parsed.spec, parsed.is_cell);
            quote!(#error #stub)
        }
    }
}

/// A struct of the same name and API whose bodies never run (the crate does not compile).
fn stub(decl: &Declaration, spec: &kcp_ir::Spec, is_cell: bool) -> TokenStream {
    let attrs = parse::attrs(decl);
    let (vis, name) = (&decl.vis, &decl.name);
    let d = Literal::usize_unsuffixed(spec.in_shape.len());
    let common = quote! {
        #vis const IN: usize = 0;
        #vis const RANK: usize = 0;
        #vis const PARAMS: u64 = 0;
        #vis const DENSE_PARAMS: u64 = 0;
        #vis const MACS_PER_SAMPLE: u64 = 0;
        #vis const PLAN: &'static str = "";
        #vis fn random(seed: u64) -> Self { Self }
        #vis fn load(path: impl ::std::convert::AsRef<::std::path::Path>) -> ::std::result::Result<Self, ::kcp::Error> { ::std::unreachable!() }
    };
    let api = if is_cell {
        quote! {
            #vis const HIDDEN: usize = 0;
            #vis const GATES: usize = 0;
            #vis const RECURRENT_MACS_PER_STEP: u64 = 0;
            #vis fn from_parts(factors: ::std::vec::Vec<::std::vec::Vec<f32>>, bias_ih: ::std::vec::Vec<f32>, weight_hh: ::std::vec::Vec<f32>, bias_hh: ::std::vec::Vec<f32>) -> ::std::result::Result<Self, ::kcp::Error> { ::std::unreachable!() }
            #vis fn zero_state(batch: usize) -> ::kcp::__private::State { ::std::unreachable!() }
            #vis fn forward(&self, x: &[f32], batch: usize, hs: &mut [f32], state: &mut ::kcp::__private::State) -> ::std::result::Result<(), ::kcp::ShapeError> { ::std::unreachable!() }
            #vis fn forward_par(&self, x: &[f32], batch: usize, hs: &mut [f32], state: &mut ::kcp::__private::State) -> ::std::result::Result<(), ::kcp::ShapeError> { ::std::unreachable!() }
        }
    } else {
        let bias = spec.bias;
        let bias_arg = bias.then(|| quote!(, bias: ::std::vec::Vec<f32>));
        quote! {
            #vis const OUT: usize = 0;
            #vis const IN_SHAPE: [usize; #d] = [0; #d];
            #vis const OUT_SHAPE: [usize; #d] = [0; #d];
            #vis const FACTOR_SHAPES: [[usize; 3]; #d] = [[0; 3]; #d];
            #vis const HAS_BIAS: bool = #bias;
            #vis const PREP_MACS: u64 = 0;
            #vis fn from_factors(factors: ::std::vec::Vec<::std::vec::Vec<f32>> #bias_arg) -> ::std::result::Result<Self, ::kcp::Error> { ::std::unreachable!() }
            #vis fn from_weights(weights: ::kcp::Weights) -> ::std::result::Result<Self, ::kcp::Error> { ::std::unreachable!() }
            #vis fn zeros() -> Self { Self }
            #vis fn weights(&self) -> &::kcp::Weights { ::std::unreachable!() }
            #vis fn forward(&self, x: &[f32], y: &mut [f32]) -> ::std::result::Result<(), ::kcp::ShapeError> { ::std::unreachable!() }
            #vis fn forward_par(&self, x: &[f32], y: &mut [f32]) -> ::std::result::Result<(), ::kcp::ShapeError> { ::std::unreachable!() }
        }
    };
    quote! {
        #attrs
        #vis struct #name;

        #[allow(unused)]
        impl #name {
            #common
            #api
        }
    }
}
