//! The crate's module graph, checked on every test run: imports point one way
//! (transport → domain → adapters), no module reaches back into one that
//! reaches it, and lib.rs lists every module with a line saying what it is.
//! Read from the source files, so a new `use` that breaks the map fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The transport (and its composition root): only these may use each other
/// and everything else; nothing else may use them.
const TRANSPORT: &[&str] = &["peer", "problem", "routes", "server", "state"];

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        files.extend(rust_files(&entry.path()));
    }
    files.retain(|file| file.extension().is_some_and(|ext| ext == "rs"));
    files
}

/// Every top-level module (a `name.rs` or a `name/` directory) and its files.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(source_dir()).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let is_module = path.is_dir() || path.extension().is_some_and(|ext| ext == "rs");
        if is_module && !["lib", "main", "layers"].contains(&name.as_str()) {
            modules.insert(name, rust_files(&path));
        }
    }
    modules
}

/// The module name a path starts with.
fn leading_name(path: &str) -> String {
    path.trim_start().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect()
}

/// The top-level modules that `files` name as `crate::<module>` or in a
/// `crate::{<module>::..., ...}` group, comments aside. Paths up through
/// `super::super::` are not followed: the crate names its modules from the root.
fn imports(files: &[PathBuf], known: &BTreeMap<String, Vec<PathBuf>>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let code: Vec<&str> = text.lines().filter(|line| !line.trim_start().starts_with("//")).collect();
        let code = code.join("\n");
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let names = match rest.strip_prefix('{') {
                // The group's top-level paths: split at commas outside nested braces.
                Some(group) => {
                    let (mut depth, mut start, mut names) = (0, 0, Vec::new());
                    for (i, c) in group.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => {
                                names.push(leading_name(&group[start..i]));
                                break;
                            }
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                names.push(leading_name(&group[start..i]));
                                start = i + 1;
                            }
                            _ => {}
                        }
                    }
                    names
                }
                None => vec![leading_name(rest)],
            };
            found.extend(names.into_iter().filter(|name| known.contains_key(name)));
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    modules.iter().map(|(name, files)| (name.clone(), imports(files, &modules))).collect()
}

#[test]
fn imports_are_read_from_paths_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.rs");
    std::fs::write(
        &file,
        "use crate::{db::Database,\n  routes::{ApiError}};\n// use crate::server;\nfn f() { crate::stripe::x() }",
    )
    .unwrap();
    let known: BTreeMap<String, Vec<PathBuf>> =
        ["db", "routes", "server", "stripe"].iter().map(|m| (m.to_string(), Vec::new())).collect();
    let found: Vec<String> = imports(&[file], &known).into_iter().collect();
    assert_eq!(found, ["db", "routes", "stripe"]);
}

#[test]
fn no_domain_or_adapter_module_uses_the_transport() {
    let offending: Vec<String> = graph()
        .iter()
        .filter(|(module, _)| !TRANSPORT.contains(&module.as_str()))
        .flat_map(|(module, uses)| {
            uses.iter().filter(|used| TRANSPORT.contains(&used.as_str())).map(move |used| format!("{module} -> {used}"))
        })
        .collect();
    assert!(offending.is_empty(), "imports up into the transport: {offending:?}");
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = graph();
    // Kahn's algorithm: whatever cannot be ordered sits on a cycle.
    let mut remaining = graph.clone();
    loop {
        let leaves: Vec<String> = remaining
            .iter()
            .filter(|(module, uses)| uses.iter().all(|used| used == *module || !remaining.contains_key(used)))
            .map(|(module, _)| module.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for leaf in leaves {
            remaining.remove(&leaf);
        }
    }
    assert!(remaining.is_empty(), "modules on a cycle: {:?}", remaining.keys().collect::<Vec<_>>());
}

#[test]
fn lib_rs_lists_every_module_with_a_line_on_what_it_is() {
    let lib = std::fs::read_to_string(source_dir().join("lib.rs")).unwrap_or_default();
    let lines: Vec<&str> = lib.lines().collect();
    for module in modules().keys() {
        let declaration = format!("pub mod {module};");
        let at = lines.iter().position(|line| *line == declaration);
        let documented = at.is_some_and(|at| at > 0 && lines[at - 1].starts_with("/// "));
        assert!(documented, "lib.rs: `{declaration}` with a `///` line above it");
    }
}
