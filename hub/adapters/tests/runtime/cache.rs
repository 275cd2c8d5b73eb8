//! The on-disk cache of precompiled components.

use hub_adapters::{AdapterConfig, CacheStats, ModuleSource};

use crate::{runtime, scratch};

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn second_runtime_loads_from_cache_and_corrupt_entries_are_recompiled() {
    let dir = scratch("cache");
    let cfg = AdapterConfig::new(
        "ns/prom",
        ModuleSource::Builtin("prometheus".into()),
        serde_json::json!({}),
    );

    let first = runtime(Some(dir.clone()));
    first.validate(&cfg).await.expect("first load");
    assert_eq!(
        first.cache_stats(),
        CacheStats {
            compiled: 1,
            ..CacheStats::default()
        }
    );
    let files = entries(&dir);
    assert_eq!(files.len(), 1, "{files:?}");

    // Same module again in the same runtime: pre-instantiated already, no cache access at all.
    first.validate(&cfg).await.expect("again");
    assert_eq!(first.cache_stats().compiled, 1);

    let second = runtime(Some(dir.clone()));
    second.validate(&cfg).await.expect("cached load");
    assert_eq!(
        second.cache_stats(),
        CacheStats {
            hits: 1,
            ..CacheStats::default()
        }
    );

    // Flip bytes in the middle of the entry: detected, recompiled, rewritten.
    let mut data = std::fs::read(&files[0]).expect("read entry");
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&files[0], &data).expect("corrupt");
    let third = runtime(Some(dir.clone()));
    let caps = third.validate(&cfg).await.expect("recompiled");
    assert!(caps.metrics);
    assert_eq!(
        third.cache_stats(),
        CacheStats {
            compiled: 1,
            corrupt: 1,
            ..CacheStats::default()
        }
    );

    // Truncated to a few bytes: same.
    std::fs::write(&files[0], b"xx").expect("truncate");
    let fourth = runtime(Some(dir.clone()));
    fourth.validate(&cfg).await.expect("recompiled");
    assert_eq!(fourth.cache_stats().corrupt, 1);

    // And the rewritten entry is good again.
    let fifth = runtime(Some(dir.clone()));
    fifth.validate(&cfg).await.expect("cached");
    assert_eq!(
        fifth.cache_stats(),
        CacheStats {
            hits: 1,
            ..CacheStats::default()
        }
    );
    assert_eq!(entries(&dir), files);
}
