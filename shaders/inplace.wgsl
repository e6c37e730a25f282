// In-place updates d = f(d, a, b) (PyTorch's add_, mul_, addcmul_, lerp_, ...), one
// thread per element of d (y0, read_write, contiguous). The updates' codes and
// `ip_apply` are generated from src/backend/inplace.rs and placed before this file.
// Parameters: `ip` (InplaceParams, src/backend/gpu/inplace.rs): n elements, the code,
// the scalar, and the collapsed shape of d with a's and b's strides over it (0 on
// broadcast dimensions; rank 0: read at d's own index). An operand that is d's own
// storage cannot be bound beside it (WebGPU refuses a buffer bound read-write and
// read-only in one dispatch): it has d's layout, so the kernels read it as y0[i], the
// value before the update. `inplace0_step` binds no operand, `inplace1_step` one (x0: a when
// ip.ext is 1, b when it is 2), `inplace2_step` two (x0 = a, x1 = b).

fn ip_ia(i: u32) -> u32 {
    if (ip.rank == 0u) { return i; }
    return ip_sa_offset(i);
}
fn ip_ib(i: u32) -> u32 {
    if (ip.rank == 0u) { return i; }
    return ip_sb_offset(i);
}

@compute @workgroup_size(256)
fn inplace0_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= ip.n) { return; }
    let d = y0[i];
    y0[i] = ip_apply(ip.code, d, d, d, ip.s);
}

@compute @workgroup_size(256)
fn inplace1_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= ip.n) { return; }
    let d = y0[i];
    var a = d;
    var b = d;
    if (ip.ext == 1u) {
        a = x0[ip_ia(i)];
    } else {
        b = x0[ip_ib(i)];
    }
    y0[i] = ip_apply(ip.code, d, a, b, ip.s);
}

@compute @workgroup_size(256)
fn inplace2_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i >= ip.n) { return; }
    y0[i] = ip_apply(ip.code, y0[i], x0[ip_ia(i)], x1[ip_ib(i)], ip.s);
}
