//! Typed kernel parameters: each kernel's parameter block is a `#[repr(C)]`
//! [`bytemuck::Pod`] struct in Rust and a WGSL struct of the same fields, both generated
//! from one definition by the `params!` macro.
//!
//! The block is bound as a uniform buffer (binding 0, a 256-byte window of the parameter
//! arena). Uniform layout puts arrays on 16-byte strides, so an array field is a
//! [`Words`] (`array<vec4<u32>, K>` in WGSL, read through a generated accessor
//! `<var>_<field>(i)`); Rust's `repr(C)` with [`Words`]' 16-byte alignment gives the same
//! offsets, and a struct whose fields would need padding does not compile (`Pod`
//! forbids padding: add an explicit `_pad` field). `tests/shaders.rs` checks every
//! struct's fields (names, types, offsets) against naga's layout of the WGSL.
//!
//! In WGSL each struct is the uniform variable the macro names (`var<uniform> <var>:
//! <Struct>`, all at binding 0: each entry point uses one of them). A field declared
//! `strides: Dims @ (shape, rank)` also gets `<var>_<strides>_offset(i)`: the offset of
//! element `i` of a contiguous tensor of shape `shape[..rank]` in a buffer with those
//! strides.

use bytemuck::{Pod, Zeroable};

/// `K` groups of four `u32` words, 16-byte aligned: an array in a parameter block
/// (`array<vec4<u32>, K>` in WGSL).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Words<const K: usize>(pub [[u32; 4]; K]);

// SAFETY: an array of `u32` with the alignment of its 16-byte rows: no padding, every
// bit pattern valid.
unsafe impl<const K: usize> Zeroable for Words<K> {}
// SAFETY: as above; `Words` is `Copy` and `'static`.
unsafe impl<const K: usize> Pod for Words<K> {}

impl<const K: usize> Default for Words<K> {
    fn default() -> Self {
        Words([[0; 4]; K])
    }
}

impl<const K: usize> Words<K> {
    /// The words `v` (as `u32`), zero past its end.
    ///
    /// # Panics
    /// When `v` has more than `4 K` values (shapes are checked against the rank limit
    /// before any launch).
    pub fn of(v: &[usize]) -> Self {
        assert!(v.len() <= 4 * K, "{} words do not fit {}", v.len(), 4 * K);
        let mut w = Self::default();
        for (i, &x) in v.iter().enumerate() {
            w.0[i / 4][i % 4] = x as u32;
        }
        w
    }

    /// Word `i`.
    #[cfg(test)]
    pub fn get(&self, i: usize) -> u32 {
        self.0[i / 4][i % 4]
    }

    /// Sets word `i`.
    pub fn set(&mut self, i: usize, v: u32) {
        self.0[i / 4][i % 4] = v;
    }
}

/// A shape or strides of up to eight dimensions (the rank limit is six).
pub type Dims = Words<2>;

/// What every parameter struct knows of itself, for the shader files that use it and
/// for the layout test.
#[derive(Debug)]
pub struct ParamsInfo {
    /// The struct's name, the same in Rust and WGSL.
    pub name: &'static str,
    /// The uniform variable's name in WGSL.
    pub var: &'static str,
    /// The WGSL: the struct, its uniform variable and its accessors.
    pub wgsl: &'static str,
    /// Each field's name, WGSL type and byte offset in the Rust struct.
    pub fields: &'static [(&'static str, &'static str, usize)],
    /// The Rust struct's size in bytes.
    pub size: usize,
}

/// A kernel parameter struct.
pub trait Params: Pod {
    /// Its layout and WGSL.
    const INFO: ParamsInfo;
}

/// The WGSL type of a parameter field.
macro_rules! wgsl_type {
    (u32) => {
        "u32"
    };
    (f32) => {
        "f32"
    };
    (Dims) => {
        "array<vec4<u32>, 2>"
    };
    (Words4) => {
        "array<vec4<u32>, 1>"
    };
    (Table) => {
        "array<vec4<u32>, 13>"
    };
}

/// The WGSL accessor of an array field (nothing for a scalar).
macro_rules! wgsl_accessor {
    ($var:ident, $f:ident, u32) => {
        ""
    };
    ($var:ident, $f:ident, f32) => {
        ""
    };
    ($var:ident, $f:ident, $t:ident) => {
        concat!(
            "fn ",
            stringify!($var),
            "_",
            stringify!($f),
            "(i: u32) -> u32 { return ",
            stringify!($var),
            ".",
            stringify!($f),
            "[i >> 2u][i & 3u]; }\n"
        )
    };
}

/// The WGSL strided-offset helper of a strides field declared `@ (shape, rank)`.
macro_rules! wgsl_offset {
    ($var:ident, $f:ident) => {
        ""
    };
    ($var:ident, $f:ident, $shape:ident, $rank:ident) => {
        concat!(
            "fn ",
            stringify!($var),
            "_",
            stringify!($f),
            "_offset(i: u32) -> u32 {\n    var rem = i;\n    var off = 0u;\n    \
             for (var d = i32(",
            stringify!($var),
            ".",
            stringify!($rank),
            ") - 1; d >= 0; d = d - 1) {\n        let s = ",
            stringify!($var),
            "_",
            stringify!($shape),
            "(u32(d));\n        off = off + (rem % s) * ",
            stringify!($var),
            "_",
            stringify!($f),
            "(u32(d));\n        rem = rem / s;\n    }\n    return off;\n}\n"
        )
    };
}

/// Defines kernel parameter structs: the Rust struct (`#[repr(C)]`, `Pod`, `Default`)
/// and its [`Params::INFO`] with the WGSL struct, its uniform variable `var` and the
/// accessors of its array fields. Field types: `u32`, `f32`, [`Dims`], `Words4`.
///
/// ```text
/// params! {
///     /// Broadcast binary ops.
///     pub(crate) struct BinaryParams as bp {
///         /// Output elements.
///         n: u32,
///         rank: u32,
///         code: u32,
///         _pad: u32,
///         shape: Dims,
///         /// `bp_sa_offset(i)`: a's offset of output element i.
///         sa: Dims @ (shape, rank),
///         sb: Dims @ (shape, rank),
///     }
/// }
/// ```
macro_rules! params {
    ($(
        $(#[$doc:meta])*
        $vis:vis struct $name:ident as $var:ident {
            $(
                $(#[$fdoc:meta])*
                $f:ident : $t:ident $(@ ($shape:ident, $rank:ident))?
            ),* $(,)?
        }
    )*) => {$(
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $(
                $(#[$fdoc])*
                pub $f: $t,
            )*
        }

        impl $crate::backend::gpu::params::Params for $name {
            const INFO: $crate::backend::gpu::params::ParamsInfo =
                $crate::backend::gpu::params::ParamsInfo {
                    name: stringify!($name),
                    var: stringify!($var),
                    wgsl: concat!(
                        "struct ", stringify!($name), " {\n",
                        $("    ", stringify!($f), ": ", $crate::backend::gpu::params::wgsl_type!($t), ",\n",)*
                        "}\n",
                        "@group(0) @binding(0) var<uniform> ", stringify!($var), ": ",
                        stringify!($name), ";\n",
                        $($crate::backend::gpu::params::wgsl_accessor!($var, $f, $t),)*
                        $($crate::backend::gpu::params::wgsl_offset!($var, $f $(, $shape, $rank)?),)*
                    ),
                    fields: &[$((
                        stringify!($f),
                        $crate::backend::gpu::params::wgsl_type!($t),
                        std::mem::offset_of!($name, $f),
                    )),*],
                    size: std::mem::size_of::<$name>(),
                };
        }
    )*};
}
pub(crate) use {params, wgsl_accessor, wgsl_offset, wgsl_type};

/// Four words.
pub type Words4 = Words<1>;

/// A multi-tensor kernel's table: per tensor its element count and first workgroup (26
/// tensors), after a header of at most 12 words.
pub type Table = Words<13>;

#[cfg(test)]
mod tests {
    use super::*;

    params! {
        /// A test struct.
        struct Example as ex {
            n: u32,
            scale: f32,
            rank: u32,
            _pad: u32,
            shape: Dims,
            strides: Dims @ (shape, rank),
        }
    }

    #[test]
    fn the_rust_layout_is_the_uniform_layout() {
        let info = Example::INFO;
        let offsets: Vec<usize> = info.fields.iter().map(|f| f.2).collect();
        assert_eq!(offsets, [0, 4, 8, 12, 16, 48]);
        assert_eq!(info.size, 80);
        assert!(info.wgsl.contains("strides: array<vec4<u32>, 2>,"));
        assert!(info.wgsl.contains("fn ex_strides_offset(i: u32) -> u32"));
        assert!(info
            .wgsl
            .contains("@group(0) @binding(0) var<uniform> ex: Example;"));
        let p = Example {
            shape: Dims::of(&[2, 3, 4]),
            ..Default::default()
        };
        assert_eq!(p.shape.get(2), 4);
        assert_eq!(bytemuck::bytes_of(&p).len(), 80);
    }
}
