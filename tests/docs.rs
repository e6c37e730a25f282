//! The documents a user reads stay readable and self-contained: the README is short,
//! nothing points to files outside the repository, and the user docs speak of the
//! library, not of how it was made.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` whose name ends with one of `exts`, outside build outputs.
fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.ends_with("target") || path.ends_with("web/pkg") {
                continue;
            }
            files(&path, exts, out);
        } else if exts.iter().any(|e| path.to_string_lossy().ends_with(e)) {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (file, line number, line) of every line of `paths` for which `bad` is true.
fn offending(paths: &[PathBuf], bad: impl Fn(&str) -> bool) -> Vec<String> {
    let mut hits = Vec::new();
    for path in paths {
        for (i, line) in read(path).lines().enumerate() {
            if bad(line) {
                let rel = path.strip_prefix(root()).unwrap_or(path);
                hits.push(format!("{}:{}: {}", rel.display(), i + 1, line.trim()));
            }
        }
    }
    hits
}

fn user_docs() -> Vec<PathBuf> {
    let mut paths = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    files(&root().join("docs"), &[".md"], &mut paths);
    paths
}

#[test]
fn the_readme_is_at_most_250_lines() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; details belong in docs/"
    );
}

#[test]
fn nothing_points_outside_the_repository() {
    let mut paths = user_docs();
    paths.push(root().join("CHANGELOG.md"));
    for dir in ["src", "examples", "benches", "tests", "tools", "web", ".ci"] {
        files(
            &root().join(dir),
            &[".rs", ".md", ".sh", ".py", ".toml", ".js", ".html", "run"],
            &mut paths,
        );
    }
    // This file names the pattern it looks for.
    paths.retain(|p| !p.ends_with("tests/docs.rs"));
    let needle = ["..", "/shared"].concat();
    let hits = offending(&paths, |line| line.contains(&needle));
    assert!(
        hits.is_empty(),
        "a clone has no {needle}; bring what is needed into the repository:\n{}",
        hits.join("\n")
    );
}

#[test]
fn user_docs_have_no_process_words() {
    let mut paths = user_docs();
    paths.push(root().join("CHANGELOG.md"));
    let hits = offending(&paths, |line| {
        let lower = line.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        words.contains(&"session")
            || words.contains(&"sessions")
            || words
                .windows(2)
                .any(|w| w[0] == "issue" && w[1].chars().all(|c| c.is_ascii_digit()))
    });
    assert!(
        hits.is_empty(),
        "user docs describe the library, not the work that made it (no \"issue N\", no \"session\"):\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_docs_the_readme_links_exist() {
    let readme = read(&root().join("README.md"));
    for doc in [
        "docs/guide.md",
        "docs/benchmarks.md",
        "docs/guarantees.md",
        "docs/testing.md",
        "CHANGELOG.md",
        "ARCHITECTURE.md",
    ] {
        assert!(root().join(doc).is_file(), "{doc} is missing");
        assert!(readme.contains(doc), "README.md does not link {doc}");
    }
}

/// Relative links in the Markdown docs lead to files that exist.
#[test]
fn relative_links_resolve() {
    let mut paths = user_docs();
    paths.push(root().join("CHANGELOG.md"));
    let mut broken = Vec::new();
    for path in &paths {
        let text = read(path);
        let mut rest = text.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            rest = &rest[end..];
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap_or(target);
            if file.is_empty() || file.contains(' ') {
                continue;
            }
            let resolved = path.parent().unwrap().join(file);
            if !resolved.exists() {
                let rel = path.strip_prefix(root()).unwrap_or(path);
                broken.push(format!("{}: {target}", rel.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
