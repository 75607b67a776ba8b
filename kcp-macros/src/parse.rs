//! Parsing: the tokens of a `kcp_layer!` declaration -> a kcp-ir `Spec`, the item around it, and
//! the origin table that maps every spec location back to its token.

use std::collections::BTreeMap;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{braced, Attribute, Expr, ExprLit, Ident, Lit, Token, UnOp, Visibility};

use kcp_ir::network::{Format, RankArgs, RankKey};
use kcp_ir::{Backward, CellKind, Location, Side, Spec};

/// The keys a declaration may hold.
const KEYS: &str = "in_shape, out_shape, format, rank, ranks, blocks, bias, threads, cell, hidden, backward";

/// A parsed declaration.
pub struct Declaration {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub entries: Vec<(Ident, Expr)>,
}

impl Parse for Declaration {
    fn parse(input: ParseStream<'_>) -> syn::Result<Declaration> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        input.parse::<Token![struct]>()?;
        let name: Ident = input.parse()?;
        let body;
        braced!(body in input);
        let entries = Punctuated::<Entry, Token![,]>::parse_terminated(&body)?;
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the layer declaration"));
        }
        Ok(Declaration { attrs, vis, name, entries: entries.into_iter().map(|e| (e.key, e.value)).collect() })
    }
}

struct Entry {
    key: Ident,
    value: Expr,
}

impl Parse for Entry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Entry> {
        let key: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        Ok(Entry { key, value: input.parse()? })
    }
}

/// What the declaration means, plus where each part came from.
pub struct Parsed {
    /// The shapes, format, bias and cell. A format whose keys are wrong (reported) stands in
    /// with every rank 1, and an unknown one as KCP's, so that the shapes are still checked
    /// and the stub has the declared format's API.
    pub spec: Spec,
    /// `threads: n`: the most threads the layer uses (`None`: all of rayon's pool).
    pub threads: Option<std::num::NonZeroUsize>,
    /// `backward: weights` or `backward: dx`: the training path.
    pub backward: Option<Backward>,
    pub origins: BTreeMap<Location, Span>,
    /// Shapes already reported as malformed or missing: kcp-ir's errors about them would only
    /// repeat the first one.
    pub reported: Vec<Side>,
    /// Whether the declaration is of a recurrent cell (even one whose `cell` is malformed).
    pub is_cell: bool,
}

/// Collects errors so that one macro call reports every problem at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }
    pub fn push_at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
    pub fn into_result(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

fn integer(expr: &Expr, what: &str, errors: &mut Errors) -> Option<usize> {
    match expr {
        Expr::Lit(ExprLit { lit: Lit::Int(lit), .. }) => match lit.base10_parse::<usize>() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.push_at(lit.span(), format!("{what} must fit a usize, found {}", lit.base10_digits()));
                None
            }
        },
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
            let found = expr.to_token_stream().to_string().replace(' ', "");
            errors.push_at(expr.span(), format!("{what} must be a positive integer, found {found}"));
            None
        }
        other => {
            let found = other.to_token_stream().to_string();
            errors.push_at(other.span(), format!("{what} must be an integer, found `{found}`"));
            None
        }
    }
}

fn shape(expr: &Expr, side: Side, origins: &mut BTreeMap<Location, Span>, errors: &mut Errors) -> Option<Vec<usize>> {
    origins.insert(Location::Shape(side), expr.span());
    let Expr::Array(array) = expr else {
        let found = expr.to_token_stream().to_string();
        errors.push_at(
            expr.span(),
            format!("{side} must be a list of dimensions like `[8, 20, 20, 18]`, found `{found}`"),
        );
        return None;
    };
    let mut dims = Vec::new();
    for (mode, elem) in array.elems.iter().enumerate() {
        origins.insert(Location::Dim(side, mode), elem.span());
        dims.push(integer(elem, &format!("{side} dimension {}", mode + 1), errors).unwrap_or(1));
    }
    Some(dims)
}

/// A list of ranks like `[1, 4, 4, 1]` (`None`, reported, if it is not a list).
fn list(expr: &Expr, origins: &mut BTreeMap<Location, Span>, errors: &mut Errors) -> Option<Vec<usize>> {
    origins.insert(Location::Ranks, expr.span());
    let Expr::Array(array) = expr else {
        let found = expr.to_token_stream().to_string();
        errors.push_at(expr.span(), format!("ranks must be a list like `[1, 4, 4, 1]`, found `{found}`"));
        return None;
    };
    let mut ranks = Vec::new();
    for (k, elem) in array.elems.iter().enumerate() {
        origins.insert(Location::RankAt(k), elem.span());
        ranks.push(integer(elem, &format!("rank {k} of the list"), errors).unwrap_or(1));
    }
    Some(ranks)
}

/// Read the entries into a spec, recording every problem in `errors`.
pub fn spec(decl: &Declaration, errors: &mut Errors) -> Parsed {
    let mut origins = BTreeMap::new();
    origins.insert(Location::Batch, decl.name.span());
    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    let (mut in_shape, mut out_shape, mut rank, mut bias, mut threads) = (None, None, None, false, None);
    let mut backward = None;
    let (mut format, mut ranks, mut blocks, mut bad_format) = (None, None, None, false);
    let mut reported = Vec::new();
    let (mut cell, mut hidden, mut bad_cell) = (None, None, false);
    for (key, value) in &decl.entries {
        let name = key.to_string();
        if seen.insert(name.clone(), key.span()).is_some() {
            errors.push_at(key.span(), format!("duplicate key `{name}`"));
            continue;
        }
        match name.as_str() {
            "in_shape" => in_shape = Some(shape(value, Side::In, &mut origins, errors)),
            "out_shape" => out_shape = Some(shape(value, Side::Out, &mut origins, errors)),
            "rank" => {
                origins.insert(Location::Rank, value.span());
                rank = Some(integer(value, "rank", errors).unwrap_or(1));
            }
            "bias" => match value {
                Expr::Lit(ExprLit { lit: Lit::Bool(b), .. }) => bias = b.value,
                other => {
                    let found = other.to_token_stream().to_string();
                    errors.push_at(other.span(), format!("bias must be `true` or `false`, found `{found}`"));
                }
            },
            "threads" => match integer(value, "threads", errors) {
                Some(0) => errors.push_at(
                    value.span(),
                    "threads must be at least 1 (leave it out to use all of rayon's pool)".to_string(),
                ),
                n => threads = n.and_then(std::num::NonZeroUsize::new),
            },
            "format" => {
                let word = value.to_token_stream().to_string();
                match Format::entry(&word) {
                    Some(entry) => format = Some(entry),
                    None => {
                        bad_format = true;
                        let names = Format::names();
                        errors.push_at(value.span(), format!("format must be one of {names}, found `{word}`"));
                    }
                }
            }
            "ranks" => ranks = Some(list(value, &mut origins, errors)),
            "blocks" => {
                origins.insert(Location::Blocks, value.span());
                blocks = Some(integer(value, "blocks", errors).unwrap_or(1));
            }
            "cell" => {
                let word = value.to_token_stream().to_string();
                match word.as_str() {
                    "lstm" => cell = Some((CellKind::Lstm, key.span())),
                    "gru" => cell = Some((CellKind::Gru, key.span())),
                    _ => {
                        bad_cell = true;
                        errors.push_at(value.span(), format!("cell must be `lstm` or `gru`, found `{word}`"));
                    }
                }
            }
            "backward" => {
                let word = value.to_token_stream().to_string();
                match word.as_str() {
                    "weights" => backward = Some(Backward::Weights),
                    "dx" => backward = Some(Backward::Dx),
                    _ => errors.push_at(value.span(), format!("backward must be `weights` or `dx`, found `{word}`")),
                }
            }
            "hidden" => {
                origins.insert(Location::Hidden, value.span());
                hidden = Some((integer(value, "hidden", errors).unwrap_or(1), key.span()));
            }
            _ => errors.push_at(key.span(), format!("unknown key `{name}`; expected one of {KEYS}")),
        }
    }
    for (key, present) in [("in_shape", in_shape.is_some()), ("out_shape", out_shape.is_some())] {
        if !present {
            errors.push_at(decl.name.span(), format!("missing key `{key}` in the declaration of `{}`", decl.name));
        }
    }
    // The rank keys of the format: each present, no other.
    let entry = format.or_else(|| Format::entry("kcp")).unwrap_or(&kcp_ir::network::FORMATS[0]);
    let mut keys_ok = !bad_format;
    for key in RankKey::ALL {
        let given = seen.get(key.name()).copied();
        match (given, entry.takes(key)) {
            (Some(span), false) if !bad_format => {
                keys_ok = false;
                let wants = entry.keys.iter().map(|k| format!("`{}`", k.name())).collect::<Vec<_>>().join(" and ");
                errors.push_at(span, format!("format {} takes {wants}, not `{}`", entry.name, key.name()));
            }
            (None, true) => {
                keys_ok = false;
                let of = if format.is_some() { format!(" (format {} needs it)", entry.name) } else { String::new() };
                errors.push_at(
                    decl.name.span(),
                    format!("missing key `{}` in the declaration of `{}`{of}", key.name(), decl.name),
                );
            }
            _ => {}
        }
    }
    // A rank list that is not a list (reported) stands in too.
    let keys_ok = keys_ok && ranks.as_ref().is_none_or(Option::is_some);
    // A missing or malformed shape stands in as empty; its error is already reported.
    let mut resolve = |shape: Option<Option<Vec<usize>>>, side: Side| {
        shape.flatten().unwrap_or_else(|| {
            reported.push(side);
            Vec::new()
        })
    };
    let (in_shape, out_shape) = (resolve(in_shape, Side::In), resolve(out_shape, Side::Out));
    let modes = in_shape.len().max(out_shape.len()).clamp(1, kcp_ir::limits::MAX_MODES);
    let format =
        if keys_ok { entry.make(RankArgs { rank, ranks: ranks.flatten(), blocks }) } else { entry.stand_in(modes) };
    let mut spec = Spec::new(&in_shape, &out_shape, format).with_bias(bias);
    match (cell, hidden) {
        (Some((kind, _)), Some((hidden, _))) => spec = spec.with_cell(kind, hidden),
        (Some((_, span)), None) => errors.push_at(span, "a `cell` needs its `hidden` size"),
        (None, Some((_, span))) if !bad_cell => errors.push_at(span, "`hidden` needs a `cell: lstm` or `cell: gru`"),
        (None, _) => {}
    }
    let is_cell = bad_cell || spec.cell.is_some();
    Parsed { spec, threads, backward, origins, reported, is_cell }
}

/// The attributes of the declaration as tokens.
pub fn attrs(decl: &Declaration) -> TokenStream {
    decl.attrs.iter().map(ToTokens::to_token_stream).collect()
}
