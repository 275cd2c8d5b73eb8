//! Change detection of a configuration directory, shared by the hub and pilot (neutral: no role owns it).
//!
//! A [`DirWatch`] is woken by file-system events (inotify) and, as a safety net where events do not arrive
//! (network file systems, a platform without them), by a poll that compares a [`fingerprint`] of the YAML
//! files' names, sizes and modification times: a few `stat`s, never a read. A change woken by an event is
//! reported once no further event came for the quiet period (a burst of writes is one change, and a single
//! write is reported one quiet period after it); one found by the poll, once its fingerprint stayed the same
//! for that long. Then [`DirWatch::changed`] returns and the caller reads the files. Every file-system walk
//! runs on the blocking pool, never on a runtime worker.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

/// The YAML files (`*.yaml`, `*.yml`) under `path`, recursively, or `path` itself when it is a file; sorted.
/// Names starting with `.` (editor swap files, `.git`) are skipped. The error names the path that failed.
pub fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
    let meta = std::fs::metadata(path).map_err(|e| (path.to_path_buf(), e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| (dir.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| (dir.clone(), e))?;
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A digest of the YAML files' names, sizes and modification times under `path`: cheap to take every poll.
/// Blocking (it walks the directory).
pub fn fingerprint(path: &Path) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    match yaml_files(path) {
        Ok(files) => {
            for f in files {
                f.hash(&mut h);
                if let Ok(m) = std::fs::metadata(&f) {
                    m.len().hash(&mut h);
                    m.modified().ok().hash(&mut h);
                }
            }
        }
        // A directory that cannot be listed is a state of its own: its return is a change.
        Err((p, e)) => (p, e.kind()).hash(&mut h),
    }
    h.finish()
}

/// [`fingerprint`] on the blocking pool.
async fn fingerprint_off_runtime(path: &Path) -> u64 {
    let path = path.to_path_buf();
    // The walk cannot panic; were its thread lost, the directory counts as changed (a read costs little).
    tokio::task::spawn_blocking(move || fingerprint(&path))
        .await
        .unwrap_or_default()
}

/// Watches one configuration directory (or file) for changes.
pub struct DirWatch {
    path: PathBuf,
    /// How many file-system events arrived; marked seen when a change is reported.
    events: watch::Receiver<u64>,
    _fs: Option<notify::RecommendedWatcher>,
    tick: tokio::time::Interval,
    debounce: Duration,
    seen: u64,
    /// An event woke a call that was then cancelled: the next call goes straight to the quiet period.
    pending: bool,
}

impl DirWatch {
    /// Starts watching `path`: the files as they are now count as seen, so read them after this returns.
    /// `poll` is how often the fingerprint is compared without an event; `debounce` how long the files must
    /// stay the same before a change is reported, so a burst of edits is one change.
    pub async fn start(path: PathBuf, poll: Duration, debounce: Duration) -> DirWatch {
        let (count, events) = watch::channel(0);
        let fs = watch_events(&path, count);
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        let seen = fingerprint_off_runtime(&path).await;
        DirWatch {
            path,
            events,
            _fs: fs,
            tick,
            debounce,
            seen,
            pending: false,
        }
    }

    /// Waits until the files differ from those last seen (or an event says so: a rewrite that keeps size
    /// and time) and then stayed quiet for the debounce time. The files as they are then count as seen.
    /// Cancel-safe: a call dropped before it returned loses no change (use it in `select!`).
    pub async fn changed(&mut self) {
        loop {
            let by_event = self.pending
                || tokio::select! {
                    _ = self.tick.tick() => false,
                    // Without a file-system watcher the sender is gone: the poll alone finds changes.
                    Ok(()) = self.events.changed() => true,
                };
            if by_event {
                self.pending = true;
                self.quiet_events().await;
                self.seen = fingerprint_off_runtime(&self.path).await;
            } else {
                let now = fingerprint_off_runtime(&self.path).await;
                if now == self.seen {
                    continue;
                }
                self.seen = self.still_fingerprint(now).await;
            }
            self.pending = false;
            return;
        }
    }

    /// Returns once no file-system event came for the debounce time, or [`MAX_SETTLE`] debounce times after
    /// it was called, so that files written without pause are still read now and then. The events it waited
    /// through count as seen; any later one wakes the next call.
    async fn quiet_events(&mut self) {
        let give_up = tokio::time::Instant::now() + self.debounce * MAX_SETTLE;
        loop {
            self.events.borrow_and_update();
            let until = give_up.min(tokio::time::Instant::now() + self.debounce);
            match tokio::time::timeout_at(until, self.events.changed()).await {
                Ok(Ok(())) if until < give_up => {}
                // Quiet, written without pause for too long, or the watcher gone (nothing more will come).
                _ => return,
            }
        }
    }

    /// Waits until a fingerprint taken after the debounce time is the same as the one before it (the poll's
    /// settling, where no event tells when writing stopped), starting from `now`; returns the last one.
    async fn still_fingerprint(&mut self, mut now: u64) -> u64 {
        loop {
            let count = *self.events.borrow_and_update();
            tokio::time::sleep(self.debounce).await;
            let later = fingerprint_off_runtime(&self.path).await;
            if later == now && *self.events.borrow() == count {
                return later;
            }
            now = later;
        }
    }
}

/// How many debounce times a change woken by events waits at most for the writing to stop.
const MAX_SETTLE: u32 = 20;

/// Starts counting file-system events under `path` (recursively) into `count`; `None`, with a warning,
/// where the platform cannot, and then the poll alone finds changes.
fn watch_events(path: &Path, count: watch::Sender<u64>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let handler = move |event: notify::Result<notify::Event>| {
        // Reads (ours included) are not changes.
        if event.is_ok_and(|e| e.kind.is_access()) {
            return;
        }
        count.send_modify(|c| *c += 1);
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(path, notify::RecursiveMode::Recursive)?;
        Ok(w)
    });
    match watched {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot watch the configuration for changes; polling it only");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sextant-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        dir
    }

    #[test]
    fn lists_yaml_files_recursively_skipping_hidden_ones() {
        let dir = scratch("list");
        for f in ["b.yaml", "a.yml", "sub/c.yaml", ".swp.yaml", "notes.txt"] {
            std::fs::write(dir.join(f), "x").expect("write");
        }
        let names: Vec<_> = yaml_files(&dir)
            .expect("lists")
            .into_iter()
            .map(|p| p.strip_prefix(&dir).expect("under").display().to_string())
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml", "sub/c.yaml"]);
        let one = dir.join("b.yaml");
        assert_eq!(yaml_files(&one).expect("a file"), [one]);
        let (path, _) = yaml_files(&dir.join("missing")).expect_err("missing");
        assert!(path.ends_with("missing"));
    }

    #[test]
    fn the_fingerprint_follows_names_and_sizes_not_other_files() {
        let dir = scratch("fingerprint");
        std::fs::write(dir.join("a.yaml"), "x").expect("write");
        let first = fingerprint(&dir);
        std::fs::write(dir.join("notes.txt"), "ignored").expect("write");
        assert_eq!(fingerprint(&dir), first);
        std::fs::write(dir.join("a.yaml"), "longer").expect("write");
        let grown = fingerprint(&dir);
        assert_ne!(grown, first);
        std::fs::write(dir.join("sub/b.yaml"), "y").expect("write");
        assert_ne!(fingerprint(&dir), grown);
    }

    /// A change is reported once the burst of writes is over, and the state then seen is not reported again.
    #[tokio::test]
    async fn a_burst_of_writes_is_one_change() {
        let dir = scratch("burst");
        std::fs::write(dir.join("a.yaml"), "1").expect("write");
        // A long poll: the events alone must find the change.
        let mut watch = DirWatch::start(
            dir.clone(),
            Duration::from_secs(3600),
            Duration::from_millis(50),
        )
        .await;
        for i in 0..5 {
            std::fs::write(dir.join("a.yaml"), "x".repeat(i + 2)).expect("write");
        }
        tokio::time::timeout(Duration::from_secs(30), watch.changed())
            .await
            .expect("the change is reported");
        assert_eq!(
            watch.seen,
            fingerprint(&dir),
            "the final state is the one seen"
        );
        let again = tokio::time::timeout(Duration::from_millis(300), watch.changed()).await;
        assert!(again.is_err(), "nothing changed since");
    }

    /// Files written without pause are still reported (and read) while the writing goes on.
    #[tokio::test]
    async fn writing_without_pause_is_reported_while_it_lasts() {
        let dir = scratch("stream");
        std::fs::write(dir.join("a.yaml"), "0").expect("write");
        let mut watch = DirWatch::start(
            dir.clone(),
            Duration::from_secs(3600),
            Duration::from_millis(20),
        )
        .await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (dir, stop) = (dir.clone(), stop.clone());
            // Writes every 2 ms, far within the quiet period, until told to stop (or for about a minute).
            std::thread::spawn(move || {
                for i in 0..30_000u32 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return true;
                    }
                    std::fs::write(dir.join("a.yaml"), i.to_string()).expect("write");
                    std::thread::sleep(Duration::from_millis(2));
                }
                false
            })
        };
        watch.changed().await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            writer.join().expect("writer"),
            "the change was reported only after the writing stopped"
        );
    }

    /// Without file-system events (a poll alone), a change is still found.
    #[tokio::test]
    async fn the_poll_finds_a_change_without_events() {
        let dir = scratch("poll");
        std::fs::write(dir.join("a.yaml"), "1").expect("write");
        let mut watch = DirWatch::start(
            dir.clone(),
            Duration::from_millis(20),
            Duration::from_millis(10),
        )
        .await;
        watch._fs = None;
        std::fs::write(dir.join("b.yaml"), "2").expect("write");
        tokio::time::timeout(Duration::from_secs(30), watch.changed())
            .await
            .expect("the poll finds it");
    }
}
