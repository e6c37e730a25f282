#!/usr/bin/env bash
# Prepares the hardware-GPU check: wgrad's GPU against its CPU backend and PyTorch, on a
# machine with an NVIDIA GPU that has no Rust toolchain and no Vulkan loader installed.
# Run it on a Debian or Ubuntu development machine, from anywhere in a clone (it works
# from the repository root):
#
#   bash tools/device_check.sh
#
# It leaves two folders in the repository root (both kept out of `git status` through
# the clone's .git/info/exclude):
#   .gl/      Debian's Vulkan and EGL loader packages (libvulkan1, libegl1, libglvnd0,
#             libopengl0, libgl1, libglx0, libgles2), downloaded once with
#             `apt-get download` (skipped when .gl/ already holds them)
#   .devrun/  release builds of examples/gpu_vs_cpu and of the tests/gradcheck.rs test
#             binary, and a copy of tools/torch_reference.py
#
# Then copy .gl/ and .devrun/ to the GPU machine (same Debian/Ubuntu release, or one
# with a compatible glibc; its NVIDIA driver provides the Vulkan ICD, mounted under
# /usr/local/nvidia in NVIDIA's containers; python3 with torch for the PyTorch side) and
# run there, as root, from the folder that holds them; the results land in $OUT:
#
#   OUT=${OUT:-gpu-check}; mkdir -p $OUT; for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; n=/usr/local/nvidia/share; [ -f $n/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=$n/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=$n/glvnd/egl_vendor.d/10_nvidia.json; nvidia-smi -L; set -o pipefail; .devrun/gradcheck 2>&1 | tee $OUT/gradcheck.txt; .devrun/gpu_vs_cpu --require-hardware --json $OUT/wgrad.json 2>&1 | tee $OUT/wgrad.txt; python3 .devrun/torch_reference.py --device cuda --matmul 1024 4096 --json $OUT/torch_cuda.json 2>&1 | tee $OUT/torch.txt
#
# It takes a few minutes. Read gradcheck.txt first: the op registry's GPU-against-CPU
# comparison on real hardware; a mismatch there is a bug to fix before any speed figure
# counts. Then wgrad.txt (the adapter, median ms per training step on the GPU and the
# CPU backend, GFLOP/s of the 1024 and 4096 products, dispatches per step) beside
# torch.txt (PyTorch CUDA, f32 with TF32 off). `--require-hardware` makes gpu_vs_cpu
# fail rather than measure a software adapter. docs/benchmarks.md says where the table
# goes.
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep the two folders out of `git status` (a local setting of this clone only).
exclude=$(git rev-parse --git-path info/exclude 2>/dev/null || true)
if [ -n "$exclude" ]; then
  mkdir -p "$(dirname "$exclude")"
  for d in /.gl/ /.devrun/; do
    grep -qx "$d" "$exclude" 2>/dev/null || echo "$d" >> "$exclude"
  done
fi

# The loader packages, for amd64, with package lists of its own (the system's are not
# touched).
if [ ! -d .gl ] || ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  lists=$(mktemp -d); mkdir -p .gl "$lists/partial"
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
  apt-get $o update -qq
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  rm -rf "$lists"
fi

# The executables cargo reports building (the last one), from its JSON messages.
executables() {
  python3 -c "import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get('reason')=='compiler-artifact' and m.get('executable'): print(m['executable'])" | tail -1
}

rm -rf .devrun && mkdir -p .devrun
exe=$(cargo build --release --example gpu_vs_cpu --message-format=json | executables)
[ -n "$exe" ] && cp "$exe" .devrun/gpu_vs_cpu || { echo "could not build examples/gpu_vs_cpu" >&2; exit 1; }
# The op registry's GPU-against-CPU test: correctness on the hardware comes first.
exe=$(cargo test --release --no-run --test gradcheck --message-format=json | executables)
[ -n "$exe" ] && cp "$exe" .devrun/gradcheck || { echo "could not build tests/gradcheck.rs" >&2; exit 1; }
cp tools/torch_reference.py .devrun/
du -sh .gl .devrun
echo "ready: copy .gl and .devrun to the GPU machine and run the command at the top of tools/device_check.sh there"
