//! Replays every input of every fuzz target's corpus (`fuzz/corpus/TARGET/`) and of its artifacts
//! (`fuzz/artifacts/TARGET/`: the crashes found and fixed, kept as regression inputs) through the target's
//! body, on stable and without libFuzzer. A target without a corpus fails the test, so it cannot pass by
//! testing nothing; so does a fuzz target file without a body here, or a body without a file.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use sextant_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files directly under `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The stack the inputs are replayed on. libFuzzer runs the targets optimized on the main thread's 8 MiB;
/// unoptimized, a frame of the CEL parser (ANTLR's, recursive descent with error recovery) is several
/// times larger, and a malformed expression nested 30 deep overflows the 2 MiB of a test thread, where the
/// optimized code, as the hub runs it, needs less than 2 MiB up to the parser's nesting limit.
const STACK: usize = 64 << 20;

#[test]
fn every_corpus_and_artifact_replays_without_a_panic() {
    std::thread::Builder::new()
        .name("replay".to_string())
        .stack_size(STACK)
        .spawn(replay_all)
        .expect("a replay thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

fn replay_all() {
    let fuzz = fuzz_dir();
    let mut failures = Vec::new();
    for (name, body) in TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name}/ is missing or empty: seed it (see fuzz/README.md)"
        );
        let artifacts = inputs(&fuzz.join("artifacts").join(name));
        for path in corpus.iter().chain(&artifacts) {
            let data = std::fs::read(path).expect("a readable input");
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(&data))) {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                failures.push(format!("{}: {message}", path.display()));
            }
        }
        println!(
            "{name}: replayed {} corpus inputs and {} artifacts",
            corpus.len(),
            artifacts.len()
        );
    }
    assert!(
        failures.is_empty(),
        "{} inputs panic:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_fuzz_target_file_has_a_body_and_every_body_a_file() {
    let files: BTreeSet<String> = inputs(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    let bodies: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(files, bodies, "fuzz/fuzz_targets/*.rs and TARGETS");
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for name in &bodies {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
    }
}
