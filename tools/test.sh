#!/usr/bin/env bash
# Every test, on a fresh Debian or Ubuntu machine with Rust: first installs what the
# tests need and is missing, then runs the native suite with the `mpi` feature (CPU, the
# GPU tests on the best adapter found, the data-parallel tests under mpirun) and the
# browser tests (web/test.sh). .ci/run calls this same script.
#
#   bash tools/test.sh               set up what is missing, then run every test
#   bash tools/test.sh --setup-only  set up what is missing, run nothing
#
# What it needs, and how it gets each one when missing:
#   system packages (apt-get, as root or through `sudo`):
#     the Vulkan loader, lavapipe  mesa-vulkan-drivers libvulkan1 (lavapipe: a software
#                                  GPU, so the GPU tests always find an adapter)
#     Open MPI and libclang        libopenmpi-dev openmpi-bin libclang1-N
#                                  libclang-common-N-dev (mpi-sys generates its bindings)
#     Chromium and its driver      chromium chromium-driver (headless WebGPU)
#     Python 3                     python3 (the browser demo's end-to-end driver)
#     a C toolchain                build-essential
#   Rust pieces (no root needed):
#     the wasm32 target            rustup target add wasm32-unknown-unknown
#     wasm-bindgen-cli             the version of wasm-bindgen in Cargo.lock, with
#                                  `cargo install` into target/tools (about 5 minutes)
# Nothing already there is installed again. When something is missing and cannot be
# installed here (not root and no sudo, or no apt-get), it stops at once and names what
# is missing and the command that installs it. `cargo test --release` alone runs the
# native suite without MPI and the browser, for a machine set up by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

setup_only=0
case "${1:-}" in
    --setup-only) setup_only=1 ;;
    "") ;;
    *) echo "usage: bash tools/test.sh [--setup-only]" >&2; exit 2 ;;
esac

say() { echo "tools/test.sh: $*" >&2; }

# --- System packages -------------------------------------------------------------------

ldconfig_bin=$(command -v ldconfig || echo /sbin/ldconfig)
libs=$("$ldconfig_bin" -p 2>/dev/null || true)
have_lib() { grep -q "$1" <<<"$libs"; }

missing=()   # "what|packages", one per missing piece
missing_norec=()  # the same, for packages installed without their recommendations

# lavapipe (Mesa's software Vulkan) guarantees the GPU tests an adapter on any machine;
# a hardware driver's manifest alone is not proof of a working GPU (a container may have
# one and no device). With lavapipe installed, wgpu still prefers a hardware adapter.
# VK_ICD_FILENAMES / VK_DRIVER_FILES set by hand mean the user chose the driver.
lavapipe() {
    [ -n "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ] && return 0
    local d
    # WGRAD_SETUP_ICD_DIRS: where to look instead (tests/setup_script.rs).
    for d in ${WGRAD_SETUP_ICD_DIRS:-/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d}; do
        compgen -G "$d/lvp_icd*.json" >/dev/null && return 0
    done
    return 1
}
if ! have_lib 'libvulkan\.so\.1' || ! lavapipe; then
    missing+=("the Vulkan loader and lavapipe (a software GPU)|mesa-vulkan-drivers libvulkan1")
fi
command -v chromium >/dev/null || missing+=("chromium|chromium")
command -v chromedriver >/dev/null || missing+=("chromedriver|chromium-driver")
command -v python3 >/dev/null || missing+=("python3|python3")
command -v cc >/dev/null || missing+=("a C compiler (cc)|build-essential")
if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null; then
    missing_norec+=("Open MPI (mpicc, mpirun)|libopenmpi-dev openmpi-bin")
fi

# libclang: the shared library and clang's own headers (stddef.h), of one version.
clang_ok=0
for inc in /usr/lib/llvm-*/lib/clang/*/include/stddef.h; do
    [ -e "$inc" ] || continue
    v=${inc#/usr/lib/llvm-}; v=${v%%/*}
    if compgen -G "/usr/lib/llvm-$v/lib/libclang*.so*" >/dev/null || have_lib "libclang-$v\.so"; then
        clang_ok=1
    fi
done
if [ $clang_ok = 0 ]; then
    # The distribution's default LLVM version (14 on Debian 12).
    v=""
    if command -v apt-cache >/dev/null; then
        v=$(apt-cache depends libclang-dev 2>/dev/null |
            sed -n 's/.*Depends: libclang-\([0-9][0-9]*\)-dev.*/\1/p' | head -1)
    fi
    v=${v:-14}
    missing_norec+=("libclang with its headers|libclang1-$v libclang-common-$v-dev")
fi

packages() { local m; for m in "$@"; do printf '%s ' "${m#*|}"; done; }
names() { local m; for m in "$@"; do printf '  %s\n' "${m%%|*}"; done; }

if [ ${#missing[@]} -gt 0 ] || [ ${#missing_norec[@]} -gt 0 ]; then
    all=("${missing[@]}" "${missing_norec[@]}")
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    can=1
    command -v apt-get >/dev/null || can=0
    if [ -n "$sudo" ] && ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
        can=0
    fi
    if [ $can = 0 ]; then
        why="apt-get is not available"
        command -v apt-get >/dev/null && why="this is not root and sudo is not available without a password"
        {
            echo "tools/test.sh: missing, and cannot install here ($why):"
            names "${all[@]}"
            echo "Install them (as root) with:"
            echo "  apt-get update"
            [ ${#missing[@]} -gt 0 ] && echo "  apt-get install -y $(packages "${missing[@]}")"
            [ ${#missing_norec[@]} -gt 0 ] &&
                echo "  apt-get install -y --no-install-recommends $(packages "${missing_norec[@]}")"
            echo "then run this script again."
        } >&2
        exit 1
    fi
    say "installing what is missing:"
    names "${all[@]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update
    # shellcheck disable=SC2046
    [ ${#missing[@]} -gt 0 ] && $sudo apt-get install -y $(packages "${missing[@]}")
    # shellcheck disable=SC2046
    [ ${#missing_norec[@]} -gt 0 ] &&
        $sudo apt-get install -y --no-install-recommends $(packages "${missing_norec[@]}")
else
    say "system packages: all present"
fi

# --- Rust pieces -------------------------------------------------------------------------

if ! command -v rustup >/dev/null; then
    say "rustup is missing: the browser tests need the wasm32 target. Install Rust with rustup (https://rustup.rs), then run this script again."
    exit 1
fi
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "wasm32 target: present"
else
    say "installing the wasm32 target: rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
export PATH="$PWD/target/tools/bin:$PATH"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$want" ] &&
    command -v wasm-bindgen-test-runner >/dev/null; then
    say "wasm-bindgen-cli $want: present"
else
    # Without --locked: one of its locked dependencies is no longer on the registry.
    say "installing wasm-bindgen-cli $want into target/tools (about 5 minutes on 2 cores)"
    cargo install wasm-bindgen-cli --version "$want" --root target/tools
fi

[ $setup_only = 1 ] && { say "set-up done"; exit 0; }

# --- The tests ---------------------------------------------------------------------------

cargo test --release --features mpi
bash web/test.sh
