//! The workspace's own hygiene: every dependency a crate declares is one its code uses, so a
//! dependency left behind by a change fails the build's tests instead of compiling forever.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Rust sources under `dir`, build output aside.
fn sources(dir: &Path, found: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(read(&path));
        }
    }
}

/// Whether Rust code names the crate `ident` (a path, a `use`, a macro or an attribute).
fn names(code: &str, ident: &str) -> bool {
    code.match_indices(ident).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = &code[at + ident.len()..];
        let starts_word = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        starts_word && (after.starts_with("::") || after.starts_with('!') || after.starts_with(';'))
    })
}

#[test]
fn every_declared_dependency_is_used_by_its_crate() {
    let workspace: toml::Table = read(&root().join("Cargo.toml")).parse().expect("workspace manifest");
    let members = workspace["workspace"]["members"].as_array().expect("members");
    let mut unused = Vec::new();
    for member in members {
        let dir = root().join(member.as_str().expect("member path"));
        let manifest: toml::Table = read(&dir.join("Cargo.toml")).parse().expect("crate manifest");
        let mut code = Vec::new();
        sources(&dir, &mut code);
        for section in ["dependencies", "dev-dependencies"] {
            let Some(dependencies) = manifest.get(section).and_then(toml::Value::as_table) else {
                continue;
            };
            for name in dependencies.keys() {
                let ident = name.replace('-', "_");
                if !code.iter().any(|file| names(file, &ident)) {
                    unused.push(format!("{member}: [{section}] {name}"));
                }
            }
        }
    }
    assert!(unused.is_empty(), "declared but never used:\n{}", unused.join("\n"));
}

#[test]
fn a_crate_is_named_only_as_a_path_use_or_macro() {
    assert!(names("use tokio::sync;", "tokio"));
    assert!(names("#[tokio::main]", "tokio"));
    assert!(names("serde_json!", "serde_json"));
    assert!(names("extern crate base64;", "base64"));
    assert!(!names("use my_tokio::sync;", "tokio"));
    assert!(!names("tokio is mentioned in a comment", "tokio"));
}
