//! Replays every saved fuzz crash through the entry point of the target that found it
//! (`fuzz/src/lib.rs`, included below, is what each cargo-fuzz target calls), so a crash fixed
//! once stays fixed in `cargo test`, without cargo-fuzz or a nightly compiler.
//!
//! Files live in `tests/fixtures/fuzz_regression/<target>/` (README.md files are skipped). A
//! missing directory fails: a renamed target must not silently stop being replayed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub, dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod entry;

use std::path::PathBuf;

/// A fuzz target's entry point.
type Entry = fn(&[u8]);

fn replay(target: &str, entry: Entry) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz_regression")
        .join(target);
    let files = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (every fuzz target keeps a directory)",
            dir.display()
        )
    });
    let mut replayed = 0;
    for file in files {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| entry(&data));
        assert!(outcome.is_ok(), "{} panics again", path.display());
        replayed += 1;
    }
    eprintln!("{target}: {replayed} input(s) replayed");
}

#[test]
fn x224() {
    replay("x224", entry::x224);
}

#[test]
fn tls_records() {
    replay("tls_records", entry::tls_records);
}

#[test]
fn x509() {
    replay("x509", entry::x509);
}

#[test]
fn mcs() {
    replay("mcs", entry::mcs);
}

#[test]
fn session() {
    replay("session", entry::session);
}

#[test]
fn capture() {
    replay("capture", entry::capture);
}

/// The seed corpora go through the same entry points: real frames must not panic either.
#[test]
fn seeds() {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let targets: [(&str, Entry); 6] = [
        ("x224", entry::x224),
        ("tls_records", entry::tls_records),
        ("x509", entry::x509),
        ("mcs", entry::mcs),
        ("session", entry::session),
        ("capture", entry::capture),
    ];
    for (target, entry) in targets {
        let dir = seeds.join(target);
        for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            entry(&std::fs::read(file.unwrap().path()).unwrap());
        }
    }
}
