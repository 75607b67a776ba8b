//! Loop nest -> the specialised functions of a layer: `__kcp_prep` (load time), `__kcp_row`
//! (one batch row) and, where the layer interleaves rows, `__kcp_lanes` (a block of them).
//! Extents, strides and offsets are constants; unrolled loops are expanded with their offsets
//! folded.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

use kcp_core::{BackwardProgram, Block, Buffer, Gemm, Inner, Kernel, Program, Repeat, RowsFromA};

/// An offset: the sum of `loop variable * stride` terms and a constant.
#[derive(Clone)]
struct Offset {
    terms: Vec<(Ident, usize)>,
    constant: usize,
}

impl Offset {
    /// The same offset plus a constant.
    fn plus(&self, constant: usize) -> Offset {
        Offset { terms: self.terms.clone(), constant: self.constant + constant }
    }

    fn tokens(&self) -> TokenStream {
        let mut parts: Vec<TokenStream> = self
            .terms
            .iter()
            .map(|(v, s)| {
                if *s == 1 {
                    quote!(#v)
                } else {
                    {
                        let s = lit(*s);
                        quote!(#v * #s)
                    }
                }
            })
            .collect();
        let constant = self.constant;
        if constant > 0 || parts.is_empty() {
            let constant = lit(constant);
            parts.push(quote!(#constant));
        }
        quote!(#(#parts)+*)
    }
}

fn emit_nest(kernel: &Kernel, depth: usize, at: [Offset; 3]) -> TokenStream {
    let Some(l) = kernel.loops.get(depth) else {
        let [o, a, w] = at;
        match kernel.inner {
            Inner::Gemm { shape, written_out: true } => return unrolled_gemm(&o, &a, &w, shape),
            Inner::GemmRowsFromA { shape, written_out: true } => return unrolled_rows_from_a(&o, &a, &w, shape),
            _ => {}
        }
        let (o0, a0, w0) = (o.tokens(), a.tokens(), w.tokens());
        return match kernel.inner {
            Inner::Axpy { len: 1 } => quote!(__kcp_out[#o0] += __kcp_a[#a0] * __kcp_w[#w0];),
            Inner::Axpy { len } => {
                let len = lit(len);
                quote!(::kcp::__private::axpy(&mut __kcp_out[#o0..][..#len], &__kcp_a[#a0..][..#len], __kcp_w[#w0]);)
            }
            Inner::Mul { len } => {
                let len = lit(len);
                quote!(::kcp::__private::mul_add(&mut __kcp_out[#o0..][..#len], &__kcp_a[#a0..][..#len], &__kcp_w[#w0..][..#len]);)
            }
            Inner::Dot { len } => {
                let len = lit(len);
                quote!(__kcp_out[#o0] += ::kcp::__private::dot(&__kcp_a[#a0..][..#len], &__kcp_w[#w0..][..#len]);)
            }
            Inner::Gemm { shape, .. } => gemm_call(quote!(&__kcp_a[#a0..]), quote!(&__kcp_w[#w0..]), o0, shape),
            Inner::GemmRowsFromA { shape, .. } => {
                gemm_call(quote!(&__kcp_w[#w0..]), quote!(&__kcp_a[#a0..]), o0, shape.gemm())
            }
        };
    };
    if l.unroll {
        let bodies = (0..l.extent).map(|k| {
            let mut at = at.clone();
            for (offset, stride) in at.iter_mut().zip(l.strides) {
                offset.constant += k * stride;
            }
            emit_nest(kernel, depth + 1, at)
        });
        quote!(#(#bodies)*)
    } else {
        let var = format_ident!("__kcp_{}", l.index);
        let mut at = at;
        for (offset, stride) in at.iter_mut().zip(l.strides) {
            if stride > 0 {
                offset.terms.push((var.clone(), stride));
            }
        }
        let body = emit_nest(kernel, depth + 1, at);
        let extent = lit(l.extent);
        quote!(for #var in 0..#extent { #body })
    }
}

/// A small GEMM written out as its `rows x outer x depth` axpys (`a_col` is 1), each row summed
/// in a local array (at most four 16-float vector registers: chains of FMAs with no store and
/// reload between them) that starts from the row of `out`, or from zeros if the GEMM
/// overwrites it.
fn unrolled_gemm(o: &Offset, a: &Offset, w: &Offset, g: Gemm) -> TokenStream {
    debug_assert_eq!(g.a_col, 1, "lowering makes every unswapped GEMM contiguous in a");
    debug_assert_eq!(g.repeat.count, 1, "lowering repeats only the GEMMs that are called");
    let len = lit(g.len);
    let rows = (0..g.rows).map(|m| {
        let out = o.plus(m * g.out_row).tokens();
        let start = (!g.overwrite).then(|| quote!(__kcp_acc.copy_from_slice(&__kcp_out[#out..][..#len]);));
        let sum = (0..g.outer).flat_map(|k2| (0..g.depth).map(move |k| (k2, k)));
        let axpys = sum.map(|(k2, k)| {
            let ak = a.plus(k * g.a_row + k2 * g.a_outer).tokens();
            let wv = w.plus(m * g.w_row + k * g.w_col + k2 * g.w_outer).tokens();
            quote!(::kcp::__private::axpy(&mut __kcp_acc, &__kcp_a[#ak..][..#len], __kcp_w[#wv]);)
        });
        quote! {{
            let mut __kcp_acc = [0.0f32; #len];
            #start
            #(#axpys)*
            __kcp_out[#out..][..#len].copy_from_slice(&__kcp_acc);
        }}
    });
    quote!(#(#rows)*)
}

/// A narrow GEMM whose rows come from `a` written out as its `rows x len` dots of `depth` (the
/// rows of `a` and the columns of `w` both contiguous over the sum).
fn unrolled_rows_from_a(o: &Offset, a: &Offset, w: &Offset, g: RowsFromA) -> TokenStream {
    let depth = lit(g.depth);
    let op = if g.overwrite { quote!(=) } else { quote!(+=) };
    let dots = (0..g.rows).flat_map(|m| (0..g.len).map(move |q| (m, q))).map(|(m, q)| {
        let out = o.plus(m * g.out_row + q).tokens();
        let (am, wq) = (a.plus(m * g.a_row).tokens(), w.plus(q * g.w_col).tokens());
        quote!(__kcp_out[#out] #op ::kcp::__private::dot(&__kcp_a[#am..][..#depth], &__kcp_w[#wq..][..#depth]);)
    });
    quote!(#(#dots)*)
}

/// A call of the runtime's small GEMM on `out[o..]` with `columns` and `rows` as its `a` and `w`.
fn gemm_call(columns: TokenStream, rows: TokenStream, o: TokenStream, g: Gemm) -> TokenStream {
    let Gemm {
        rows: m,
        depth,
        len,
        out_row,
        a_row,
        a_col,
        w_row,
        w_col,
        outer,
        a_outer,
        w_outer,
        overwrite,
        stream,
        repeat: Repeat { count, out: r_out, a: r_a, w: r_w },
        block: Block { rows: b_rows, vectors },
    } = g;
    let [m, depth, len, out_row, a_row, a_col, w_row, w_col, outer, a_outer, w_outer, stream] =
        [m, depth, len, out_row, a_row, a_col, w_row, w_col, outer, a_outer, w_outer, stream].map(lit);
    let [count, r_out, r_a, r_w, b_rows, vectors] = [count, r_out, r_a, r_w, b_rows, vectors].map(lit);
    quote! {
        ::kcp::__private::gemm(
            &mut __kcp_out[#o..],
            #columns,
            #rows,
            ::kcp::__private::Gemm {
                rows: #m, depth: #depth, len: #len,
                out_row: #out_row, a_row: #a_row, a_col: #a_col, w_row: #w_row, w_col: #w_col,
                outer: #outer, a_outer: #a_outer, w_outer: #w_outer, overwrite: #overwrite, stream: #stream,
                repeat: ::kcp::__private::Repeat { count: #count, out: #r_out, a: #r_a, w: #r_w },
                block: ::kcp::__private::Block { rows: #b_rows, vectors: #vectors },
            },
        );
    }
}

/// The plan step a kernel implements, as a doc attribute on its code: generated code says where
/// each block comes from, and the snapshots show it.
fn provenance(kernel: &Kernel) -> TokenStream {
    let line = format!(" {}", kernel.comment);
    quote!(#[doc = #line])
}

/// An unsuffixed integer literal: the context types it (usize, by indexing).
fn lit(value: usize) -> Literal {
    Literal::usize_unsuffixed(value)
}

/// The slice a kernel reads `buffer` from; `backward` places the kept intermediates of a
/// backward program in its row's kept buffer.
fn read(buffer: Buffer, backward: Option<&BackwardProgram>) -> TokenStream {
    match buffer {
        Buffer::X => quote!(__kcp_x),
        Buffer::Y => quote!(&*__kcp_y),
        Buffer::Factor(d) => {
            let d = lit(d);
            quote!(&__kcp_f[#d][..])
        }
        Buffer::Prep(k) => {
            let k = lit(k);
            quote!(&__kcp_p[#k][..])
        }
        Buffer::Scratch(k) => {
            let s = Ident::new(&format!("__kcp_s{k}"), Span::call_site());
            quote!(&#s[..])
        }
        Buffer::Ones => quote!(&__kcp_ones[..]),
        Buffer::Dy => quote!(__kcp_dy),
        Buffer::Kept(k) => {
            let (start, len) = backward.map_or((0, 0), |b| b.kept_at(k));
            let (start, len) = (lit(start), lit(len));
            quote!(&__kcp_k[#start..][..#len])
        }
        Buffer::Temp(k) => {
            let t = format_ident!("__kcp_t{}", k);
            quote!(&#t[..])
        }
        // Only ever written.
        Buffer::Dx | Buffer::Grad(_) => quote!(&[]),
    }
}

fn emit_kernel(kernel: &Kernel, out: TokenStream, backward: Option<&BackwardProgram>) -> TokenStream {
    let zero = Offset { terms: Vec::new(), constant: 0 };
    let nest = emit_nest(kernel, 0, [zero.clone(), zero.clone(), zero]);
    let (a, w) = (read(kernel.a, backward), read(kernel.w, backward));
    let fill = kernel.zero.then(|| quote!(__kcp_out.fill(0.0);));
    quote! {
        let __kcp_out: &mut [f32] = #out;
        let __kcp_a: &[f32] = #a;
        let __kcp_w: &[f32] = #w;
        #fill
        #nest
    }
}

/// `fn {name}(factors) -> pre-products`, run once when weights are loaded.
pub fn prep_fn(program: &Program, name: &str) -> TokenStream {
    let name = Ident::new(name, Span::call_site());
    let lens = program.prep_lens.iter().map(|&len| lit(len));
    let kernels = program.prep.iter().map(|kernel| {
        let Buffer::Prep(k) = kernel.out else { return TokenStream::new() };
        let (k, len) = (lit(k), lit(kernel.out_len));
        let body = emit_kernel(kernel, quote!(&mut __kcp_new[..#len]), None);
        let step = provenance(kernel);
        quote! {
            let mut __kcp_new = ::std::mem::take(&mut __kcp_p[#k]);
            #step
            { #body }
            __kcp_p[#k] = __kcp_new;
        }
    });
    // The ones a load-time sum multiplies by, where a kernel reads them.
    let ones = program.prep.iter().any(|k| k.a == Buffer::Ones || k.w == Buffer::Ones).then(|| {
        let ones = lit(program.ones);
        quote!(let __kcp_ones = ::std::vec![1.0f32; #ones];)
    });
    quote! {
        fn #name(__kcp_f: &[::std::vec::Vec<f32>]) -> ::std::vec::Vec<::std::vec::Vec<f32>> {
            let mut __kcp_p: ::std::vec::Vec<::std::vec::Vec<f32>> = ::std::vec![#(::std::vec![0.0f32; #lens]),*];
            #ones
            #(#kernels)*
            __kcp_p
        }
    }
}

/// `fn {name}(x_row, y_row, scratch, factors, pre-products)`: one row of y (already holding
/// the bias or zeros) from one row of x. It is `#[inline(always)]`, so that [`row_call`]
/// compiles it into the runtime's dispatch, once per instruction set. With `keeping`, the
/// function takes the row's kept buffer last and copies into it, as each is computed, the
/// forward intermediates that backward program reads (a training forward pass).
pub fn row_fn(program: &Program, name: &str, keeping: Option<&BackwardProgram>) -> TokenStream {
    let name = Ident::new(name, Span::call_site());
    let scratch = lit(program.scratch_len);
    let kernels = program.call.iter().enumerate().map(|(number, kernel)| {
        let len = lit(kernel.out_len);
        let (out, written) = match kernel.out {
            Buffer::Scratch(k) => {
                let s = Ident::new(&format!("__kcp_s{k}"), Span::call_site());
                (quote!(&mut #s[..#len]), quote!(#s))
            }
            _ => (quote!(&mut __kcp_y[..#len]), quote!(__kcp_y)),
        };
        let body = emit_kernel(kernel, out, None);
        let step = provenance(kernel);
        let mut keep = Vec::new();
        if let Some(backward) = keeping {
            let mut at = 0;
            for &kcp_core::Kept { len, from, .. } in &backward.kept {
                if from == number {
                    let (at, len) = (lit(at), lit(len));
                    keep.push(quote!(__kcp_k[#at..][..#len].copy_from_slice(&#written[..#len]);));
                }
                at += len;
            }
        }
        quote!(#step { #body } #(#keep)*)
    });
    let kept = keeping.map(|_| quote!(__kcp_k: &mut [f32],));
    let params = quote! {
        __kcp_x: &[f32],
        __kcp_y: &mut [f32],
        __kcp_s: &mut [f32],
        __kcp_f: &[::std::vec::Vec<f32>],
        __kcp_p: &[::std::vec::Vec<f32>],
        #kept
    };
    quote! {
        #[inline(always)]
        fn #name(#params) {
            let (__kcp_s0, __kcp_s1) = __kcp_s.split_at_mut(#scratch);
            #(#kernels)*
        }
    }
}

/// `fn {name}(x_row, dy_row, kept_row, temps, factors, grads, dx_row)`: one row of a backward
/// program, the twin of `BackwardProgram::run_row`: the temporaries cut out of one buffer, every
/// dA_d accumulated into `grads[d]`, dx overwritten.
pub fn backward_fn(program: &BackwardProgram, name: &str) -> TokenStream {
    let name = Ident::new(name, Span::call_site());
    let temps = program.temp_lens.iter().enumerate().filter(|&(_, &len)| len > 0).map(|(k, &len)| {
        let (t, len) = (format_ident!("__kcp_t{}", k), lit(len));
        quote!(let (#t, __kcp_t) = __kcp_t.split_at_mut(#len);)
    });
    let steps = program.steps.iter().map(|step| {
        let kernel = &step.kernel;
        let len = lit(kernel.out_len);
        let out = match kernel.out {
            Buffer::Temp(k) => {
                let t = format_ident!("__kcp_t{}", k);
                quote!(&mut #t[..#len])
            }
            Buffer::Grad(d) => {
                let d = lit(d);
                quote!(&mut __kcp_g[#d][..#len])
            }
            _ => quote!(&mut __kcp_dx[..#len]),
        };
        let body = emit_kernel(kernel, out, Some(program));
        let comment = provenance(kernel);
        let broadcast = match (step.broadcast, kernel.out) {
            (Some(d), Buffer::Temp(k)) => {
                let (t, d) = (format_ident!("__kcp_t{}", k), lit(d));
                quote! {
                    for __kcp_term in __kcp_g[#d].chunks_exact_mut(#len) {
                        __kcp_term.iter_mut().zip(&#t[..#len]).for_each(|(g, v)| *g += v);
                    }
                }
            }
            _ => TokenStream::new(),
        };
        quote!(#comment { #body } #broadcast)
    });
    quote! {
        #[inline(always)]
        fn #name(
            __kcp_x: &[f32],
            __kcp_dy: &[f32],
            __kcp_k: &[f32],
            __kcp_t: &mut [f32],
            __kcp_f: &[::std::vec::Vec<f32>],
            __kcp_g: &mut [::std::vec::Vec<f32>],
            __kcp_dx: &mut [f32],
        ) {
            #(#temps)*
            #(#steps)*
        }
    }
}

/// The call of the row function `name` on `x, y, s, f, p` through the runtime's dispatch
/// (`kcp::__private::dispatch`), which inlines it into a copy compiled for the best instruction
/// set the CPU has. Generated code stays safe Rust: the dispatch owns the one `unsafe`.
pub fn row_call(name: &str) -> TokenStream {
    let name = Ident::new(name, Span::call_site());
    quote! {
        ::kcp::__private::dispatch(#[inline(always)] || Self::#name(x, y, s, f, p))
    }
}
