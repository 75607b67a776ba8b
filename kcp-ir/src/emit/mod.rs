//! Emission: `LoopNest` -> the Rust item a `kcp_layer!` declaration expands to.
//!
//! The item is a struct holding the weights and pre-products, with associated constants
//! describing the layer, constructors (`from_cores`, `from_weights`, `zeros`, `random`,
//! `load`) and `forward` / `forward_par`, whose per-row work is the specialised code of
//! [`kernels`]. Generated code is hygienic: absolute paths into `::kcp::__private`, `__kcp_`
//! local names, one `#[allow]` on the impl.

mod kernels;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;

use crate::Compiled;

/// What the user wrote around the layer: attributes (doc comments), visibility and name.
#[derive(Clone, Debug)]
pub struct Item {
    /// Outer attributes, carried over to the struct.
    pub attrs: TokenStream,
    /// The visibility, carried over to the struct and its API.
    pub vis: TokenStream,
    /// The struct's name.
    pub name: Ident,
    /// The most threads `forward_par` and the training path use; `None` for all of rayon's pool.
    pub threads: Option<std::num::NonZeroUsize>,
    /// The training path (`forward_train`, `backward`, ...) the declaration asks for, if any.
    pub backward: Option<Backward>,
    /// Whether the layer has `load` (weight files): the `kcp` crate's feature `files`, which
    /// it passes on to the macro.
    pub files: bool,
}

/// What a layer's training path computes: the declaration's `backward:` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backward {
    /// `backward: weights`: the gradients of the cores and the bias.
    Weights,
    /// `backward: dx`: those, and dL/dx.
    Dx,
}

impl Backward {
    /// Whether the backward pass writes dx.
    pub fn dx(self) -> bool {
        self == Backward::Dx
    }
}

fn usize_lit(value: usize) -> Literal {
    Literal::usize_unsuffixed(value)
}

/// The layer's item, for a layer of any format: struct, constants, constructors and kernels;
/// for a recurrent cell, the cell's struct beside its input projection. Where a row is cut in
/// two parts ([`Compiled::split`]), a single row runs on two threads in `forward_par`, one part
/// each.
pub fn emit_layer(compiled: &Compiled, item: &Item) -> TokenStream {
    match compiled.spec.cell() {
        None => layer(compiled, item),
        Some(cell) => {
            let input = layer(compiled, &input_item(item));
            cell_struct(input, compiled, item, cell)
        }
    }
}

fn layer(compiled: &Compiled, item: &Item) -> TokenStream {
    let vis = &item.vis;
    let network = compiled.network();
    let nest = &compiled.nest;
    let k = usize_lit(nest.cores.len());
    let format = network.format().to_string();
    let names: Vec<&str> = nest.cores.iter().map(|c| c.name.as_str()).collect();
    let shapes = nest.cores.iter().map(|c| {
        let dims = c.shape.iter().map(|&v| usize_lit(v));
        quote!(&[#(#dims),*])
    });
    let cores = nest.cores.iter().map(|c| {
        let (name, tensors) = (&c.name, &c.tensors);
        let dims = c.shape.iter().map(|&v| usize_lit(v));
        quote! {
            ::kcp::__private::CoreShape {
                name: ::std::string::String::from(#name),
                shape: ::std::vec![#(#dims),*],
                tensors: ::std::vec![#(::std::string::String::from(#tensors)),*],
            }
        }
    });
    let scales = network.init_scales().into_iter().map(Literal::f64_unsuffixed);
    let bias = compiled.spec.bias();
    let (args, bias_value, doc) = if bias {
        (
            quote!(cores: ::std::vec::Vec<::std::vec::Vec<f32>>, bias: ::std::vec::Vec<f32>),
            quote!(::std::option::Option::Some(bias)),
            "The layer from its cores (in `CORE_NAMES` order, each row-major of its `CORE_SHAPES`) and its bias `[M]`.",
        )
    } else {
        (
            quote!(cores: ::std::vec::Vec<::std::vec::Vec<f32>>),
            quote!(::std::option::Option::None),
            "The layer from its cores (in `CORE_NAMES` order, each row-major of its `CORE_SHAPES`).",
        )
    };
    let zeros = quote!(::kcp::__private::Weights::zeros(&Self::__kcp_cores(), Self::HAS_BIAS.then_some(Self::OUT)));
    let training = item.backward.map(|b| training(compiled, b.dx(), &zeros, vis)).unwrap_or_default();
    let split = compiled.split.as_ref().map(|split| self::split(split, compiled.nest.output_size()));
    let halves_type = match &split {
        Some(_) => quote!(impl ::kcp::__private::HalfFn + '_),
        None => quote!(::kcp::__private::NoHalves),
    };
    let halves = split.as_ref().map_or_else(|| quote!(::std::option::Option::None), |split| split.halves.clone());
    let split_items = split.as_ref().map_or_else(no_split, |split| split.items.clone());
    let aliases = kcp_aliases(compiled, item, &args);
    let parts = Parts {
        consts: quote! {
            /// The weight's format, as `kcp plan` prints it.
            #vis const FORMAT: &'static str = #format;
            /// The cores' names (safetensors tensor names; a block term's file holds each block's).
            #vis const CORE_NAMES: [&'static str; #k] = [#(#names),*];
            /// The cores' shapes, in storage order.
            #vis const CORE_SHAPES: [&'static [usize]; #k] = [#(#shapes),*];
            #aliases
        },
        random: quote!(::kcp::__private::Weights::random(
            &Self::__kcp_cores(),
            &[#(#scales),*],
            Self::IN,
            Self::HAS_BIAS.then_some(Self::OUT),
            seed
        )),
        zeros,
        constructor: quote! {
            #[doc = #doc]
            #vis fn from_cores(#args) -> ::std::result::Result<Self, ::kcp::Error> {
                Self::from_weights(::kcp::__private::Weights { cores, bias: #bias_value })
            }
        },
        halves: (halves, halves_type),
        items: quote! {
            /// The cores as the runtime checks and reads them.
            fn __kcp_cores() -> ::std::vec::Vec<::kcp::__private::CoreShape> {
                ::std::vec![#(#cores),*]
            }

            #split_items

            #training
        },
    };
    layer_struct(compiled, item, parts)
}

/// A KCP layer's names for its rank, cores and constructor (`RANK`, `FACTOR_SHAPES`,
/// `from_factors`), kept as aliases of every layer's `CORE_SHAPES` and `from_cores`.
fn kcp_aliases(compiled: &Compiled, item: &Item, args: &TokenStream) -> TokenStream {
    let crate::network::Format::Kcp { rank } = *compiled.network().format() else {
        return TokenStream::new();
    };
    let vis = &item.vis;
    let (d, rank) = (usize_lit(compiled.spec.modes()), usize_lit(rank));
    let factor_shapes = compiled.nest.cores.iter().map(|c| {
        let dims = c.shape.iter().map(|&v| usize_lit(v));
        quote!([#(#dims),*])
    });
    let call =
        if compiled.spec.bias() { quote!(Self::from_cores(cores, bias)) } else { quote!(Self::from_cores(cores)) };
    quote! {
        /// R, the number of Kronecker terms.
        #vis const RANK: usize = #rank;
        /// The shape `[R, m_d, n_d]` of each factor stack: `CORE_SHAPES` of a KCP layer.
        #vis const FACTOR_SHAPES: [[usize; 3]; #d] = [#(#factor_shapes),*];

        /// `from_cores` of a KCP layer: its factor stacks `[R, m_d, n_d]` (row-major).
        #vis fn from_factors(#args) -> ::std::result::Result<Self, ::kcp::Error> {
            #call
        }
    }
}

/// The item a declaration with errors expands to, beside its `compile_error!`s: the layer of a
/// stand-in spec with the declared spec's API (the same format, modes D, bias and cell kind,
/// where the declaration got them right; every size and rank 1), emitted by [`emit_layer`]
/// itself, so that the stub and the real API cannot drift apart and one typo gives one error.
/// `cell` says whether the declaration is of a recurrent cell (even one whose kind is
/// malformed, taken as an LSTM).
pub fn emit_stub(spec: &crate::Spec, cell: bool, item: &Item) -> TokenStream {
    let kind = spec.cell.map_or(crate::CellKind::Lstm, |c| c.kind);
    let entry = spec.format.table_entry();
    // The stand-in's plan does not matter: a small e-graph finds one quickly.
    let options = crate::Options { node_limit: 10_000, ..crate::Options::default() };
    let stand_in = |modes: usize| {
        let mut out_shape = vec![1; modes];
        if cell {
            out_shape[0] = kind.gates();
        }
        let mut stand_in = crate::Spec::new(&vec![1; modes], &out_shape, entry.stand_in(modes)).with_bias(spec.bias);
        if cell {
            stand_in = stand_in.with_cell(kind, 1);
        }
        crate::compile(&stand_in, &options).ok()
    };
    // The declared modes, or fewer where the format has too many cores for them.
    let modes = spec.in_shape.len().max(spec.out_shape.len()).clamp(1, crate::limits::MAX_MODES);
    (1..=modes).rev().find_map(stand_in).map_or_else(TokenStream::new, |compiled| emit_layer(&compiled, item))
}

/// The hidden name of a cell's input projection.
fn input_name(item: &Item) -> Ident {
    quote::format_ident!("__Kcp{}Input", item.name)
}

/// The item of a cell's input projection.
fn input_item(item: &Item) -> Item {
    Item {
        attrs: quote!(#[doc(hidden)]),
        vis: item.vis.clone(),
        name: input_name(item),
        threads: item.threads,
        backward: item.backward,
        files: item.files,
    }
}

/// A cell's struct beside its input projection `input` (emitted), with the training path if the
/// item asks for one.
fn cell_struct(input: TokenStream, compiled: &Compiled, item: &Item, cell: crate::Cell) -> TokenStream {
    let Item { attrs, vis, name, .. } = item;
    let input_name = input_name(item);
    let hidden_lit = usize_lit(cell.hidden);
    let kind_path = match cell.kind {
        crate::CellKind::Lstm => quote!(::kcp::__private::CellKind::Lstm),
        crate::CellKind::Gru => quote!(::kcp::__private::CellKind::Gru),
    };
    let load = if item.files {
        quote! {
            /// Load from a safetensors file with the names `weight_ih.` and the input weight's
            /// cores (`weight_ih.factor.{d}` for KCP), `bias_ih`, `weight_hh` and `bias_hh`.
            #vis fn load(path: impl ::std::convert::AsRef<::std::path::Path>) -> ::std::result::Result<Self, ::kcp::Error> {
                let (weights, cell) = ::kcp::__private::load_recurrent(path.as_ref(), &#input_name::__kcp_cores(), #kind_path, #hidden_lit)?;
                ::std::result::Result::Ok(Self { __kcp_input: #input_name::from_weights(weights)?, __kcp_cell: cell })
            }
        }
    } else {
        TokenStream::new()
    };
    let rank = match compiled.network().format() {
        crate::network::Format::Kcp { .. } => quote! {
            /// R, the rank of the KCP input weight.
            #vis const RANK: usize = #input_name::RANK;
        },
        _ => TokenStream::new(),
    };
    let hidden = usize_lit(cell.hidden);
    let (kind, kind_name) = match cell.kind {
        crate::CellKind::Lstm => (quote!(::kcp::__private::CellKind::Lstm), "LSTM"),
        crate::CellKind::Gru => (quote!(::kcp::__private::CellKind::Gru), "GRU"),
    };
    let gates = usize_lit(cell.kind.gates());
    let recurrent_macs = (cell.kind.gates() * cell.hidden * cell.hidden) as u64;
    let training = item.backward.map(|_| {
        quote! {
            /// The gradients of `L = sum over t of sum(dh[t] * h[t])` for x `[T, B, IN]` from a
            /// zero state and dh `[T, B, HIDDEN]`: the input projection's training forward pass
            /// over all T*B rows, the recurrence with its tape, backpropagation through time,
            /// and the projection's backward pass over all T*B rows at once (threaded; each
            /// row's forward pass runs again there, nothing is kept across rows). Returns
            /// the projection's gradients (its bias is `bias_ih`) and the cell's; dx
            /// `[T, B, IN]` if given (a layer declared with `backward: dx`).
            #vis fn gradients(
                &self,
                x: &[f32],
                batch: usize,
                dh: &[f32],
                dx: ::std::option::Option<&mut [f32]>,
            ) -> ::std::result::Result<(::kcp::__private::Weights, ::kcp::__private::CellGrads), ::kcp::Error> {
                let trace = ::std::cell::RefCell::new(::kcp::Trace::recomputing());
                let input = &self.__kcp_input;
                self.__kcp_cell.sequence_gradients(
                    Self::IN,
                    x,
                    batch,
                    dh,
                    |x: &[f32], proj: &mut [f32]| ::std::result::Result::Ok(input.forward_train_par(x, proj, &mut trace.borrow_mut())?),
                    |dproj: &[f32]| {
                        let mut grads = #input_name::zero_grads();
                        input.backward_par(x, dproj, &mut trace.borrow_mut(), dx, &mut grads)?;
                        ::std::result::Result::Ok(grads)
                    },
                )
            }

            /// Both halves, to change their weights (an optimiser's step: the input projection
            /// through its `update_weights`).
            #vis fn parts_mut(&mut self) -> (&mut #input_name, &mut ::kcp::__private::Recurrent) {
                (&mut self.__kcp_input, &mut self.__kcp_cell)
            }
        }
    });
    let forward_doc = format!(
        "Run the {kind_name} over x `[T, B, IN]` (time major) from `state`, which is left holding the \
         final state, writing every hidden state to `hs` `[T, B, HIDDEN]`."
    );
    quote! {
        #input

        #attrs
        #[derive(Clone, Debug)]
        #vis struct #name {
            __kcp_input: #input_name,
            __kcp_cell: ::kcp::__private::Recurrent,
        }

        #[allow(unused, clippy::all, clippy::pedantic, clippy::nursery)]
        impl #name {
            /// N, the input size.
            #vis const IN: usize = #input_name::IN;
            /// H, the hidden size.
            #vis const HIDDEN: usize = #hidden;
            /// G, the number of gates.
            #vis const GATES: usize = #gates;
            /// The input weight's format, as `kcp plan` prints it.
            #vis const FORMAT: &'static str = #input_name::FORMAT;
            #rank
            /// Parameters of the input weight (bias excluded).
            #vis const PARAMS: u64 = #input_name::PARAMS;
            /// Parameters of the dense input weight it replaces, G*H * N.
            #vis const DENSE_PARAMS: u64 = #input_name::DENSE_PARAMS;
            /// MACs of the input projection per input row.
            #vis const MACS_PER_SAMPLE: u64 = #input_name::MACS_PER_SAMPLE;
            /// MACs of the dense hidden-to-hidden product per row and time step.
            #vis const RECURRENT_MACS_PER_STEP: u64 = #recurrent_macs;
            /// The input projection's compiled plan.
            #vis const PLAN: &'static str = #input_name::PLAN;

            /// The layer from its parts, PyTorch's layout: the cores of `weight_ih` (for KCP its
            /// factors), `bias_ih` `[G*H]`, `weight_hh` `[G*H, H]`, `bias_hh` `[G*H]`.
            #vis fn from_parts(
                cores: ::std::vec::Vec<::std::vec::Vec<f32>>,
                bias_ih: ::std::vec::Vec<f32>,
                weight_hh: ::std::vec::Vec<f32>,
                bias_hh: ::std::vec::Vec<f32>,
            ) -> ::std::result::Result<Self, ::kcp::Error> {
                ::std::result::Result::Ok(Self {
                    __kcp_input: #input_name::from_cores(cores, bias_ih)?,
                    __kcp_cell: ::kcp::__private::Recurrent::new(#kind, #hidden, weight_hh, bias_hh)?,
                })
            }

            /// A seeded random layer (PyTorch's initialisation scales).
            #vis fn random(seed: u64) -> Self {
                Self {
                    __kcp_input: #input_name::random(seed),
                    __kcp_cell: ::kcp::__private::Recurrent::random(#kind, #hidden, seed ^ 0x5EED),
                }
            }

            #load

            /// The input projection.
            #vis fn input(&self) -> &#input_name {
                &self.__kcp_input
            }

            /// The hidden-to-hidden half.
            #vis fn cell(&self) -> &::kcp::__private::Recurrent {
                &self.__kcp_cell
            }

            /// The zero state of a batch.
            #vis fn zero_state(batch: usize) -> ::kcp::__private::State {
                ::kcp::__private::State::zeros(#kind, batch, #hidden)
            }

            #[doc = #forward_doc]
            #vis fn forward(&self, x: &[f32], batch: usize, hs: &mut [f32], state: &mut ::kcp::__private::State) -> ::std::result::Result<(), ::kcp::ShapeError> {
                let project = |x: &[f32], p: &mut [f32]| self.__kcp_input.forward(x, p);
                self.__kcp_cell.sequence(project, Self::IN, x, batch, hs, state, false)
            }

            /// The same as `forward`, threaded: the projection of all T*B rows over the batch
            /// split, the recurrence over batch rows.
            #vis fn forward_par(&self, x: &[f32], batch: usize, hs: &mut [f32], state: &mut ::kcp::__private::State) -> ::std::result::Result<(), ::kcp::ShapeError> {
                let project = |x: &[f32], p: &mut [f32]| self.__kcp_input.forward_par(x, p);
                self.__kcp_cell.sequence(project, Self::IN, x, batch, hs, state, true)
            }

            #training
        }
    }
}

/// What `layer` computes for `layer_struct`.
struct Parts {
    /// Constants after `OUT_SHAPE`: the format, the cores' names and shapes (and a KCP layer's
    /// aliases).
    consts: TokenStream,
    /// `Weights` with every weight zero.
    zeros: TokenStream,
    /// Seeded random `Weights` (with `seed`).
    random: TokenStream,
    /// The constructor from the cores' values, `from_cores`.
    constructor: TokenStream,
    /// The `halves` field of the row kernel and its type.
    halves: (TokenStream, TokenStream),
    /// Other items of the impl.
    items: TokenStream,
}

/// The struct of a layer of any format and its impl: constants, constructors, `forward` and
/// `forward_par` over the generated kernels of `nest` (and of `lanes`), and `parts`.
fn layer_struct(compiled: &Compiled, item: &Item, parts: Parts) -> TokenStream {
    let Item { attrs, vis, name, threads, .. } = item;
    let Parts { consts, zeros, random, constructor, halves, items } = parts;
    let load = if item.files {
        quote! {
            /// Load the layer from a safetensors file: its cores under `CORE_NAMES` (a block
            /// term's as `block.{k}.*`, one per block), and `bias` if the layer has one, all f32.
            #vis fn load(path: impl ::std::convert::AsRef<::std::path::Path>) -> ::std::result::Result<Self, ::kcp::Error> {
                let bias_len = if Self::HAS_BIAS { ::std::option::Option::Some(Self::OUT) } else { ::std::option::Option::None };
                Self::from_weights(::kcp::__private::Weights::load(path.as_ref(), "", &Self::__kcp_cores(), bias_len)?)
            }
        }
    } else {
        TokenStream::new()
    };
    let (nest, lanes, bias) = (&compiled.nest, compiled.lanes.as_ref(), compiled.spec.bias());
    let (prep_macs, plan) = (compiled.plan.prep_macs(), compiled.plan.to_string());
    let (halves, halves_type) = halves;
    let split_type = split_type();
    let d = usize_lit(nest.in_shape.len());
    let (n, m) = (usize_lit(nest.input_size()), usize_lit(nest.output_size()));
    let in_shape = nest.in_shape.iter().map(|&v| usize_lit(v));
    let out_shape = nest.out_shape.iter().map(|&v| usize_lit(v));
    let params = nest.cores.iter().map(|c| c.len() as u64).sum::<u64>();
    let dense_params = (nest.input_size() * nest.output_size()) as u64;
    let macs = nest.macs_per_row;
    let scratch = usize_lit(2 * nest.scratch_len);
    let threads = match threads {
        None => quote!(::kcp::Threads::All),
        Some(n) => {
            let more = usize_lit(n.get() - 1);
            quote!(::kcp::Threads::AtMost(::std::num::NonZeroUsize::MIN.saturating_add(#more)))
        }
    };
    let prep_fn = kernels::prep_fn(nest, "__kcp_prep");
    let row_fn = kernels::row_fn(nest, "__kcp_row", None);
    let row_call = kernels::row_call("__kcp_row");
    let lanes = lanes.map(self::lanes);
    let (lanes_type, lanes_field, lanes_fn) = match &lanes {
        Some(Lanes { field, items }) => (quote!(impl ::kcp::__private::RowFn + '_), field.clone(), items.clone()),
        None => (quote!(::kcp::__private::NoLanes), quote!(::std::option::Option::None), TokenStream::new()),
    };
    quote! {
        #attrs
        #[derive(Clone, Debug)]
        #vis struct #name {
            __kcp_weights: ::kcp::__private::Weights,
            __kcp_prep: ::std::vec::Vec<::std::vec::Vec<f32>>,
            /// Where a row is cut in two parts for two threads (none where no cut pays): the cut, and
            /// each part's cores and pre-products.
            __kcp_split: #split_type,
        }

        #[allow(unused, clippy::all, clippy::pedantic, clippy::nursery)]
        impl #name {
            /// N, the input size.
            #vis const IN: usize = #n;
            /// M, the output size.
            #vis const OUT: usize = #m;
            /// n_1 .. n_D.
            #vis const IN_SHAPE: [usize; #d] = [#(#in_shape),*];
            /// m_1 .. m_D.
            #vis const OUT_SHAPE: [usize; #d] = [#(#out_shape),*];
            #consts
            /// Whether the layer has a bias.
            #vis const HAS_BIAS: bool = #bias;
            /// The weight's parameters: every core's elements (the bias excluded).
            #vis const PARAMS: u64 = #params;
            /// The parameters of the dense weight it replaces, M * N.
            #vis const DENSE_PARAMS: u64 = #dense_params;
            /// MACs per input row of the compiled plan.
            #vis const MACS_PER_SAMPLE: u64 = #macs;
            /// MACs done once when the weights are loaded (weight-only pre-products).
            #vis const PREP_MACS: u64 = #prep_macs;
            /// The compiled plan, as `kcp plan` prints it.
            #vis const PLAN: &'static str = #plan;
            const __KCP_SCRATCH: usize = #scratch;
            const __KCP_THREADS: ::kcp::Threads = #threads;

            #constructor

            /// The layer from weights, checked against its shapes.
            #vis fn from_weights(weights: ::kcp::__private::Weights) -> ::std::result::Result<Self, ::kcp::Error> {
                let bias_len = if Self::HAS_BIAS { ::std::option::Option::Some(Self::OUT) } else { ::std::option::Option::None };
                weights.check(&Self::__kcp_cores(), bias_len)?;
                ::std::result::Result::Ok(Self::__kcp_trusted(weights))
            }

            /// The layer with every weight zero.
            #vis fn zeros() -> Self {
                Self::__kcp_trusted(#zeros)
            }

            /// A seeded random layer whose dense weight has entries of variance 1/N, like
            /// PyTorch's default initialisation scale.
            #vis fn random(seed: u64) -> Self {
                Self::__kcp_trusted(#random)
            }

            #load

            /// The weights.
            #vis fn weights(&self) -> &::kcp::__private::Weights {
                &self.__kcp_weights
            }

            /// y = x W^T (+ b) for x `[B, IN]` and y `[B, OUT]`, row-major; B = x.len() / IN.
            #vis fn forward(&self, x: &[f32], y: &mut [f32]) -> ::std::result::Result<(), ::kcp::ShapeError> {
                self.__kcp_kernel().forward(x, y)
            }

            /// The same as `forward`, with the batch split over threads when it pays.
            #vis fn forward_par(&self, x: &[f32], y: &mut [f32]) -> ::std::result::Result<(), ::kcp::ShapeError> {
                self.__kcp_kernel().forward_par(x, y, Self::__KCP_THREADS)
            }

            fn __kcp_trusted(weights: ::kcp::__private::Weights) -> Self {
                let prep = Self::__kcp_prep(&weights.cores);
                let split = Self::__kcp_split(&weights.cores);
                Self { __kcp_weights: weights, __kcp_prep: prep, __kcp_split: split }
            }

            fn __kcp_kernel(&self) -> ::kcp::__private::RowKernel<'_, impl ::kcp::__private::RowFn + '_, #halves_type, #lanes_type> {
                ::kcp::__private::RowKernel {
                    input: Self::IN,
                    output: Self::OUT,
                    scratch: Self::__KCP_SCRATCH,
                    macs_per_row: Self::MACS_PER_SAMPLE,
                    bias: self.__kcp_weights.bias.as_deref(),
                    row: move |x: &[f32], y: &mut [f32], s: &mut [f32]| {
                        let (f, p) = (&self.__kcp_weights.cores, &self.__kcp_prep);
                        #row_call
                    },
                    halves: #halves,
                    lanes: #lanes_field,
                }
            }

            #prep_fn

            #row_fn

            #lanes_fn

            #items
        }
    }
}

/// The training path of a layer of any format (graph, forward plan and its loop nest): its
/// backward plan (with dx or without), the forward row that keeps what the plan reads, the
/// backward row, and the methods that run them; `zeros` the expression of all-zero weights.
fn training(compiled: &Compiled, dx: bool, zeros: &TokenStream, vis: &TokenStream) -> TokenStream {
    let (graph, nest) = (&compiled.graph, &compiled.nest);
    let plan = compiled.backward(dx);
    let program = crate::lower_backward(&plan, graph);
    let core_lens = nest.cores.iter().map(|c| usize_lit(c.len()));
    // With nothing kept, the training forward row is the forward row.
    let (keep_fn, keep_call) = if program.kept.is_empty() {
        (TokenStream::new(), quote!(Self::__kcp_row(x, y, s, f, p)))
    } else {
        (kernels::row_fn(nest, "__kcp_keep_row", Some(&program)), quote!(Self::__kcp_keep_row(x, y, s, f, p, k)))
    };
    let back_fn = kernels::backward_fn(&program, "__kcp_backward_row");
    let macs = program.macs_per_row;
    let (kept, temps) = (usize_lit(program.kept_len()), usize_lit(program.temps_len()));
    let plan_text = plan.to_string();
    let dx_doc = if dx {
        "dx `[B, IN]` is written if given."
    } else {
        "This layer was declared with `backward: weights`: it computes no dx (pass `None`)."
    };
    let backward_doc = format!(
        "The backward pass of the last `forward_train` over x (`trace`) for dy `[B, OUT]` = dL/dy: \
         the gradients of the cores and the bias accumulated into `grads` (shaped like the weights: \
         see `zero_grads`). {dx_doc}"
    );
    quote! {
        /// MACs per input row of the backward pass.
        #vis const BACKWARD_MACS_PER_SAMPLE: u64 = #macs;
        /// The elements `forward_train` keeps per input row for the backward pass.
        #vis const KEPT_PER_SAMPLE: usize = #kept;
        /// Whether the backward pass writes dx.
        #vis const BACKWARD_DX: bool = #dx;
        /// The backward plan, as `kcp plan --backward` prints it.
        #vis const BACKWARD_PLAN: &'static str = #plan_text;

        /// Gradients of this layer's shapes, all zero: what `backward` accumulates into.
        #vis fn zero_grads() -> ::kcp::__private::Weights {
            #zeros
        }

        /// Change the weights (an optimiser's step) and re-derive what the kernels read from
        /// them. `update` works on a copy, checked afterwards as `from_weights` checks weights
        /// (every core's length, the bias, finite values): on an error the layer keeps the
        /// weights it had.
        #vis fn update_weights<R>(
            &mut self,
            update: impl ::std::ops::FnOnce(&mut ::kcp::__private::Weights) -> R,
        ) -> ::std::result::Result<R, ::kcp::Error> {
            let mut weights = self.__kcp_weights.clone();
            let result = update(&mut weights);
            *self = Self::from_weights(weights)?;
            ::std::result::Result::Ok(result)
        }

        /// `forward` on this thread, keeping in `trace` what the backward pass reads.
        #vis fn forward_train(&self, x: &[f32], y: &mut [f32], trace: &mut ::kcp::Trace) -> ::std::result::Result<(), ::kcp::Error> {
            ::std::result::Result::Ok(self.__kcp_train().forward(x, y, trace, ::kcp::Threads::ONE)?)
        }

        /// `forward_train` with the batch split over threads when it pays.
        #vis fn forward_train_par(&self, x: &[f32], y: &mut [f32], trace: &mut ::kcp::Trace) -> ::std::result::Result<(), ::kcp::Error> {
            ::std::result::Result::Ok(self.__kcp_train().forward(x, y, trace, Self::__KCP_THREADS)?)
        }

        #[doc = #backward_doc]
        #vis fn backward(
            &self,
            x: &[f32],
            dy: &[f32],
            trace: &mut ::kcp::Trace,
            dx: ::std::option::Option<&mut [f32]>,
            grads: &mut ::kcp::__private::Weights,
        ) -> ::std::result::Result<(), ::kcp::Error> {
            self.__kcp_train().backward(x, dy, trace, dx, grads, ::kcp::Threads::ONE)
        }

        /// `backward` with the batch split over threads when it pays: the batch is cut into
        /// parts that do not depend on the threads, each summing its own gradients, added in
        /// order, so the gradients are the same bits on any number of threads.
        #vis fn backward_par(
            &self,
            x: &[f32],
            dy: &[f32],
            trace: &mut ::kcp::Trace,
            dx: ::std::option::Option<&mut [f32]>,
            grads: &mut ::kcp::__private::Weights,
        ) -> ::std::result::Result<(), ::kcp::Error> {
            self.__kcp_train().backward(x, dy, trace, dx, grads, Self::__KCP_THREADS)
        }

        fn __kcp_train(&self) -> ::kcp::__private::TrainKernel<'_, impl ::kcp::__private::KeepFn + '_, impl ::kcp::__private::BackFn + '_> {
            ::kcp::__private::TrainKernel {
                input: Self::IN,
                output: Self::OUT,
                scratch: Self::__KCP_SCRATCH,
                kept: Self::KEPT_PER_SAMPLE,
                temps: #temps,
                dx: Self::BACKWARD_DX,
                core_lens: &[#(#core_lens),*],
                bias: self.__kcp_weights.bias.as_deref(),
                macs_per_row: [Self::MACS_PER_SAMPLE, Self::BACKWARD_MACS_PER_SAMPLE],
                keep: move |x: &[f32], y: &mut [f32], s: &mut [f32], k: &mut [f32]| {
                    let (f, p) = (&self.__kcp_weights.cores, &self.__kcp_prep);
                    ::kcp::__private::dispatch(#[inline(always)] || #keep_call)
                },
                back: move |x: &[f32], dy: &[f32], k: &[f32], t: &mut [f32], g: &mut [::std::vec::Vec<f32>], dx: &mut [f32]| {
                    let f = &self.__kcp_weights.cores;
                    ::kcp::__private::dispatch(#[inline(always)] || Self::__kcp_backward_row(x, dy, k, t, f, g, dx))
                },
            }
        }

        #keep_fn

        #back_fn
    }
}

/// The parts of a layer that runs whole blocks of its batch interleaved.
struct Lanes {
    /// The `lanes` field of its `RowKernel`.
    field: TokenStream,
    /// The block's row function.
    items: TokenStream,
}

fn lanes(nest: &crate::LoopNest) -> Lanes {
    let row_fn = kernels::row_fn(nest, "__kcp_lanes", None);
    let row_call = kernels::row_call("__kcp_lanes");
    let (lanes, scratch) = (usize_lit(nest.lanes), usize_lit(2 * nest.scratch_len));
    let field = quote! {
        ::std::option::Option::Some(::kcp::__private::Lanes {
            lanes: #lanes,
            block: move |x: &[f32], y: &mut [f32], s: &mut [f32]| {
                let (f, p) = (&self.__kcp_weights.cores, &self.__kcp_prep);
                #row_call
            },
            scratch: #scratch,
        })
    };
    Lanes { field, items: row_fn }
}

/// The type of `__kcp_split`'s result.
fn split_type() -> TokenStream {
    quote! {
        ::std::option::Option<(
            ::kcp::__private::RowSplit,
            [(::std::vec::Vec<::std::vec::Vec<f32>>, ::std::vec::Vec<::std::vec::Vec<f32>>); 2],
        )>
    }
}

/// `__kcp_split` of a layer whose rows are not cut.
fn no_split() -> TokenStream {
    let split_type = split_type();
    quote! {
        fn __kcp_split(cores: &[::std::vec::Vec<f32>]) -> #split_type {
            ::std::option::Option::None
        }
    }
}

/// The parts of a layer whose row is cut in two for two threads.
struct Split {
    /// The `halves` field of its `RowKernel`.
    halves: TokenStream,
    /// `__kcp_split` and each part's prep and row functions.
    items: TokenStream,
}

/// The generated side of a [`kcp_core::Split`] of a layer of `output` elements: each part's
/// kernels, and the cut that slices the cores and places each part's x and y.
fn split(split: &kcp_core::Split, output: usize) -> Split {
    let row = &split.row;
    let scratch = usize_lit(split.scratch_len(output));
    // Parts of the same shape (a cut of an even size) share their kernels.
    let same = split.parts[0] == split.parts[1];
    let names = if same { ["__kcp_part", "__kcp_part"] } else { ["__kcp_part0", "__kcp_part1"] };
    let prep = |k: usize| kernels::prep_fn(&split.parts[k], &format!("{}_prep", names[k]));
    let row_fn = |k: usize| kernels::row_fn(&split.parts[k], &format!("{}_row", names[k]), None);
    let kernels = if same {
        [prep(0), row_fn(0)]
    } else {
        let ([p0, p1], [r0, r1]) = ([prep(0), prep(1)], [row_fn(0), row_fn(1)]);
        [quote!(#p0 #p1), quote!(#r0 #r1)]
    };
    let [prep_call0, prep_call1] = names.map(|name| Ident::new(&format!("{name}_prep"), Span::call_site()));
    let [call0, call1] = names.map(|name| kernels::row_call(&format!("{name}_row")));
    let run = if same { call0 } else { quote!(if k == 0 { #call0 } else { #call1 }) };
    let halves = quote! {
        self.__kcp_split.as_ref().map(|(cut, parts)| (
            move |k: usize, x: &[f32], y: &mut [f32], s: &mut [f32]| {
                let (f, p) = &parts[k];
                cut.run_part(k, x, y, s, |x, y, s| #run)
            },
            #scratch,
        ))
    };
    let index = &row.index;
    let (size, at) = (usize_lit(row.size), usize_lit(row.at));
    let cut = match row.cut {
        kcp_core::Cut::Sum => quote!(::kcp::__private::Cut::Sum),
        kcp_core::Cut::Input { stride } => {
            let stride = usize_lit(stride);
            quote!(::kcp::__private::Cut::Input { stride: #stride })
        }
        kcp_core::Cut::Output { outer, inner } => {
            let (outer, inner) = (usize_lit(outer), usize_lit(inner));
            quote!(::kcp::__private::Cut::Output { outer: #outer, inner: #inner })
        }
    };
    let axes = row.axes.iter().map(|axis| match axis {
        Some(axis) => {
            let axis = usize_lit(*axis);
            quote!(::std::option::Option::Some(#axis))
        }
        None => quote!(::std::option::Option::None),
    });
    let split_type = split_type();
    let doc = format!(" The cut of a row ({row}), and each part's slice of the cores with its pre-products.");
    let items = quote! {
        #[doc = #doc]
        fn __kcp_split(cores: &[::std::vec::Vec<f32>]) -> #split_type {
            let cut = ::kcp::__private::RowSplit {
                index: ::std::string::String::from(#index),
                cut: #cut,
                size: #size,
                at: #at,
                axes: ::std::vec![#(#axes),*],
            };
            let shapes = Self::__kcp_cores();
            let f0 = cut.cores(0, cores, &shapes);
            let f1 = cut.cores(1, cores, &shapes);
            let (p0, p1) = (Self::#prep_call0(&f0), Self::#prep_call1(&f1));
            ::std::option::Option::Some((cut, [(f0, p0), (f1, p1)]))
        }

        #(#kernels)*
    };
    Split { halves, items }
}
