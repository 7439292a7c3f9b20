//! The layering rule, checked on the source: a module only uses modules of its own layer or
//! below. Leaves (`wire`, `value`, `store`) use nothing above them; the inventory does not use
//! the configuration; wire and policy touch no sockets, clocks, threads or files.

use std::path::Path;

/// Top-level modules, lowest layer first; a module may use those at its level or lower.
const LEVELS: &[(&str, u8)] = &[
    ("testing", 0),
    ("wire", 0),
    ("value", 0),
    ("store", 0),
    ("inventory", 1),
    ("config", 2),
    ("policy", 3),
    ("io", 4),
    ("service", 5),
    ("cli", 6),
];

fn level(module: &str) -> Option<u8> {
    LEVELS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::NAME` a file's code mentions (comments and doc links aside).
fn crate_uses(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| {
            line.match_indices("crate::").map(move |(i, _)| {
                line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
        })
        .collect()
}

#[test]
fn no_module_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let top = top.trim_end_matches(".rs");
        let Some(own) = level(top) else { continue }; // lib.rs, main.rs
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_uses(&text) {
            if let Some(theirs) = level(&used) {
                if theirs > own {
                    upward.push(format!("{}: uses crate::{used}", relative.display()));
                }
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "modules using a layer above them:\n{}",
        upward.join("\n")
    );
}

#[test]
fn wire_and_policy_touch_no_sockets_clocks_threads_or_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("wire"), &mut files);
    rust_files(&src.join("policy"), &mut files);
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests (at the foot of a file, or in tests.rs / simulation files) may use them.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        if name == "tests.rs" || name == "simulation.rs" {
            continue;
        }
        for banned in [
            "std::net::UdpSocket",
            "TcpStream",
            "TcpListener",
            "Instant::now",
            "SystemTime::now",
            "std::thread",
            "std::fs",
            "File::open",
        ] {
            if code.contains(banned) {
                found.push(format!(
                    "{}: {banned}",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "I/O in a pure layer:\n{}",
        found.join("\n")
    );
}
