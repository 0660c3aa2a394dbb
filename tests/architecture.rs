//! The shape of the code, checked: module dependencies point one way, and gRPC statuses are
//! built in one place. Both read the sources as text (no build tool), so they run everywhere.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/` with its module path (`guard::normalize`, `guard` for
/// `guard/mod.rs`, `crate` for `lib.rs` and `main.rs`).
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().to_string()).collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            let name = match parts.as_slice() {
                [one] if one == "lib" || one == "main" => "crate".to_string(),
                _ => parts.join("::"),
            };
            (name, p)
        })
        .collect()
}

/// Source without comments, string literals and `#[cfg(test)]` modules (tests may reach
/// anywhere).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::new();
    // Inside an inline `mod name { ... }`, `super::` names the file's own module.
    let (mut depth, mut inline_mods) = (0i32, Vec::<i32>::new());
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        let trimmed = line.trim_start();
        let opens_mod =
            (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ")) && trimmed.ends_with('{');
        if opens_mod {
            inline_mods.push(depth);
        }
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        if inline_mods.last().is_some_and(|d| depth <= *d) {
            inline_mods.pop();
        }
        let line = if inline_mods.is_empty() { line.to_string() } else { line.replace("super::", "self::") };
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// The `use` trees of a module, expanded (`a::{b, c::d}` -> `a::b`, `a::c::d`), split into
/// plain uses and re-exports (`pub use`).
fn use_trees(code: &str) -> (Vec<String>, Vec<String>) {
    fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
        let tree = tree.trim();
        match tree.find('{') {
            None if tree.is_empty() => {}
            None => out.push(format!("{prefix}{tree}")),
            Some(open) => {
                let head = &tree[..open];
                let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
                let (mut depth, mut start) = (0, 0);
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            expand(&inner[start..i], &format!("{prefix}{head}"), out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                expand(&inner[start..], &format!("{prefix}{head}"), out);
            }
        }
    }
    let (mut uses, mut reexports) = (Vec::new(), Vec::new());
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let is_word_start = before.chars().last().is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        if is_word_start {
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let tree = rest[at + 4..end].split_whitespace().collect::<Vec<_>>().join(" ");
            let target =
                if before[line_start..].trim_start().starts_with("pub") { &mut reexports } else { &mut uses };
            expand(&tree, "", target);
        }
        rest = &rest[end.min(rest.len())..];
        if rest.is_empty() {
            break;
        }
        rest = &rest[1..];
    }
    (uses, reexports)
}

/// A path as written in `module`, made absolute (segments from the crate root); `None` for
/// paths into other crates.
fn absolute(module: &str, path: &str) -> Option<Vec<String>> {
    let parent = |m: &str| m.rsplit_once("::").map_or("crate".to_string(), |(p, _)| p.to_string());
    let path = path.split(" as ").next().unwrap_or(path);
    let mut parts: Vec<String> =
        path.split("::").filter(|s| !s.is_empty() && *s != "self").map(String::from).collect();
    let first = path.split("::").next().unwrap_or("");
    let base = match first {
        "crate" => {
            parts.remove(0);
            "crate".to_string()
        }
        "super" => {
            let mut base = parent(module);
            parts.remove(0);
            while parts.first().is_some_and(|s| s == "super") {
                base = parent(&base);
                parts.remove(0);
            }
            base
        }
        // `self::x`, or relative to this module (resolves only if it names a child module).
        _ => module.to_string(),
    };
    if base != "crate" {
        let mut full: Vec<String> = base.split("::").map(String::from).collect();
        full.extend(parts);
        parts = full;
    }
    Some(parts)
}

/// The paths a module's code names: its `use` trees and the inline paths of its code
/// (`crate::a::b`, `super::a`, `child::x`). Re-exports are not code: a table of contents is
/// not a dependency (what it re-exports is resolved to where it is defined instead).
fn named_paths(module: &str, code: &str) -> Vec<Vec<String>> {
    let (uses, _) = use_trees(code);
    // Code without its `use` statements (already read as trees, re-exports included).
    let mut scan = String::new();
    let mut in_use = false;
    for line in code.lines() {
        let t = line.trim_start();
        in_use |= t.starts_with("use ")
            || t.starts_with("pub use ")
            || (t.starts_with("pub(") && t.contains(") use "));
        if !in_use {
            scan.push_str(line);
            scan.push('\n');
        }
        in_use &= !line.contains(';');
    }
    let inline = scan
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.contains("::") && !t.starts_with("::"))
        .map(String::from);
    uses.into_iter().chain(inline).filter_map(|p| absolute(module, &p)).collect()
}

/// Module -> modules it depends on (the longest module prefix of each path it names, with
/// re-exported names followed to the module that defines them).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let codes: BTreeMap<&String, String> =
        modules.iter().map(|(m, p)| (m, code(&std::fs::read_to_string(p).unwrap()))).collect();
    // (module, name) -> the path it re-exports.
    let mut aliases: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (module, code) in &codes {
        for tree in use_trees(code).1 {
            let name =
                tree.rsplit(" as ").next().unwrap_or(&tree).rsplit("::").next().unwrap_or("").to_string();
            if let Some(path) = absolute(module, &tree) {
                aliases.insert(((*module).clone(), name), path);
            }
        }
    }
    let resolve = |parts: &[String]| -> Option<String> {
        let mut parts = parts.to_vec();
        for _ in 0..8 {
            let n = (1..=parts.len()).rev().find(|&n| modules.contains_key(&parts[..n].join("::")))?;
            let module = parts[..n].join("::");
            match parts.get(n).and_then(|name| aliases.get(&(module.clone(), name.clone()))) {
                Some(target) => {
                    let mut next = target.clone();
                    next.extend(parts[n + 1..].iter().cloned());
                    parts = next;
                }
                None => return Some(module),
            }
        }
        None
    };
    let mut graph = BTreeMap::new();
    for (module, code) in &codes {
        let mut deps: BTreeSet<String> =
            named_paths(module, code).iter().filter_map(|parts| resolve(parts)).collect();
        deps.remove(*module);
        deps.remove("crate");
        graph.insert((*module).clone(), deps);
    }
    graph
}

#[test]
fn module_dependencies_have_no_cycle() {
    let graph = graph();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(node, &graph, &mut state, &mut Vec::new()) {
                let listing: Vec<String> = graph
                    .iter()
                    .map(|(m, d)| format!("{m} -> {}", d.iter().cloned().collect::<Vec<_>>().join(", ")))
                    .collect();
                panic!("module cycle: {}\n\nthe graph:\n{}", cycle.join(" -> "), listing.join("\n"));
            }
        }
    }
    // Print the graph for the record (`cargo test --test architecture -- --nocapture`).
    for (m, d) in &graph {
        println!("{m} -> {}", d.iter().cloned().collect::<Vec<_>>().join(", "));
    }
}

#[test]
fn the_leaf_modules_depend_on_nothing_of_the_crate() {
    let graph = graph();
    for leaf in ["metrics", "guard::markup"] {
        assert_eq!(graph[leaf], BTreeSet::new(), "{leaf} must be a leaf");
    }
    let text_helpers = ["guard::normalize", "guard::markup"];
    assert!(
        graph["guard::normalize"].iter().all(|d| text_helpers.contains(&d.as_str())),
        "normalization uses only markup"
    );
    for (module, deps) in &graph {
        if module == "forget" || module.starts_with("forget::") {
            let outside: Vec<&String> = deps
                .iter()
                .filter(|d| {
                    !d.starts_with("forget") && !text_helpers.contains(&d.as_str()) && *d != "metrics"
                })
                .collect();
            assert!(
                outside.is_empty(),
                "{module} depends on {outside:?}: forget/ may use only the guard's normalization"
            );
        }
    }
}

#[test]
fn grpc_statuses_are_built_in_one_place() {
    let constructors = [
        "Status::new(",
        "Status::invalid_argument(",
        "Status::internal(",
        "Status::unauthenticated(",
        "Status::resource_exhausted(",
        "Status::deadline_exceeded(",
        "Status::failed_precondition(",
        "Status::unavailable(",
        "Status::cancelled(",
        "Status::not_found(",
        "Status::permission_denied(",
        "Status::unimplemented(",
        "Status::with_",
    ];
    let mut sites = Vec::new();
    for (module, path) in modules() {
        let code = code(&std::fs::read_to_string(&path).unwrap());
        for (i, line) in code.lines().enumerate() {
            if constructors.iter().any(|c| line.contains(c)) {
                sites.push(format!("{module}:{}", i + 1));
            }
        }
    }
    assert!(
        sites.iter().all(|s| s.starts_with("server::error:")),
        "tonic::Status built outside server/error.rs: {sites:?}"
    );
    assert!(!sites.is_empty(), "server/error.rs builds the statuses");
}
