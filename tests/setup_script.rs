//! The README's test command, `bash tools/test.sh`, installs what the tests need; where
//! it cannot (no `apt-get`, or neither root nor `sudo`) it must stop at once and name
//! what is missing with the command that installs it. These tests run its set-up part
//! (`--setup-only`) with a `PATH` that hides `apt-get` and `chromedriver` (and, for the
//! second, `sudo`, with an `id` that says "not root").

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A folder of links to every program on this `PATH` except `hidden`, plus `extra`
/// scripts (name, body) of its own.
fn fake_path(dir: &Path, hidden: &[&str], extra: &[(&str, &str)]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // ldconfig lives in sbin, which a user's PATH may lack.
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name_str) = name.to_str() else {
                continue;
            };
            let link = bin.join(&name);
            if hidden.contains(&name_str) || link.symlink_metadata().is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), link).unwrap();
        }
    }
    for (name, body) in extra {
        let file = bin.join(name);
        let _ = std::fs::remove_file(&file);
        std::fs::write(&file, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// `tools/test.sh --setup-only` with `PATH` = `bin`, looking for Vulkan drivers in
/// `icd_dirs` (lavapipe's manifest where the machine has it, or an empty folder).
fn run_setup(bin: &Path, icd_dirs: &str) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("bash")
        .arg(root.join("tools/test.sh"))
        .arg("--setup-only")
        .env("PATH", bin)
        .env("WGRAD_SETUP_ICD_DIRS", icd_dirs)
        .env_remove("VK_ICD_FILENAMES")
        .env_remove("VK_DRIVER_FILES")
        .output()
        .expect("bash runs")
}

const SYSTEM_ICD_DIRS: &str = "/usr/share/vulkan/icd.d /etc/vulkan/icd.d";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-setup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn without_apt_get_it_names_what_is_missing_and_how_to_install_it() {
    let dir = scratch("no-apt");
    let bin = fake_path(&dir, &["apt-get", "chromedriver"], &[]);
    let out = run_setup(&bin, SYSTEM_ICD_DIRS);
    let err = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(
        err.contains("cannot install here (apt-get is not available)"),
        "{err}"
    );
    assert!(
        err.contains("  chromedriver\n"),
        "the missing tool is named:\n{err}"
    );
    assert!(
        err.contains("apt-get install -y ") && err.contains("chromium-driver"),
        "with the command that installs it:\n{err}"
    );
    assert!(!err.contains("set-up done"), "{err}");
    // It stopped before the Rust pieces (nothing was installed or checked after).
    assert!(!err.contains("wasm32 target"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "it ran nothing"
    );
}

#[test]
fn neither_root_nor_sudo_is_refused_with_the_commands() {
    let dir = scratch("no-root");
    // apt-get is there but this is not root and there is no sudo.
    let bin = fake_path(
        &dir,
        &["sudo", "chromedriver"],
        &[(
            "id",
            r#"if [ "$1" = "-u" ]; then echo 1000; else echo "uid=1000(user)"; fi"#,
        )],
    );
    let out = run_setup(&bin, SYSTEM_ICD_DIRS);
    let err = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(
        err.contains("this is not root and sudo is not available without a password"),
        "{err}"
    );
    assert!(err.contains("  chromedriver\n"), "{err}");
    assert!(err.contains("apt-get update"), "{err}");
    assert!(err.contains("chromium-driver"), "{err}");
}

#[test]
fn a_machine_without_lavapipe_is_told_to_install_mesa_vulkan_drivers() {
    let dir = scratch("no-vulkan");
    let empty = dir.join("icd.d");
    std::fs::create_dir_all(&empty).unwrap();
    let bin = fake_path(&dir, &["apt-get"], &[]);
    let out = run_setup(&bin, empty.to_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(
        err.contains("  the Vulkan loader and lavapipe (a software GPU)\n"),
        "{err}"
    );
    assert!(
        err.contains("apt-get install -y mesa-vulkan-drivers libvulkan1"),
        "{err}"
    );
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("tools/test.sh"))
        .arg("--frobnicate")
        .output()
        .expect("bash runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: bash tools/test.sh"));
}
