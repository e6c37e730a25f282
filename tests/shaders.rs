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
