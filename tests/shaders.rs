//! Every shader file, with the shared prelude, parses and validates with naga, so a WGSL
//! typo fails `cargo test` instead of a user's program.

#[test]
fn every_shader_parses_and_validates() {
    let sources = wgrad::ops::shader_sources();
    assert!(sources.len() >= 8);
    for file in sources {
        let (name, src) = (file.name, file.source);
        let full = format!("{}\n{}", wgrad::backend::gpu::PRELUDE, src);
        let module = naga::front::wgsl::parse_str(&full)
            .unwrap_or_else(|e| panic!("{name}.wgsl does not parse:\n{}", e.emit_to_string(&full)));
        // Only the files marked as using subgroups may use them.
        let capabilities = if file.subgroups {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        let mut validator =
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities);
        if file.subgroups {
            validator
                .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
                .subgroup_operations(naga::valid::SubgroupOperationSet::all());
        }
        validator.validate(&module).unwrap_or_else(|e| {
            panic!(
                "{name}.wgsl does not validate:\n{}",
                e.emit_to_string(&full)
            )
        });
        assert!(
            module.entry_points.iter().all(|e| ["_fwd", "_bwd", "_step"]
                .iter()
                .any(|s| e.name.ends_with(s))),
            "{name}.wgsl: entry points are named <op>_fwd / <op>_bwd (or <optimizer>_step)"
        );
    }
}

/// The WGSL name of a naga type, for the parameter structs' field types.
fn wgsl_type(module: &naga::Module, ty: naga::Handle<naga::Type>) -> String {
    match &module.types[ty].inner {
        naga::TypeInner::Scalar(s) => match (s.kind, s.width) {
            (naga::ScalarKind::Uint, 4) => "u32".into(),
            (naga::ScalarKind::Float, 4) => "f32".into(),
            other => format!("{other:?}"),
        },
        naga::TypeInner::Array {
            base,
            size: naga::ArraySize::Constant(n),
            ..
        } => match &module.types[*base].inner {
            naga::TypeInner::Vector {
                size: naga::VectorSize::Quad,
                scalar,
            } if scalar.kind == naga::ScalarKind::Uint => format!("array<vec4<u32>, {n}>"),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    }
}

/// Every kernel parameter struct is laid out in WGSL (naga's uniform layout) exactly as
/// in Rust: the same fields in the same order, of the same types, at the same offsets,
/// and the same size.
#[test]
fn every_parameter_struct_has_the_rust_layout_in_wgsl() {
    let mut checked = 0;
    for file in wgrad::ops::shader_sources() {
        let full = format!("{}\n{}", wgrad::backend::gpu::PRELUDE, file.source);
        let module = naga::front::wgsl::parse_str(&full).unwrap();
        for p in &file.params {
            let (_, ty) = module
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some(p.name))
                .unwrap_or_else(|| panic!("{}: no WGSL struct {}", file.name, p.name));
            let naga::TypeInner::Struct { members, span } = &ty.inner else {
                panic!("{}: {} is not a struct", file.name, p.name)
            };
            let wgsl: Vec<(String, String, usize)> = members
                .iter()
                .map(|m| {
                    (
                        m.name.clone().unwrap_or_default(),
                        wgsl_type(&module, m.ty),
                        m.offset as usize,
                    )
                })
                .collect();
            let rust: Vec<(String, String, usize)> = p
                .fields
                .iter()
                .map(|&(n, t, o)| (n.to_string(), t.to_string(), o))
                .collect();
            assert_eq!(wgsl, rust, "{}: {} differs", file.name, p.name);
            assert_eq!(*span as usize, p.size, "{}: {}'s size", file.name, p.name);
            assert!(
                p.size <= 256,
                "{}: {} is over the 256-byte block",
                file.name,
                p.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} parameter structs");
}

/// Every kernel constant names an entry point of its file, and every entry point of
/// every file has a kernel constant; each entry point reads the uniform variable of the
/// parameter struct its constant names, and no other.
#[test]
fn every_entry_point_has_a_kernel_constant_and_its_parameter_struct() {
    for file in wgrad::ops::shader_sources() {
        let full = format!("{}\n{}", wgrad::backend::gpu::PRELUDE, file.source);
        let module = naga::front::wgsl::parse_str(&full).unwrap();
        let caps = if file.subgroups {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        if file.subgroups {
            validator
                .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
                .subgroup_operations(naga::valid::SubgroupOperationSet::all());
        }
        let info = validator.validate(&module).unwrap();
        let mut wgsl: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        let mut rust: Vec<&str> = file.kernels.iter().map(|k| k.entry).collect();
        wgsl.sort_unstable();
        rust.sort_unstable();
        rust.dedup();
        assert_eq!(
            rust, wgsl,
            "{}: kernel constants vs entry points",
            file.name
        );
        for k in &file.kernels {
            let (index, _) = module
                .entry_points
                .iter()
                .enumerate()
                .find(|(_, e)| e.name == k.entry)
                .unwrap();
            let uses = info.get_entry_point(index);
            let used: Vec<&str> = module
                .global_variables
                .iter()
                .filter(|(h, g)| g.space == naga::AddressSpace::Uniform && !uses[*h].is_empty())
                .filter_map(|(_, g)| {
                    let var = g.name.as_deref()?;
                    file.params.iter().find(|p| p.var == var).map(|p| p.name)
                })
                .collect();
            assert!(
                used.iter().all(|&p| p == k.params),
                "{}::{} reads {used:?} but its launches pass {}",
                file.name,
                k.entry,
                k.params
            );
        }
    }
}

/// Chromium's Tint rejects a constant expression whose value is infinite or NaN
/// ("value inf cannot be represented as 'f32'") where naga accepts it, so no shader may
/// bitcast a literal with an all-ones exponent: `nan_f()` and `inf_f()` in the prelude
/// bitcast a variable's bits instead.
#[test]
fn no_shader_builds_an_infinity_or_nan_from_a_constant() {
    let prelude = wgrad::backend::gpu::PRELUDE.to_string();
    let files = wgrad::ops::shader_sources()
        .into_iter()
        .map(|f| (f.name, f.source));
    for (name, src) in std::iter::once(("prelude", prelude)).chain(files) {
        let compact: String = src.chars().filter(|c| !c.is_whitespace()).collect();
        for (at, _) in compact.match_indices("bitcast<f32>(0x") {
            let digits: String = compact[at + "bitcast<f32>(0x".len()..]
                .chars()
                .take_while(|c| c.is_ascii_hexdigit())
                .collect();
            let bits = u32::from_str_radix(&digits, 16).unwrap_or(0);
            assert!(
                bits & 0x7f80_0000 != 0x7f80_0000,
                "{name}.wgsl bitcasts the constant 0x{digits} (infinite or NaN): Tint rejects it"
            );
        }
    }
}
