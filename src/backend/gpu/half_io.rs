//! Kernels that read half-precision inputs: any kernel of `shaders/` compiled with some of
//! its input slots (`x0`, `x1`, `x2` and their vec4 views) holding 16-bit elements.
//!
//! A launch declares the format of each input slot in [`super::Work::io`]; the module is
//! then compiled from the same WGSL with those slots' declarations replaced and every
//! read `x0[e]` (or `x0v[e]`) rewritten to a loader `hio_x0(e)` (or `hio_x0v(e)`) that
//! returns the `f32` (or `vec4<f32>`) value. The arithmetic is the kernel's own, in `f32`;
//! so every half kernel accumulates in `f32`. Two paths:
//!
//! - **native** (`Fmt::F16Native`, on adapters with wgpu's `SHADER_F16` unless
//!   [`super::GpuOptions::native_f16`] is off): the slot is an `array<f16>` (its view an
//!   `array<vec4<f16>>`), read with the hardware's exact widening;
//! - **packed** (`Fmt::F16Packed`, `Fmt::Bf16`; every adapter): the slot is an
//!   `array<u32>` of pairs (element `i` in the low half of word `i / 2` when `i` is even),
//!   widened exactly with integer operations (bf16 by a shift; f16 by rebuilding the f32
//!   bits, subnormals included, where `unpack2x16float` may flush them).
//!
//! The output slot `y0` may hold native `f16` elements too ([`with_native_out`], on the
//! native path only): every store `y0[e] = v;` becomes `y0[e] = hio_y0(v);`, which rounds
//! `v` to the nearest `f16` (ties to even, past 65504 to infinity, subnormals kept) with
//! the integer steps of `shaders/half.wgsl`'s pack kernel, then converts that exactly
//! representable value, so the bits equal the packed path's (WGSL leaves the rounding of
//! an inexact `f32` to `f16` conversion to the implementation); a read `y0[e]` becomes
//! `f32(y0[e])`. Packed outputs stay `f32`, to
//! be rounded by that kernel: two threads cannot write one packed word.

/// The format of one input slot's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fmt {
    /// 32-bit elements (the default).
    F32 = 0,
    /// IEEE half, two to a `u32` word.
    F16Packed = 1,
    /// bfloat16, two to a `u32` word.
    Bf16 = 2,
    /// IEEE half read as WGSL's `f16`.
    F16Native = 3,
}

impl Fmt {
    fn of(code: u32) -> Fmt {
        match code & 3 {
            1 => Fmt::F16Packed,
            2 => Fmt::Bf16,
            3 => Fmt::F16Native,
            _ => Fmt::F32,
        }
    }
}

/// `io` with the output slot `y0` holding native `f16` elements (bits 6-7).
pub(crate) fn with_native_out(io: u32) -> u32 {
    io | (Fmt::F16Native as u32) << 6
}

/// A kernel's output `y0` of `n` elements and the launch's `io` word: native `f16`
/// storage written by the kernel when its input `x0` is native `f16` and no other input
/// is packed (`io`), else `f32`, which the caller rounds to its dtype.
pub(crate) fn output(
    g: &std::sync::Arc<super::GpuContext>,
    io: u32,
    n: usize,
) -> crate::error::Result<(crate::backend::Storage, u32)> {
    let native = |i: u32| matches!(Fmt::of(io >> (2 * i)), Fmt::F32 | Fmt::F16Native);
    if Fmt::of(io) == Fmt::F16Native && native(1) && native(2) {
        let words = super::kernels::gpu_alloc(g, n.div_ceil(2))?;
        let s = crate::backend::half::HalfStorage::gpu(crate::tensor::DType::F16, words);
        Ok((s, with_native_out(io)))
    } else {
        let s = crate::backend::Storage::new_gpu(super::kernels::gpu_alloc(g, n)?);
        Ok((s, io))
    }
}

/// True when both operands `x0` and `x1` of `io` are native `f16`.
pub(crate) fn native_operands(io: u32) -> bool {
    Fmt::of(io) == Fmt::F16Native && Fmt::of(io >> 2) == Fmt::F16Native
}

/// `io` with the slot `y1` holding native `f16` elements (bits 8-9): a product's residual
/// addend, read (and never written) by its epilogue.
pub(crate) fn with_native_y1(io: u32) -> u32 {
    io | (Fmt::F16Native as u32) << 8
}

/// True when `io` has `y0` hold native `f16` elements.
pub(crate) fn native_out(io: u32) -> bool {
    Fmt::of(io >> 6) == Fmt::F16Native
}

/// The `io` word of a launch whose input slots `x0`, `x1`, `x2` hold `fmts`.
pub(crate) fn io_of(fmts: [Fmt; 3]) -> u32 {
    fmts.iter()
        .enumerate()
        .map(|(i, &f)| (f as u32) << (2 * i))
        .fold(0, |a, b| a | b)
}

/// The GPU buffer of a kernel input and its format: `f32` storage, or half storage read
/// packed or as native `f16` (on a device with `SHADER_F16` and the option on).
fn input<'a>(
    op: &'static str,
    s: &'a crate::backend::Storage,
) -> crate::error::Result<(&'a super::GpuBuffer, Fmt)> {
    use crate::backend::half::HalfData;
    use crate::backend::Storage;
    match s {
        Storage::Half(h) => match &h.data {
            HalfData::Gpu(b) if h.dtype == crate::tensor::DType::BF16 => Ok((b, Fmt::Bf16)),
            HalfData::Gpu(b) if b.ctx.native_f16() => Ok((b, Fmt::F16Native)),
            HalfData::Gpu(b) => Ok((b, Fmt::F16Packed)),
            HalfData::Cpu(_) => crate::backend::wrong_backend(op),
        },
        _ => Ok((s.gpu(op)?, Fmt::F32)),
    }
}

/// The buffers of a kernel's inputs `x0`, `x1`, ... (at most three) and the launch's `io`
/// word: `f32` or half storages.
pub(crate) fn inputs<'a>(
    op: &'static str,
    storages: &[&'a crate::backend::Storage],
) -> crate::error::Result<(Vec<&'a super::GpuBuffer>, u32)> {
    let mut fmts = [Fmt::F32; 3];
    let mut bufs = Vec::with_capacity(storages.len());
    for (i, s) in storages.iter().enumerate() {
        let (b, f) = input(op, s)?;
        if let Some(slot) = fmts.get_mut(i) {
            *slot = f;
        }
        bufs.push(b);
    }
    Ok((bufs, io_of(fmts)))
}

/// The half inputs of `io` for profiles: `""` when none, else `(x0 f16, x1 bf16)`
/// (`f16*` the native path).
pub(crate) fn describe(io: u32) -> String {
    let parts: Vec<String> = (0..3)
        .filter_map(|i| {
            let name = match Fmt::of(io >> (2 * i)) {
                Fmt::F32 => return None,
                Fmt::F16Packed => "f16",
                Fmt::Bf16 => "bf16",
                Fmt::F16Native => "f16*",
            };
            Some(format!("x{i} {name}"))
        })
        .chain(native_out(io).then(|| "y0 f16*".to_string()))
        .chain((Fmt::of(io >> 8) == Fmt::F16Native).then(|| "y1 f16*".to_string()))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("({})", parts.join(", "))
    }
}

/// The slot names of input `i` (0-2): the scalar and the vec4 view.
const SLOTS: [(&str, &str); 3] = [("x0", "x0v"), ("x1", "x1v"), ("x2", "x2v")];

/// Exact widening of 16-bit patterns (the low 16 bits of `w`).
const WIDEN: &str = "
fn hio_f16(w: u32) -> f32 {
    let h = w & 0xffffu;
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    let normal = sign | ((e + 112u) << 23u) | (m << 13u);
    let small = sign | bitcast<u32>(f32(m) * 5.9604644775390625e-8);
    let special = sign | 0x7f800000u | (m << 13u);
    return bitcast<f32>(select(select(normal, small, e == 0u), special, e == 0x1fu));
}
fn hio_bf16(w: u32) -> f32 { return bitcast<f32>((w & 0xffffu) << 16u); }
";

/// The output slot's rounding of an `f32` to native `f16`: `shaders/half.wgsl`'s
/// integer steps (`hf_f16_from_f32`, the pack kernel's; taken from that file, so the
/// math is written once) give the `f16` pattern, whose value (widened exactly) converts
/// to `f16` without rounding, as WGSL's conversion of a representable value is exact.
const NARROW: &str = "
fn hio_y0(v: f32) -> f16 {
    return f16(hio_f16(hf_f16_from_f32(bitcast<u32>(v))));
}
";

/// `hf_f16_from_f32` from `shaders/half.wgsl` (empty if the file no longer defines it
/// at the start of a line with a closing brace alone on a line: a test checks).
fn f16_rounding() -> &'static str {
    const SRC: &str = include_str!("../../../shaders/half.wgsl");
    let Some(start) = SRC.find("\nfn hf_f16_from_f32(") else {
        return "";
    };
    match SRC[start..].find("\n}\n") {
        Some(end) => &SRC[start..start + end + 3],
        None => "",
    }
}

/// `prelude` and `body` compiled with the input formats of `io` (see the module
/// documentation); the text unchanged when `io` is 0.
pub(crate) fn rewrite(prelude: &str, body: &str, io: u32) -> String {
    if io == 0 {
        return format!("{prelude}\n{body}");
    }
    let mut prelude = prelude.to_string();
    let mut body = body.to_string();
    let mut loaders = String::from(WIDEN);
    let mut native = false;
    for (i, (s, v)) in SLOTS.iter().enumerate() {
        let fmt = Fmt::of(io >> (2 * i));
        let (elem, view, one, four, one_v) = match fmt {
            Fmt::F32 => continue,
            Fmt::F16Native => {
                native = true;
                (
                    "f16",
                    "vec4<f16>",
                    format!("f32({s}[i])"),
                    format!("vec4<f32>({v}[j])"),
                    format!("f32({v}[i >> 2u][i & 3u])"),
                )
            }
            Fmt::F16Packed | Fmt::Bf16 => {
                let w = if fmt == Fmt::Bf16 {
                    "hio_bf16"
                } else {
                    "hio_f16"
                };
                (
                    "u32",
                    "vec2<u32>",
                    format!("{w}({s}[i >> 1u] >> ((i & 1u) << 4u))"),
                    format!(
                        "vec4<f32>({w}({v}[j].x), {w}({v}[j].x >> 16u), {w}({v}[j].y), \
                         {w}({v}[j].y >> 16u))"
                    ),
                    format!("{w}({v}[i >> 2u][(i >> 1u) & 1u] >> ((i & 1u) << 4u))"),
                )
            }
        };
        prelude = prelude
            .replace(
                &format!("var<storage, read> {s}: array<f32>;"),
                &format!("var<storage, read> {s}: array<{elem}>;"),
            )
            .replace(
                &format!("var<storage, read> {v}: array<vec4<f32>>;"),
                &format!("var<storage, read> {v}: array<{view}>;"),
            );
        // One element read through the vec4 view (`x0v[i >> 2u][i & 3u]`) loads just
        // its own word.
        body = body.replace(&format!("{v}[i >> 2u][i & 3u]"), &format!("hio_{v}1(i)"));
        body = index_to_call(
            &index_to_call(&body, v, &format!("hio_{v}")),
            s,
            &format!("hio_{s}"),
        );
        loaders += &format!(
            "fn hio_{s}(i: u32) -> f32 {{ return {one}; }}\n\
             fn hio_{v}(j: u32) -> vec4<f32> {{ return {four}; }}\n\
             fn hio_{v}1(i: u32) -> f32 {{ return {one_v}; }}\n"
        );
    }
    let y1 = Fmt::of(io >> 8) == Fmt::F16Native;
    if native_out(io) || y1 {
        native = true;
        loaders += f16_rounding();
        loaders += NARROW;
    }
    for (slot, on) in [("y0", native_out(io)), ("y1", y1)] {
        if on {
            prelude = prelude.replace(
                &format!("var<storage, read_write> {slot}: array<f32>;"),
                &format!("var<storage, read_write> {slot}: array<f16>;"),
            );
            body = stores_to_calls(&body, slot, "hio_y0");
        }
    }
    let enable = if native { "enable f16;\n" } else { "" };
    format!("{enable}{prelude}\n{loaders}\n{body}")
}

/// The index of the `]` closing the `[` at `open`, if balanced.
fn closing(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'[' | b'(' => depth += 1,
            b']' | b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// The next use `name[e]` of `name` (a whole identifier, outside `//` comments) at or
/// after `at`: where it starts, its `[` and the matching `]` (`None` when unbalanced).
fn next_use(src: &str, name: &str, mut at: usize) -> Option<(usize, usize, Option<usize>)> {
    let bytes = src.as_bytes();
    let pat = format!("{name}[");
    while let Some(found) = src[at..].find(&pat) {
        let start = at + found;
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let line = src[..start].rfind('\n').map_or(0, |l| l + 1);
        if src[line..start].contains("//") || (start > 0 && ident(bytes[start - 1])) {
            at = start + pat.len();
            continue;
        }
        let open = start + name.len();
        return Some((start, open, closing(bytes, open)));
    }
    None
}

/// `src` with every store `name[e] = v;` turned into `name[e] = func(v);`, and every
/// other use `name[e]` into the read `f32(name[e])`.
fn stores_to_calls(src: &str, name: &str, func: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut at = 0;
    while let Some((start, open, Some(close))) = next_use(src, name, at) {
        out += &src[at..start];
        let index = stores_to_calls(&src[open + 1..close], name, func);
        let rest = &src[close + 1..];
        let trimmed = rest.trim_start();
        let is_store = trimmed.starts_with('=') && !trimmed.starts_with("==");
        match (is_store, rest.find(';')) {
            (true, Some(semi)) => {
                let eq = rest.len() - trimmed.len();
                let value = stores_to_calls(&rest[eq + 1..semi], name, func);
                out += &format!("{name}[{index}] = {func}({});", value.trim());
                at = close + 1 + semi + 1;
            }
            _ => {
                out += &format!("f32({name}[{index}])");
                at = close + 1;
            }
        }
    }
    out += &src[at..];
    out
}

/// `src` with every index expression `name[e]` replaced by the call `func(e)`.
fn index_to_call(src: &str, name: &str, func: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut at = 0;
    while let Some((start, open, Some(close))) = next_use(src, name, at) {
        out += &src[at..start];
        out += func;
        out.push('(');
        out += &index_to_call(&src[open + 1..close], name, func);
        out.push(')');
        at = close + 1;
    }
    out += &src[at..];
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_become_loader_calls() {
        let body = "let a = x0[i] + x0v[j >> 2u][1] + x10[i] + ax0[i] + x0[xi[x0[k]]];";
        let got = index_to_call(&index_to_call(body, "x0v", "L"), "x0", "S");
        assert_eq!(
            got,
            "let a = S(i) + L(j >> 2u)[1] + x10[i] + ax0[i] + S(xi[S(k)]);"
        );
    }

    #[test]
    fn the_output_rounding_is_the_pack_kernels() {
        let f = f16_rounding();
        assert!(
            f.starts_with("\nfn hf_f16_from_f32(b: u32) -> u32 {"),
            "{f}"
        );
        assert!(f.ends_with("\n}\n") && f.contains("return h;"), "{f}");
    }

    #[test]
    fn stores_round_and_reads_widen() {
        let body = "y0[i] = y0[i] + x0[i]; if (a == b) { y0[idx[j]] = v * 2.0; }\n\
                    // y0[i] = a comment; left alone\ny0[k] = 1.0;";
        assert_eq!(
            stores_to_calls(body, "y0", "H"),
            "y0[i] = H(f32(y0[i]) + x0[i]); if (a == b) { y0[idx[j]] = H(v * 2.0); }\n\
             // y0[i] = a comment; left alone\ny0[k] = H(1.0);"
        );
        let text = rewrite(
            "var<storage, read_write> y0: array<f32>;",
            "y0[0] = 1.0;",
            with_native_out(0),
        );
        assert!(text.starts_with("enable f16;") && text.contains("y0: array<f16>;"));
        assert!(describe(with_native_out(0)).contains("y0 f16*"));
    }

    #[test]
    fn formats_round_trip_through_the_io_word() {
        let io = io_of([Fmt::F32, Fmt::Bf16, Fmt::F16Native]);
        assert_eq!(io, 2 << 2 | 3 << 4);
        assert_eq!(Fmt::of(io >> 2), Fmt::Bf16);
        assert_eq!(Fmt::of(io >> 4), Fmt::F16Native);
        let text = rewrite(
            "var<storage, read> x2: array<f32>;\nvar<storage, read> x2v: array<vec4<f32>>;",
            "y0[i] = x2[i];",
            io,
        );
        assert!(text.starts_with("enable f16;"));
        assert!(text.contains("x2: array<f16>;") && text.contains("x2v: array<vec4<f16>>;"));
        assert!(text.contains("y0[i] = hio_x2(i);"));
    }
}
