//! The bootstrap tokens that prove workload identities to the certificate API (file mode): one file per
//! identity, `<config-dir>/tokens/NAMESPACE/SERVICE_ACCOUNT`, holding that identity's token (surrounding
//! space ignored). A presented token is compared with every known one by their SHA-256 digests, in constant
//! time per comparison and without stopping at a match, so the time taken says nothing about how close a
//! guess was. The directory is looked at again at most once a second ([`RECHECK`]) and read again only when
//! the names, sizes or modification times of its files changed, so a token added or removed takes effect
//! without a restart. Bounded: [`MAX_TOKENS`] files, [`MAX_TOKEN_BYTES`] each.
//!
//! Kubernetes service-account tokens checked by a TokenReview are Kubernetes mode's other
//! [`Authenticator`] ([`TokenReviewAuthenticator`](super::TokenReviewAuthenticator)).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::authenticate::{AuthError, Authenticator};
use super::identity::Identity;

/// Token files read at most; beyond, the rest are left out (and said so in the log).
pub const MAX_TOKENS: usize = 10_000;
/// The longest token, in bytes (files and presented tokens beyond are refused).
pub const MAX_TOKEN_BYTES: usize = 4096;
/// How long the directory is trusted not to have changed before it is looked at again.
pub const RECHECK: Duration = Duration::from_secs(1);

struct Entry {
    digest: [u8; 32],
    identity: Identity,
}

#[derive(Default)]
struct Loaded {
    fingerprint: Option<u64>,
    checked: Option<Instant>,
    entries: Arc<Vec<Entry>>,
}

/// The tokens of a directory, kept current.
pub struct TokenStore {
    dir: PathBuf,
    recheck: Duration,
    loaded: tokio::sync::Mutex<Loaded>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// The tokens under `dir` (`NAMESPACE/SERVICE_ACCOUNT` files); a missing directory holds none.
    pub fn new(dir: PathBuf) -> TokenStore {
        TokenStore {
            dir,
            recheck: RECHECK,
            loaded: tokio::sync::Mutex::new(Loaded::default()),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The identity whose token `token` is (surrounding space ignored), if any.
    pub async fn identity_of(&self, token: &str) -> Option<Identity> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let entries = self.entries().await;
        let presented = digest(token.as_bytes());
        let mut found = None;
        // Every entry is compared, whatever matched before.
        for e in entries.iter() {
            if equal(&e.digest, &presented) {
                found = Some(e.identity.clone());
            }
        }
        found
    }

    /// How many identities have a token now.
    pub async fn len(&self) -> usize {
        self.entries().await.len()
    }

    /// Whether no identity has a token now.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    async fn entries(&self) -> Arc<Vec<Entry>> {
        let mut loaded = self.loaded.lock().await;
        if loaded.checked.is_some_and(|t| t.elapsed() < self.recheck) {
            return loaded.entries.clone();
        }
        let (dir, previous) = (self.dir.clone(), loaded.fingerprint);
        match tokio::task::spawn_blocking(move || scan(&dir, previous)).await {
            Ok((fingerprint, entries)) => {
                loaded.fingerprint = Some(fingerprint);
                if let Some(entries) = entries {
                    loaded.entries = Arc::new(entries);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the bootstrap tokens failed; keeping the ones read before")
            }
        }
        loaded.checked = Some(Instant::now());
        loaded.entries.clone()
    }
}

#[tonic::async_trait]
impl Authenticator for TokenStore {
    async fn identity_of(&self, token: &str) -> Result<Option<Identity>, AuthError> {
        Ok(TokenStore::identity_of(self, token).await)
    }

    fn describe(&self) -> String {
        format!("bootstrap tokens in {}", self.dir.display())
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality of two digests in time independent of where they differ.
fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A token file found: its identity and path.
struct Found {
    identity: Identity,
    path: PathBuf,
}

/// The directory's fingerprint and, when it differs from `previous`, its tokens. Blocking.
fn scan(dir: &Path, previous: Option<u64>) -> (u64, Option<Vec<Entry>>) {
    let mut hasher = std::hash::DefaultHasher::new();
    let mut skipped = Vec::new();
    let found = list(dir, &mut hasher, &mut skipped);
    let fingerprint = hasher.finish();
    if previous == Some(fingerprint) {
        return (fingerprint, None);
    }
    for why in &skipped {
        tracing::warn!(dir = %dir.display(), "bootstrap tokens: {why}");
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(found.len());
    for f in found {
        let text = match read_bounded(&f.path) {
            Ok(text) => text,
            Err(why) => {
                tracing::warn!(file = %f.path.display(), "bootstrap token left out: {why}");
                continue;
            }
        };
        let token = text.trim();
        if token.is_empty() {
            tracing::warn!(file = %f.path.display(), "bootstrap token left out: the file is empty");
            continue;
        }
        entries.push(Entry {
            digest: digest(token.as_bytes()),
            identity: f.identity,
        });
    }
    // A token shared by two identities proves neither.
    let shared: Vec<[u8; 32]> = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| entries[..*i].iter().any(|o| o.digest == e.digest))
        .map(|(_, e)| e.digest)
        .collect();
    entries.retain(|e| {
        let keep = !shared.contains(&e.digest);
        if !keep {
            tracing::warn!(identity = %e.identity, "bootstrap token left out: another identity has the same token");
        }
        keep
    });
    tracing::info!(dir = %dir.display(), identities = entries.len(), "bootstrap tokens loaded");
    (fingerprint, Some(entries))
}

/// The token files under `dir`, their names, sizes and modification times hashed into `hasher`; what is
/// left out is described in `skipped`.
fn list(dir: &Path, hasher: &mut impl Hasher, skipped: &mut Vec<String>) -> Vec<Found> {
    let mut found = Vec::new();
    let namespaces = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            e.kind().hash(hasher);
            if e.kind() != std::io::ErrorKind::NotFound {
                skipped.push(format!("cannot read the directory: {e}"));
            }
            return found;
        }
    };
    let mut namespaces: Vec<_> = namespaces.flatten().map(|e| e.path()).collect();
    namespaces.sort();
    for ns_path in namespaces {
        let Some(namespace) = visible_name(&ns_path) else {
            continue;
        };
        if !ns_path.is_dir() {
            skipped.push(format!(
                "{} is not a namespace directory (tokens are NAMESPACE/SERVICE_ACCOUNT files)",
                ns_path.display()
            ));
            continue;
        }
        if !valid_name(&namespace) {
            skipped.push(format!("{namespace:?} is not a namespace name"));
            continue;
        }
        let Ok(accounts) = std::fs::read_dir(&ns_path) else {
            skipped.push(format!("cannot read {}", ns_path.display()));
            continue;
        };
        let mut accounts: Vec<_> = accounts.flatten().map(|e| e.path()).collect();
        accounts.sort();
        for path in accounts {
            let Some(account) = visible_name(&path) else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            if !valid_name(&account) {
                skipped.push(format!("{account:?} is not a service account name"));
                continue;
            }
            if found.len() == MAX_TOKENS {
                skipped.push(format!(
                    "more than {MAX_TOKENS} token files; the rest are left out"
                ));
                return found;
            }
            (&namespace, &account, meta.len(), meta.modified().ok()).hash(hasher);
            found.push(Found {
                identity: Identity {
                    namespace: namespace.clone(),
                    service_account: account,
                },
                path,
            });
        }
    }
    found
}

/// The file name, unless it is hidden (editors' and atomic writers' temporary files, Kubernetes' `..data`).
fn visible_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    (!name.starts_with('.')).then(|| name.to_string())
}

/// A Kubernetes name: lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit.
pub(super) fn valid_name(name: &str) -> bool {
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.first().is_some_and(|b| edge(*b))
        && bytes.last().is_some_and(|b| edge(*b))
        && bytes.iter().all(|b| edge(*b) || *b == b'-' || *b == b'.')
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    let limit = u64::try_from(MAX_TOKEN_BYTES).unwrap_or(u64::MAX) + 64;
    file.take(limit)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.trim().len() > MAX_TOKEN_BYTES {
        return Err(format!("longer than {MAX_TOKEN_BYTES} bytes"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pilot-tokens-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn write(dir: &Path, ns: &str, sa: &str, token: &str) {
        std::fs::create_dir_all(dir.join(ns)).expect("ns dir");
        std::fs::write(dir.join(ns).join(sa), token).expect("token");
    }

    fn id(ns: &str, sa: &str) -> Option<Identity> {
        Some(Identity {
            namespace: ns.into(),
            service_account: sa.into(),
        })
    }

    #[tokio::test]
    async fn a_token_is_its_files_identity_and_changes_need_no_restart() {
        let dir = scratch("lookup");
        write(&dir, "shop", "web", "web-secret\n");
        write(&dir, "shop", "front", "  front-secret ");
        write(&dir, "shop", ".front.tmp", "hidden");
        write(&dir, "Shop", "web", "bad-namespace");
        write(&dir, "shop", "twin-a", "same");
        write(&dir, "shop", "twin-b", "same");
        let mut store = TokenStore::new(dir.clone());
        store.recheck = Duration::ZERO;
        assert_eq!(store.identity_of("web-secret").await, id("shop", "web"));
        assert_eq!(
            store.identity_of(" front-secret\n").await,
            id("shop", "front")
        );
        for refused in ["", "web", "web-secret-", "hidden", "bad-namespace", "same"] {
            assert_eq!(store.identity_of(refused).await, None, "{refused:?}");
        }
        assert_eq!(store.len().await, 2);
        assert_eq!(
            store.identity_of(&"x".repeat(MAX_TOKEN_BYTES + 1)).await,
            None
        );

        // Added, then rotated and removed: read again without a restart.
        write(&dir, "pay", "api", "api-secret");
        assert_eq!(store.identity_of("api-secret").await, id("pay", "api"));
        write(&dir, "shop", "web", "web-rotated-longer");
        assert_eq!(store.identity_of("web-secret").await, None);
        assert_eq!(
            store.identity_of("web-rotated-longer").await,
            id("shop", "web")
        );
        std::fs::remove_file(dir.join("pay/api")).expect("remove");
        assert_eq!(store.identity_of("api-secret").await, None);
        std::fs::remove_dir_all(&dir).ok();
        assert!(store.is_empty().await, "a directory gone holds no token");
    }

    #[test]
    fn digests_compare_equal_only_when_equal() {
        let a = digest(b"a");
        assert!(equal(&a, &digest(b"a")));
        assert!(!equal(&a, &digest(b"b")));
        let mut last = a;
        last[31] ^= 1;
        assert!(!equal(&a, &last));
    }

    #[test]
    fn names_are_kubernetes_names() {
        for ok in ["web", "a", "bookinfo-reviews", "sa.v1", "0x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Web", "-web", "web-", "a/b", "a b", ".."] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
