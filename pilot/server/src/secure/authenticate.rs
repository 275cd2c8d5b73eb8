//! Who a bearer token proves the caller is: the [`Authenticator`] seam of the certificate API, with two
//! implementations — the bootstrap token files ([`TokenStore`](super::TokenStore), file mode) and the API
//! server's TokenReview ([`TokenReviewAuthenticator`](super::TokenReviewAuthenticator), Kubernetes mode) —
//! and [`FirstOf`], which asks several in turn.

use std::sync::Arc;

use super::identity::Identity;

/// Why a token's identity could not be decided (the caller is told UNAVAILABLE, and may retry).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The API server did not say whether the token is valid.
    #[error("TokenReview: {0}")]
    Review(#[from] pilot_kube::ReviewError),
}

/// Decides the identity a bearer token proves.
#[tonic::async_trait]
pub trait Authenticator: std::fmt::Debug + Send + Sync {
    /// The identity `token` proves; `Ok(None)` when it proves none (the caller is UNAUTHENTICATED);
    /// `Err` when that cannot be known now (UNAVAILABLE). Never logs the token.
    async fn identity_of(&self, token: &str) -> Result<Option<Identity>, AuthError>;

    /// What it checks tokens against, for logs (`bootstrap tokens in DIR`, `TokenReview for [istio-ca]`).
    fn describe(&self) -> String;
}

/// Several authenticators asked in turn: the first identity found is the token's. When none finds one and
/// one of them could not tell, the answer is that error: the token may be valid.
#[derive(Debug)]
pub struct FirstOf(Vec<Arc<dyn Authenticator>>);

impl FirstOf {
    /// `authenticators`, asked in this order.
    pub fn new(authenticators: Vec<Arc<dyn Authenticator>>) -> FirstOf {
        FirstOf(authenticators)
    }
}

#[tonic::async_trait]
impl Authenticator for FirstOf {
    async fn identity_of(&self, token: &str) -> Result<Option<Identity>, AuthError> {
        let mut failed = None;
        for authenticator in &self.0 {
            match authenticator.identity_of(token).await {
                Ok(Some(identity)) => return Ok(Some(identity)),
                Ok(None) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(None), Err)
    }

    fn describe(&self) -> String {
        let each: Vec<String> = self.0.iter().map(|a| a.describe()).collect();
        each.join(", then ")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Answers `answer` for every token.
    #[derive(Debug)]
    struct Fixed(Option<&'static str>, bool);

    #[tonic::async_trait]
    impl Authenticator for Fixed {
        async fn identity_of(&self, _token: &str) -> Result<Option<Identity>, AuthError> {
            if self.1 {
                return Err(pilot_kube::ReviewError::Timeout(Duration::from_secs(5)).into());
            }
            Ok(self.0.map(|sa| Identity {
                namespace: "shop".into(),
                service_account: sa.into(),
            }))
        }

        fn describe(&self) -> String {
            format!("fixed {:?}", self.0)
        }
    }

    fn first_of(each: Vec<Fixed>) -> FirstOf {
        FirstOf::new(
            each.into_iter()
                .map(|a| Arc::new(a) as Arc<dyn Authenticator>)
                .collect(),
        )
    }

    #[tokio::test]
    async fn the_first_identity_wins_and_an_error_is_not_a_refusal() {
        let found = |r: Result<Option<Identity>, AuthError>| {
            r.expect("no error").map(|i| i.service_account)
        };
        let none = Fixed(None, false);
        let web = Fixed(Some("web"), false);
        let down = Fixed(None, true);
        let a = first_of(vec![none, web, Fixed(Some("front"), false)]);
        assert_eq!(found(a.identity_of("t").await), Some("web".into()));
        assert_eq!(
            a.describe(),
            "fixed None, then fixed Some(\"web\"), then fixed Some(\"front\")"
        );
        // One that cannot tell does not hide another's identity…
        let a = first_of(vec![Fixed(None, true), Fixed(Some("web"), false)]);
        assert_eq!(found(a.identity_of("t").await), Some("web".into()));
        // …but is not turned into "no identity" either.
        let a = first_of(vec![down, Fixed(None, false)]);
        assert!(a.identity_of("t").await.is_err());
        assert_eq!(
            found(first_of(vec![Fixed(None, false)]).identity_of("t").await),
            None
        );
    }
}
