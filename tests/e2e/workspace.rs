//! The workspace's own hygiene: every dependency a crate declares is one its code uses, so a
//! dependency left behind by a change fails the build's tests instead of compiling forever; and no
//! two modules of a crate depend on each other, directly or around a loop.

use std::collections::{BTreeMap, BTreeSet};
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

/// The crate's top-level modules (a file or a directory under `src/`, test-only files aside) and
/// the other top-level modules each one names as `crate::module`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let relative = file.strip_prefix(src).expect("under src");
        let top = relative.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or_default();
        let top = top.trim_end_matches(".rs").to_owned();
        if ["lib", "main"].contains(&top.as_str()) || ["tests.rs", "fakes.rs"].contains(&name) {
            continue;
        }
        let code = read(file);
        // Unit tests may reach anywhere; only the code they test counts.
        let code = code.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let mut named = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or_default();
                named.extend(
                    group.split(',').filter_map(|item| item.trim().split("::").next()).map(str::to_owned),
                );
            } else {
                named.insert(rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect());
            }
        }
        graph.entry(top.clone()).or_default().extend(named.into_iter().filter(|m| *m != top));
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for named in graph.values_mut() {
        named.retain(|m| modules.contains(m));
    }
    graph
}

/// A loop of modules, if any: each names the next, and the last the first.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            return Some(path[at..].to_vec());
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_modules_of_a_crate_depend_on_each_other() {
    let workspace: toml::Table = read(&root().join("Cargo.toml")).parse().expect("workspace manifest");
    let mut loops = Vec::new();
    for member in workspace["workspace"]["members"].as_array().expect("members") {
        let member = member.as_str().expect("member path");
        let src = root().join(member).join("src");
        if !src.is_dir() {
            continue;
        }
        if let Some(found) = cycle(&module_graph(&src)) {
            loops.push(format!("{member}: {}", found.join(" -> ")));
        }
    }
    assert!(loops.is_empty(), "modules that depend on each other:\n{}", loops.join("\n"));
}

#[test]
fn a_loop_of_modules_is_found() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            graph.entry((*from).to_owned()).or_default().insert((*to).to_owned());
            graph.entry((*to).to_owned()).or_default();
        }
        graph
    };
    assert_eq!(cycle(&graph(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into()])
    );
}
