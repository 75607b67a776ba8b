//! Wrapping: the parsed declaration through kcp-ir, and the final expansion, either the layer
//! or, on error, `compile_error!`s at the offending tokens plus a stub of the same name and API
//! (kcp-ir's `emit_stub`: the same emitter on a stand-in spec), so that one typo gives one error.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use kcp_ir::network::{Format, Network};
use kcp_ir::{compile, validate, Location, Options};
use kcp_ir::{emit_layer, emit_network, emit_stub, Item};

use crate::parse::{self, Declaration, Errors};

/// Expand a `kcp_layer!` invocation.
pub fn expand(input: TokenStream) -> TokenStream {
    let decl: Declaration = match syn::parse2(input) {
        Ok(decl) => decl,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::default();
    let parsed = parse::spec(&decl, &mut errors);
    if parsed.is_network {
        return expand_network(&decl, &parsed, errors);
    }
    let compiled = match compile(&parsed.spec, &Options::default()) {
        Ok(compiled) => Some(compiled),
        Err(ir_errors) => {
            report(&decl, &parsed, ir_errors, &mut errors);
            None
        }
    };
    let item = item(&decl, &parsed);
    match (errors.into_result(), compiled) {
        (Ok(()), Some(compiled)) => emit_layer(&compiled, compiled.half_rank(&Options::default()).as_ref(), &item),
        (result, _) => {
            let error = result.err().map_or_else(TokenStream::new, |e| e.to_compile_error());
            let stub = emit_stub(&parsed.spec, parsed.is_cell, &item);
            quote!(#error #stub)
        }
    }
}

/// A layer of another format than KCP: its network checked (the shapes and the cell as a KCP
/// layer's, the format's ranks), compiled and emitted, or its errors with a stub of the same
/// format's API.
fn expand_network(decl: &Declaration, parsed: &parse::Parsed, mut errors: Errors) -> TokenStream {
    let item = item(decl, parsed);
    let cell = parsed.spec.cell;
    // The shapes, bias and cell are checked as a KCP layer's of rank 1.
    let mut shapes = parsed.spec.clone();
    shapes.rank = 1;
    let mut found: Vec<String> = Vec::new();
    if let Err(ir_errors) = validate(&shapes) {
        found.extend(ir_errors.iter().map(ToString::to_string));
        report(decl, parsed, ir_errors, &mut errors);
    }
    let network = parsed.format.as_ref().and_then(|format| {
        Network::new(&parsed.spec.in_shape, &parsed.spec.out_shape, format.clone(), parsed.spec.batch)
            .map_err(|ir_errors| {
                // The shapes' errors once, from the check above.
                let fresh = ir_errors.into_iter().filter(|e| !found.contains(&e.to_string())).collect::<Vec<_>>();
                if !fresh.is_empty() {
                    report(decl, parsed, fresh, &mut errors);
                }
            })
            .ok()
    });
    match (errors.into_result(), network) {
        (Ok(()), Some(network)) => {
            let lowered = network.compile(&Options::default());
            emit_network(&network, &lowered, parsed.spec.bias, cell, &item)
        }
        (result, _) => {
            let error = result.err().map_or_else(TokenStream::new, |e| e.to_compile_error());
            let stub = network_stub(parsed).map_or_else(TokenStream::new, |(network, cell)| {
                emit_network(&network, &network.compile(&Options::default()), parsed.spec.bias, cell, &item)
            });
            quote!(#error #stub)
        }
    }
}

/// A stand-in network with the declared one's API: the same format (KCP's stand-in if the
/// format itself is malformed), modes, bias and cell kind, every size and rank 1.
fn network_stub(parsed: &parse::Parsed) -> Option<(Network, Option<kcp_ir::Cell>)> {
    let spec = &parsed.spec;
    let modes = spec.in_shape.len().max(spec.out_shape.len()).clamp(1, kcp_ir::limits::MAX_MODES);
    let format = match parsed.format_name.as_str() {
        "cp" => Format::Cp { rank: 1 },
        "ht" => Format::Ht { rank: 1 },
        "tt" => Format::Tt { ranks: vec![1; modes + 1] },
        "tr" => Format::Tr { ranks: vec![1; 2 * modes] },
        "bt" => Format::Bt { blocks: 1, ranks: vec![1; modes] },
        _ => Format::Kcp { rank: 1 },
    };
    let kind = spec.cell.map_or(kcp_ir::CellKind::Lstm, |c| c.kind);
    let mut out_shape = vec![1; modes];
    if parsed.is_cell {
        out_shape[0] = kind.gates();
    }
    let network = Network::new(&vec![1; modes], &out_shape, format, spec.batch).ok()?;
    Some((network, parsed.is_cell.then_some(kcp_ir::Cell { kind, hidden: 1 })))
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
    }
}
