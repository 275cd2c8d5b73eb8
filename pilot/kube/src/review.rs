//! Workload tokens checked by the API server: a TokenReview (`POST
//! /apis/authentication.k8s.io/v1/tokenreviews`, `spec.token` and `spec.audiences`) says whether a bearer
//! token is a service account's, as istiod authenticates certificate requests in a cluster. The answer counts
//! only when the API server authenticated the token, for one of the audiences asked (`status.audiences`), as a
//! service account (group `system:serviceaccounts`, user `system:serviceaccount:NAMESPACE:NAME`).
//!
//! Bounded: at most [`MAX_IN_FLIGHT`] reviews at once, and each ends after its timeout (waiting for its turn
//! included). The token is never logged: the request is built and the answer read here, not by
//! `Api::create`, because the API server echoes `spec.token` in its answer and the client logs an answer it
//! cannot parse whole.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::Semaphore;

/// The audience asked for unless configured: the one Istio's agent requests its projected token for.
pub const DEFAULT_AUDIENCE: &str = "istio-ca";
/// How long a review may take unless configured (waiting for its turn included).
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Reviews sent at once at most; more wait for their turn (within their timeout).
pub const MAX_IN_FLIGHT: usize = 64;

/// The group the API server puts every service account's user in.
const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// The user name of a service account is this prefix, then `NAMESPACE:NAME`.
const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:";

/// A service account the API server vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// What the API server said of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Review {
    /// The token is this service account's, for one of the audiences asked.
    Authenticated(ServiceAccount),
    /// It is not (unknown, expired, bound to a deleted pod, for another audience, not a service account's):
    /// why, in the API server's words or ours (never the token).
    Refused(String),
}

/// Why a token could not be reviewed: the API server did not say whether it is valid.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The API server answered with an error status (its own failure, or pilot's credentials or RBAC:
    /// pilot needs `create` on `tokenreviews`, as ClusterRole `system:auth-delegator` grants).
    #[error("the API server answered {code} {reason}: {message}")]
    Api {
        /// The HTTP status.
        code: u16,
        /// The `Status` reason (`InternalError`, `Forbidden`, …).
        reason: String,
        /// The `Status` message.
        message: String,
    },
    /// No answer within the timeout (waiting for a turn among [`MAX_IN_FLIGHT`] included).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be sent or the answer not read (connection, TLS, the client's own limits).
    #[error("the API server could not be reached: {0}")]
    Transport(String),
    /// The answer was not a TokenReview.
    #[error("the answer is not a TokenReview: {0}")]
    Answer(String),
}

/// Reviews tokens with one API server.
pub struct TokenReviewer {
    client: kube::Client,
    path: String,
    audiences: Vec<String>,
    timeout: Duration,
    turns: Semaphore,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("path", &self.path)
            .field("audiences", &self.audiences)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// Reviews with `client`'s API server for `audiences` (none: the API server's own audience, and
    /// `status.audiences` not checked), each review ending after `timeout`.
    pub fn new(client: kube::Client, audiences: Vec<String>, timeout: Duration) -> TokenReviewer {
        // The collection's path, from the type: `/apis/authentication.k8s.io/v1/tokenreviews`.
        let path = Api::<TokenReview>::all(client.clone())
            .resource_url()
            .to_string();
        TokenReviewer {
            client,
            path,
            audiences,
            timeout,
            turns: Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    /// The audiences asked for.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// What the API server says of `token`.
    pub async fn review(&self, token: &str) -> Result<Review, ReviewError> {
        tokio::time::timeout(self.timeout, self.ask(token))
            .await
            .unwrap_or(Err(ReviewError::Timeout(self.timeout)))
    }

    async fn ask(&self, token: &str) -> Result<Review, ReviewError> {
        let _turn = self
            .turns
            .acquire()
            .await
            .map_err(|e| ReviewError::Transport(e.to_string()))?;
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| ReviewError::Transport(format!("encoding the TokenReview: {e}")))?;
        let request = kube::core::Request::new(&self.path)
            .create(&PostParams::default(), body)
            .map_err(|e| ReviewError::Transport(e.to_string()))?;
        let text = self
            .client
            .request_text(request)
            .await
            .map_err(ReviewError::from_kube)?;
        // Only where the answer is malformed is said: the answer echoes the token.
        let answer: TokenReview = serde_json::from_str(&text).map_err(|e| {
            ReviewError::Answer(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        Ok(judge(answer.status.unwrap_or_default(), &self.audiences))
    }
}

impl ReviewError {
    fn from_kube(e: kube::Error) -> ReviewError {
        match e {
            kube::Error::Api(status) => ReviewError::Api {
                code: status.code,
                reason: status.reason,
                message: status.message,
            },
            other => ReviewError::Transport(other.to_string()),
        }
    }
}

/// The verdict of an answer's status for a review that asked for `audiences`.
pub fn judge(status: TokenReviewStatus, audiences: &[String]) -> Review {
    if let Some(error) = status.error.filter(|e| !e.is_empty()) {
        return Review::Refused(error);
    }
    if status.authenticated != Some(true) {
        return Review::Refused("not authenticated".to_string());
    }
    let user = status.user.unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let groups = user.groups.unwrap_or_default();
    if !groups.iter().any(|g| g == SERVICE_ACCOUNTS_GROUP) {
        return Review::Refused(format!(
            "user {username:?} is not a service account (not in group {SERVICE_ACCOUNTS_GROUP})"
        ));
    }
    let confirmed = status.audiences.unwrap_or_default();
    // An audience-aware API server answers the audiences it checked; none means the token is only good for
    // the API server itself.
    if !audiences.is_empty() && !confirmed.iter().any(|a| audiences.contains(a)) {
        return Review::Refused(format!(
            "the API server confirmed audiences {confirmed:?}, none of {audiences:?}"
        ));
    }
    match service_account_of(&username) {
        Some(account) => Review::Authenticated(account),
        None => Review::Refused(format!(
            "user {username:?} is not of the form {SERVICE_ACCOUNT_USER}NAMESPACE:NAME"
        )),
    }
}

/// The service account of the user name `system:serviceaccount:NAMESPACE:NAME`.
pub fn service_account_of(username: &str) -> Option<ServiceAccount> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_USER)?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| ServiceAccount {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn status(
        authenticated: bool,
        username: &str,
        groups: &[&str],
        audiences: &[&str],
    ) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(authenticated),
            user: Some(UserInfo {
                username: Some(username.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                ..UserInfo::default()
            }),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            error: None,
        }
    }

    const SA: &[&str] = &[
        "system:serviceaccounts",
        "system:serviceaccounts:shop",
        "system:authenticated",
    ];

    fn refused(r: Review) -> String {
        match r {
            Review::Refused(why) => why,
            other => panic!("refused expected: {other:?}"),
        }
    }

    #[test]
    fn only_a_service_account_authenticated_for_our_audience_counts() {
        let ours = vec!["istio-ca".to_string()];
        let ok = status(true, "system:serviceaccount:shop:web", SA, &["istio-ca"]);
        assert_eq!(
            judge(ok.clone(), &ours),
            Review::Authenticated(ServiceAccount {
                namespace: "shop".into(),
                name: "web".into()
            })
        );
        let why = refused(judge(
            status(true, "system:serviceaccount:shop:web", SA, &[]),
            &ours,
        ));
        assert!(why.contains("none of"), "{why}");
        // Without audiences asked, the API server's own is enough.
        assert!(matches!(
            judge(status(true, "system:serviceaccount:shop:web", SA, &[]), &[]),
            Review::Authenticated(_)
        ));
        let why = refused(judge(
            status(true, "alice", &["system:authenticated"], &["istio-ca"]),
            &ours,
        ));
        assert!(why.contains("not a service account"), "{why}");
        let why = refused(judge(status(false, "", &[], &[]), &ours));
        assert_eq!(why, "not authenticated");
        let mut errored = ok;
        errored.error = Some("[invalid bearer token, token has been invalidated]".into());
        assert_eq!(
            refused(judge(errored, &ours)),
            "[invalid bearer token, token has been invalidated]"
        );
        assert_eq!(
            refused(judge(TokenReviewStatus::default(), &ours)),
            "not authenticated"
        );
    }

    #[test]
    fn service_account_user_names() {
        assert_eq!(
            service_account_of("system:serviceaccount:default:bookinfo-reviews"),
            Some(ServiceAccount {
                namespace: "default".into(),
                name: "bookinfo-reviews".into()
            })
        );
        for bad in [
            "system:serviceaccount:default",
            "system:serviceaccount::web",
            "system:serviceaccount:default:",
            "system:serviceaccount:a:b:c",
            "system:serviceaccounts:default",
            "alice",
        ] {
            assert_eq!(service_account_of(bad), None, "{bad}");
        }
    }
}
