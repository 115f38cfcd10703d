//! The core is sans-IO: `wire`, `session`, `capture`, `record` and `report` never name tokio,
//! sockets, files or clocks (STYLE.md). Drivers pass bytes and time in.

#![allow(clippy::unwrap_used)] // a test: a failure to read the tree should panic
use std::path::Path;

const CORE: &[&str] = &[
    "src/wire",
    "src/session",
    "src/capture",
    "src/record",
    "src/report.rs",
];
const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::net",
    "std::fs",
    "std::io::Read",
    "Instant",
    "SystemTime",
    "std::thread",
    "std::env",
];

fn rust_files(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

#[test]
fn core_modules_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for c in CORE {
        rust_files(&root.join(c), &mut files);
    }
    assert!(files.len() >= 10, "core files not found: {files:?}");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        // Test modules may read fixtures; the code above them may not.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            for word in FORBIDDEN {
                if l.contains(word) {
                    bad.push(format!("{}:{}: {word}: {l}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "I/O in the sans-IO core:\n{}",
        bad.join("\n")
    );
}
