//! The import graph of `src/` against the layers in docs/architecture.md: a module
//! imports only from its own layer or below, and no chain of imports comes back to
//! where it started. It reads the sources (every `crate::…` and `super::…` path
//! outside comments and test modules), so it fails the moment someone adds an upward
//! import, and says which.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, from the ground up. Every module of the library is in exactly one.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "ground: wire types, words, errors, settings, helpers",
        &[
            "cookies",
            "protocol",
            "i18n",
            "page",
            "platform",
            "platform::browser",
            "platform::server",
            "lang_switch",
            "error",
            "render",
            "render::stream",
            "settings",
            "net",
            "digest",
            "throttle",
            "clock",
            "metrics",
            "static_files",
        ],
    ),
    (
        "stores and engines: SQL, the model client, the lesson index, answers' tasks",
        &[
            "db",
            "upstream",
            "upstream::sse",
            "upstream::one_shot",
            "upstream::fake",
            "lessons::markdown",
            "lessons::index",
            "lessons::excerpts",
            "lessons::command",
            "feedback",
            "feedback::store",
            "history",
            "history::store",
            "history::search",
            "history::versions",
            "account::store",
            "account::hashing",
            "chat::store",
            "chat::first_answers",
            "chat::arrivals",
            "chat::budget",
            "chat::live",
            "chat::limits",
            "chat::prompt",
            "teacher",
            "teacher::store",
            "escalation",
            "escalation::store",
            "teacher::csv",
            "chat::notices",
            "chat::bus",
            "chat::leases",
            "chat::presence",
            "faq",
            "faq::store",
            "faq::matcher",
            "teacher::dashboard",
            "teacher::dashboard_store",
        ],
    ),
    ("shared state", &["state"]),
    (
        "capabilities' edges: server functions, the socket, components, the browser client",
        &[
            "auth",
            "account",
            "account::view",
            "history::api",
            "history::export",
            "history::view",
            "lessons",
            "lessons::view",
            "chat",
            "chat::ask",
            "chat::socket",
            "chat::takeover",
            "chat::state",
            "chat::meter",
            "chat::client",
            "chat::client::browser",
            "chat::client::server",
            "chat::view",
            "chat::versions",
            "proptests",
            "not_found",
            "feedback::api",
            "feedback::view",
            "teacher::api",
            "teacher::view",
            "teacher::charts",
            "teacher::command",
            "escalation::api",
            "teacher::export",
            "escalation::view",
            "faq::api",
            "faq::view",
            "probes",
        ],
    ),
    ("pages and routes", &["app"]),
    ("router assembly and start-up", &["server"]),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every library module (file) under `src/`, by its path: `chat/view.rs` is
/// `chat::view`, `chat/mod.rs` is `chat`. Binaries and the crate root are not modules.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = src_dir();
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().with_extension("");
        let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts[0] == "bin" || parts == ["lib"] || parts == ["main"] {
            continue;
        }
        let name = match parts.last().map(String::as_str) {
            Some("mod") => parts[..parts.len() - 1].join("::"),
            _ => parts.join("::"),
        };
        modules.insert(name, file);
    }
    modules
}

/// The source without comments and without `#[cfg(test)]` modules (tests may reach
/// anywhere).
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a module names: `crate::a::b::Item`, `super::x`, and each member of a
/// `use crate::{…}` or `use super::{…}` group, as absolute paths.
fn named_paths(module: &str, code: &str) -> Vec<String> {
    // `super` of `a::b` (a file `a/b.rs`) is `a`; of `a` (`a/mod.rs` or `a.rs`) the crate.
    let parts: Vec<&str> = module.split("::").collect();
    let parent = &parts[..parts.len() - 1];
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for (root, prefix) in [("crate", "crate::"), ("super", "super::")] {
        let mut from = 0;
        while let Some(at) = code[from..].find(prefix) {
            let start = from + at;
            from = start + prefix.len();
            let before = start.checked_sub(1).map(|i| bytes[i] as char);
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // `self::super::` or an identifier ending in `crate`
            }
            let base: Vec<String> = if root == "crate" {
                Vec::new()
            } else {
                parent.iter().map(|s| s.to_string()).collect()
            };
            for tail in expand(&code[from..]) {
                let mut path = base.clone();
                path.extend(tail.split("::").filter(|s| !s.is_empty()).map(str::to_string));
                found.push(path.join("::"));
            }
        }
    }
    found
}

/// `a::b::{c, d::e}` after a `crate::` → `a::b::c`, `a::b::d::e`; `a::b` → `a::b`.
fn expand(rest: &str) -> Vec<String> {
    let head_len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    let head = rest[..head_len].trim_end_matches(':');
    let group_follows = head_len == 0 || rest[..head_len].ends_with("::");
    if !rest[head_len..].starts_with('{') || !group_follows {
        return vec![head.to_string()];
    }
    let group = &rest[head_len + 1..];
    let mut depth = 0;
    let mut end = group.len();
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                end = i;
                break;
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    let mut members = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in group[..end].chars() {
        match c {
            ',' if depth == 0 => members.push(std::mem::take(&mut current)),
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' => {
                depth -= 1;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    members.push(current);
    members
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty() && *m != "self")
        .flat_map(|m| {
            expand(m).into_iter().map(move |tail| match head {
                "" => tail,
                _ => format!("{head}::{tail}"),
            })
        })
        .collect()
}

/// The module a path lands in: the longest module that is a prefix of it.
fn owner<'a>(path: &str, modules: &'a BTreeMap<String, PathBuf>) -> Option<&'a str> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|candidate| modules.get_key_value(&candidate).map(|(k, _)| k.as_str()))
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let mut imports = BTreeSet::new();
        for path in named_paths(module, &code_of(file)) {
            if let Some(target) = owner(&path, &modules) {
                if target != module {
                    imports.insert(target.to_string());
                }
            }
        }
        graph.insert(module.clone(), imports);
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, members)| members.contains(&module))
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<String> = modules().into_keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from the layer table in tests/layers.rs (and docs/architecture.md): {unplaced:?}"
    );
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let mut upward = Vec::new();
    for (module, imports) in import_graph() {
        let Some(own) = layer_of(&module) else { continue };
        for target in imports {
            if let Some(theirs) = layer_of(&target) {
                if theirs > own {
                    upward.push(format!("{module} ({}) imports {target} ({})", LAYERS[own].0, LAYERS[theirs].0));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports that run up the layers:\n{}", upward.join("\n"));
}

#[test]
fn no_import_cycles() {
    let graph = import_graph();
    // Depth-first search; a node met again while on the stack closes a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            cycles.push(cycle.join(" → "));
            return;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, cycles);
        }
        stack.pop();
        done.insert(node.to_string());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The checker itself: paths in groups, `super`, and comments are read as meant.
#[test]
fn the_checker_reads_imports_as_rust_does() {
    let code = "use super::{api::{a, b}, Thing};\nuse crate::protocol::{X, Y};\n// crate::server::Hidden\nlet s = crate::db::now_ms();";
    let paths = named_paths("history::view", &code_of_str(code));
    assert!(paths.contains(&"history::api::a".to_string()), "{paths:?}");
    assert!(paths.contains(&"history::Thing".to_string()), "{paths:?}");
    assert!(paths.contains(&"protocol::X".to_string()), "{paths:?}");
    assert!(paths.contains(&"db::now_ms".to_string()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("server")), "{paths:?}");
    // A file `a.rs` or `a/mod.rs` has the crate as its `super`.
    assert_eq!(named_paths("chat", "use super::protocol::X;"), vec!["protocol::X".to_string()]);
}

fn code_of_str(code: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.rs");
    std::fs::write(&file, code).unwrap();
    code_of(&file)
}
