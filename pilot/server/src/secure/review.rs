//! Kubernetes mode's [`Authenticator`]: a bearer token is a workload's service-account token when the API
//! server's TokenReview says so ([`pilot_kube::TokenReviewer`]: for the configured audience, `istio-ca` by
//! default, as a user `system:serviceaccount:NAMESPACE:NAME`), its identity then `NAMESPACE/NAME`. Positive
//! answers are remembered a short while ([`IdentityCache`]); a refusal is logged with the API server's
//! reason, an error (the API server failing, unreachable or slow) is the caller's UNAVAILABLE. The token
//! itself is never logged.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pilot_kube::{Review, ReviewError, TokenReviewer};
use sha2::{Digest, Sha256};

use super::authenticate::{AuthError, Authenticator};
use super::cache::{CACHE_MAX, CACHE_TTL, IdentityCache};
use super::identity::Identity;
use super::tokens::{MAX_TOKEN_BYTES, valid_name};

/// Tokens checked by the API server, positive answers remembered.
#[derive(Debug)]
pub struct TokenReviewAuthenticator {
    reviewer: TokenReviewer,
    cache: Mutex<IdentityCache>,
}

impl TokenReviewAuthenticator {
    /// Asks `reviewer`, remembering positive answers [`CACHE_TTL`], at most [`CACHE_MAX`] of them.
    pub fn new(reviewer: TokenReviewer) -> TokenReviewAuthenticator {
        Self::with_cache(reviewer, CACHE_TTL, CACHE_MAX)
    }

    /// Asks `reviewer`, remembering positive answers `ttl`, at most `max` of them.
    pub fn with_cache(
        reviewer: TokenReviewer,
        ttl: Duration,
        max: usize,
    ) -> TokenReviewAuthenticator {
        TokenReviewAuthenticator {
            reviewer,
            cache: Mutex::new(IdentityCache::new(ttl, max)),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, IdentityCache> {
        // Nothing is left half-done under the lock: a panic cannot leave the cache inconsistent.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[tonic::async_trait]
impl Authenticator for TokenReviewAuthenticator {
    async fn identity_of(&self, token: &str) -> Result<Option<Identity>, AuthError> {
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Ok(None);
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(identity) = self.cache().get(&key, Instant::now()) {
            return Ok(Some(identity));
        }
        match self.reviewer.review(token).await {
            Ok(Review::Authenticated(account)) => {
                if !valid_name(&account.namespace) || !valid_name(&account.name) {
                    tracing::warn!(namespace = %account.namespace, service_account = %account.name, "TokenReview vouched for a service account whose names are no Kubernetes names; refused");
                    return Ok(None);
                }
                let identity = Identity {
                    namespace: account.namespace,
                    service_account: account.name,
                };
                self.cache().insert(key, identity.clone(), Instant::now());
                Ok(Some(identity))
            }
            Ok(Review::Refused(reason)) => {
                tracing::warn!(%reason, audiences = ?self.reviewer.audiences(), "TokenReview: the API server does not vouch for the token");
                Ok(None)
            }
            Err(e) => {
                let hint = match &e {
                    ReviewError::Api {
                        code: 401 | 403, ..
                    } => {
                        "pilot's own credentials: it needs `create` on tokenreviews.authentication.k8s.io (ClusterRole system:auth-delegator)"
                    }
                    _ => "the caller is told UNAVAILABLE and retries",
                };
                tracing::warn!(error = %e, hint, "TokenReview failed; the token could be neither accepted nor refused");
                Err(e.into())
            }
        }
    }

    fn describe(&self) -> String {
        format!("TokenReview for {:?}", self.reviewer.audiences())
    }
}
