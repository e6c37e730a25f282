//! `#[derive(Module)]` for wgrad: implements `wgrad::nn::Module` from a struct's fields,
//! so that no parameter or sub-module is ever left out of `children()` by hand.
//!
//! Use it through wgrad (`use wgrad::nn::Module;` brings both the trait and the derive);
//! the rules for each field are documented on the re-export, `wgrad::nn::Module`.
//!
//! Types are syntactic in a macro, so fields are sorted by how their type is written:
//!
//! | field | becomes |
//! |---|---|
//! | `#[module(skip)]` | nothing |
//! | `Parameter`, `Option<Parameter>` | a parameter named after the field |
//! | `Buffer`, `Option<Buffer>` | a buffer named after the field |
//! | `TrainFlag` | set by `train()` / `eval()` |
//! | `bool`, `char`, numbers, `String`, `&str` (and `Vec`, `Option`, `Box`, arrays, tuples of these) | nothing (plain settings) |
//! | `Vec<T>` | children `field.0`, `field.1`, ... (PyTorch's `ModuleList`) |
//! | `Option<T>` | a child `field` when `Some` |
//! | anything else | a child `field`; its type must implement `Module` |
//!
//! `forward` calls the struct's inherent `fn forward(&self, x: &Tensor) -> Result<Tensor>`.
//! A unit struct (`struct ReLU;`) derives a module without state, and so does a tuple
//! struct whose fields are all plain settings or skipped (`struct LeakyReLU(f32);`);
//! a tuple field that is state or a child is an error, as it has no name to give.
//!
//! Two struct-level options, for layers whose behaviour the fields do not say:
//!
//! - `#[module(forward = "name")]`: the derived `forward` calls the inherent method
//!   `name` instead (for a struct whose inherent `forward` returns several tensors).
//! - `#[module(hooks(fusable_activation, forward_with_activation))]`: the derived impl
//!   also defines these `Module` methods, each calling the struct's inherent method of
//!   the same name and signature (an activation that a layer before it may fuse; a
//!   layer that fuses one). A hook without its inherent method is a compile error naming
//!   the trait `derive_Module_needs_an_inherent_fn_<hook>_on_<Name>`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, Data, DeriveInput, Fields, GenericArgument, PathArguments, Type, TypePath,
};

/// Implements `wgrad::nn::Module` for a struct with named fields. See the documentation
/// of `wgrad::nn::Module` (the derive is re-exported there) for the rules.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// What a field contributes to the module.
enum Kind {
    /// Ignored: `#[module(skip)]` or a plain setting.
    Nothing,
    Parameter,
    OptionalParameter,
    Buffer,
    OptionalBuffer,
    TrainFlag,
    /// A sub-module, or a `Vec` / `Option` (nested as deep as wanted) of them.
    Child,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let name = &input.ident;
    let options = struct_options(input)?;
    let empty: syn::punctuated::Punctuated<syn::Field, syn::Token![,]> =
        syn::punctuated::Punctuated::new();
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(f) => &f.named,
            Fields::Unit => &empty,
            Fields::Unnamed(f) => {
                // Without names there is nothing to call a parameter or a child: a tuple
                // struct derives only when its fields are plain settings (or skipped).
                for field in &f.unnamed {
                    if !matches!(classify(field)?, Kind::Nothing) {
                        return Err(syn::Error::new(
                            field.ty.span(),
                            "#[derive(Module)] on a tuple struct takes plain settings only \
                             (numbers, `bool`, `String`, ...) or #[module(skip)] fields: a \
                             parameter, buffer, train flag or sub-module needs a named \
                             field, whose name it takes",
                        ));
                    }
                }
                &empty
            }
        },
        _ => {
            return Err(syn::Error::new(
                name.span(),
                "#[derive(Module)] works on structs only",
            ))
        }
    };

    let mut params = Vec::new();
    let mut buffers = Vec::new();
    let mut flags = Vec::new();
    let mut children = Vec::new();
    for field in fields {
        let ident = field.ident.as_ref().expect("named fields have names");
        let label = ident.unraw().to_string();
        let kind = classify(field)?;
        match kind {
            Kind::Nothing => {}
            Kind::Parameter => params.push(quote! { __out.push((#label, &self.#ident)); }),
            Kind::OptionalParameter => params.push(quote! {
                if let ::core::option::Option::Some(__p) = &self.#ident {
                    __out.push((#label, __p));
                }
            }),
            Kind::Buffer => buffers.push(quote! { __out.push((#label, &self.#ident)); }),
            Kind::OptionalBuffer => buffers.push(quote! {
                if let ::core::option::Option::Some(__b) = &self.#ident {
                    __out.push((#label, __b));
                }
            }),
            Kind::TrainFlag => flags.push(quote! { self.#ident.set(__training); }),
            Kind::Child => children.push(child_code(
                &field.ty,
                quote! { ::std::string::String::from(#label) },
                quote! { &self.#ident },
                0,
            )),
        }
    }

    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let forward = match &options.forward {
        Some(method) => quote! {
            /// Calls the struct's own (inherent) method named in `#[module(forward = ...)]`.
            fn forward(&self, __x: &::wgrad::Tensor) -> ::wgrad::Result<::wgrad::Tensor> {
                Self::#method(self, __x)
            }
        },
        None => delegate(name, &format_ident!("forward")),
    };
    let hooks = options.hooks.iter().map(|hook| delegate(name, hook));
    let local_parameters = (!params.is_empty()).then(|| {
        quote! {
            fn local_parameters(&self) -> ::std::vec::Vec<(&'static str, &::wgrad::nn::Parameter)> {
                let mut __out = ::std::vec::Vec::new();
                #(#params)*
                __out
            }
        }
    });
    let local_buffers = (!buffers.is_empty()).then(|| {
        quote! {
            fn local_buffers(&self) -> ::std::vec::Vec<(&'static str, &::wgrad::nn::Buffer)> {
                let mut __out = ::std::vec::Vec::new();
                #(#buffers)*
                __out
            }
        }
    });
    let children_fn = (!children.is_empty()).then(|| {
        quote! {
            fn children(&self) -> ::std::vec::Vec<(::std::string::String, &dyn ::wgrad::nn::Module)> {
                let mut __out: ::std::vec::Vec<(::std::string::String, &dyn ::wgrad::nn::Module)> =
                    ::std::vec::Vec::new();
                #(#children)*
                __out
            }
        }
    });
    let set_local_training = (!flags.is_empty()).then(|| {
        quote! {
            fn set_local_training(&self, __training: bool) {
                #(#flags)*
            }
        }
    });
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::wgrad::nn::Module for #name #ty_generics #where_clause {
            #forward
            #(#hooks)*
            #local_parameters
            #local_buffers
            #children_fn
            #set_local_training
        }
    })
}

/// The hooks that `#[module(hooks(...))]` accepts: the `Module` methods that say how a
/// layer computes rather than what it holds.
const HOOKS: &[&str] = &["fusable_activation", "forward_with_activation"];

/// The struct-level `#[module(...)]` options.
#[derive(Default)]
struct StructOptions {
    /// `forward = "name"`: the inherent method the derived `forward` calls.
    forward: Option<syn::Ident>,
    /// `hooks(...)`: `Module` methods delegated to inherent methods of the same name.
    hooks: Vec<syn::Ident>,
}

fn struct_options(input: &DeriveInput) -> syn::Result<StructOptions> {
    let mut options = StructOptions::default();
    for attr in &input.attrs {
        if !attr.path().is_ident("module") {
            continue;
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("forward") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                options.forward = Some(lit.parse()?);
                Ok(())
            } else if meta.path.is_ident("hooks") {
                meta.parse_nested_meta(|hook| {
                    let ident = hook.path.get_ident().cloned();
                    match ident {
                        Some(i) if HOOKS.iter().any(|h| i == h) => {
                            if !options.hooks.contains(&i) {
                                options.hooks.push(i);
                            }
                            Ok(())
                        }
                        _ => Err(hook.error(format!(
                            "unknown hook: #[module(hooks(...))] takes {}",
                            HOOKS.join(", ")
                        ))),
                    }
                })
            } else {
                Err(meta.error(
                    "unknown #[module(...)] option on a struct: the options are \
                     forward = \"method\" and hooks(...)",
                ))
            }
        })?;
    }
    Ok(options)
}

/// The `Module` method `method` calling the struct's inherent method of that name.
/// `Self::method` finds an inherent method before any trait's; without one, the two
/// traits in scope here (`Module` and the marker below, implemented for every type) make
/// the call ambiguous, a compile error whose notes name the marker trait, which says
/// what is missing.
fn delegate(name: &syn::Ident, method: &syn::Ident) -> TokenStream {
    let marker = format_ident!(
        "derive_Module_needs_an_inherent_fn_{}_on_{}",
        method,
        name.unraw(),
        span = name.span()
    );
    let (signature, args, doc) = match method.to_string().as_str() {
        "forward" => (
            quote! { fn forward(&self, __x: &::wgrad::Tensor) -> ::wgrad::Result<::wgrad::Tensor> },
            quote! { __x },
            "Calls the struct's own (inherent) `forward`.",
        ),
        "fusable_activation" => (
            quote! { fn fusable_activation(&self) -> ::core::option::Option<::wgrad::nn::Act> },
            quote! {},
            "Calls the struct's own (inherent) `fusable_activation`.",
        ),
        _ => (
            quote! {
                fn forward_with_activation(
                    &self,
                    __x: &::wgrad::Tensor,
                    __act: ::wgrad::nn::Act,
                ) -> ::core::option::Option<::wgrad::Result<::wgrad::Tensor>>
            },
            quote! { __x, __act },
            "Calls the struct's own (inherent) `forward_with_activation`.",
        ),
    };
    quote! {
        #[doc = #doc]
        #signature {
            #[allow(unused_imports)]
            use ::wgrad::nn::Module as _;
            #[allow(non_camel_case_types, dead_code)]
            trait #marker {
                fn #method(&self) {}
            }
            impl<T: ?::core::marker::Sized> #marker for T {}
            Self::#method(self, #args)
        }
    }
}

/// The statements that push the child (or children) of type `ty`, reached as the
/// reference `value`, named `name` (a `String` expression), onto `__out`.
fn child_code(ty: &Type, name: TokenStream, value: TokenStream, depth: usize) -> TokenStream {
    let v = format_ident!("__v{depth}");
    if let Some(inner) = generic_of(ty, "Vec") {
        let i = format_ident!("__i{depth}");
        let n = format_ident!("__n{depth}");
        let body = child_code(inner, quote! { #n }, quote! { #v }, depth + 1);
        return quote! {
            for (#i, #v) in (#value).iter().enumerate() {
                let #n = ::std::format!("{}.{}", #name, #i);
                #body
            }
        };
    }
    if let Some(inner) = generic_of(ty, "Option") {
        let body = child_code(inner, name, quote! { #v }, depth + 1);
        return quote! {
            if let ::core::option::Option::Some(#v) = (#value).as_ref() {
                #body
            }
        };
    }
    // The span of the field's type: a type that is not a module is reported there.
    quote_spanned! {ty.span()=>
        __out.push((#name, ::wgrad::nn::__derive::child::<#ty>(#value)));
    }
}

fn classify(field: &syn::Field) -> syn::Result<Kind> {
    let mut skip = false;
    for attr in &field.attrs {
        if attr.path().is_ident("module") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    skip = true;
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown #[module(...)] option on a field: the one option is \
                         #[module(skip)] (forward = ... and hooks(...) go on the struct)",
                    ))
                }
            })?;
        }
    }
    if skip {
        return Ok(Kind::Nothing);
    }
    let ty = &field.ty;
    if is_named(ty, "Parameter") {
        return Ok(Kind::Parameter);
    }
    if is_named(ty, "Buffer") {
        return Ok(Kind::Buffer);
    }
    if is_named(ty, "TrainFlag") {
        return Ok(Kind::TrainFlag);
    }
    if let Some(inner) = generic_of(ty, "Option") {
        if is_named(inner, "Parameter") {
            return Ok(Kind::OptionalParameter);
        }
        if is_named(inner, "Buffer") {
            return Ok(Kind::OptionalBuffer);
        }
    }
    if let Some(bad) = misplaced_state(ty, false) {
        let allowed = if bad == "TrainFlag" {
            "only as a field's own type"
        } else {
            "only as a field's own type or in an `Option`"
        };
        return Err(syn::Error::new(
            ty.span(),
            format!(
                "#[derive(Module)] supports `{bad}` {allowed}: parameters and buffers are \
                 named after their fields. Implement `Module` by hand for a list of them, \
                 or mark the field #[module(skip)]"
            ),
        ));
    }
    if is_plain(ty) {
        return Ok(Kind::Nothing);
    }
    Ok(Kind::Child)
}

/// The last segment of `ty`'s path, when `ty` is a path type.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(TypePath { qself: None, path }) => path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

/// True when `ty` is written `name` (or `some::path::name`) without arguments.
fn is_named(ty: &Type, name: &str) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == name && s.arguments.is_none())
}

/// `T` when `ty` is written `outer<T>` (or `some::path::outer<T>`).
fn generic_of<'a>(ty: &'a Type, outer: &str) -> Option<&'a Type> {
    let seg = last_segment(ty)?;
    if seg.ident != outer {
        return None;
    }
    match &seg.arguments {
        PathArguments::AngleBracketed(a) if a.args.len() == 1 => match a.args.first() {
            Some(GenericArgument::Type(t)) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// A `Parameter`, `Buffer` or `TrainFlag` nested where the derive cannot name it (a
/// `Vec<Parameter>`, an `Option<Vec<Buffer>>`): `nested` is false at the field's own level.
fn misplaced_state(ty: &Type, nested: bool) -> Option<&'static str> {
    for name in ["Parameter", "Buffer", "TrainFlag"] {
        if nested && is_named(ty, name) {
            return Some(name);
        }
    }
    ["Vec", "Option", "Box"]
        .iter()
        .find_map(|outer| generic_of(ty, outer))
        .and_then(|inner| misplaced_state(inner, true))
}

/// Plain settings that a derived module ignores without `#[module(skip)]`: `bool`,
/// `char`, the number types, `String`, `str`, and `Vec`, `Option`, `Box`, arrays,
/// slices, tuples and references of them.
fn is_plain(ty: &Type) -> bool {
    const PLAIN: &[&str] = &[
        "bool", "char", "f32", "f64", "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16",
        "u32", "u64", "u128", "usize", "String", "str",
    ];
    match ty {
        Type::Array(a) => is_plain(&a.elem),
        Type::Slice(s) => is_plain(&s.elem),
        Type::Reference(r) => is_plain(&r.elem),
        Type::Tuple(t) => t.elems.iter().all(is_plain),
        Type::Group(g) => is_plain(&g.elem),
        Type::Paren(p) => is_plain(&p.elem),
        _ => {
            if PLAIN.iter().any(|p| is_named(ty, p)) {
                return true;
            }
            ["Vec", "Option", "Box"]
                .iter()
                .find_map(|outer| generic_of(ty, outer))
                .is_some_and(is_plain)
        }
    }
}
