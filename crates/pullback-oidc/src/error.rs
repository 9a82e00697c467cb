//! Why a sign-in failed, in words the person at the sign-in page can act on (or pass on to
//! whoever administers Azure AD). No message carries a secret, a code or a token.

use crate::jwt::TokenError;
use crate::roles::RoleError;

/// A failed sign-in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// Azure AD answered the browser with an error instead of a code.
    #[error("Azure AD refused the sign-in: {0}")]
    Refused(String),
    /// The callback came without the sealed flow cookie, or with one that does not open.
    #[error(
        "this sign-in was not started from this appliance, or its cookie is gone; sign in again"
    )]
    NoFlow,
    /// The flow is older than its lifetime.
    #[error("the sign-in took longer than 10 minutes; sign in again")]
    FlowExpired,
    /// `state` differs from the flow's: another sign-in's answer, or a forged one.
    #[error(
        "the answer from Azure AD belongs to another sign-in (state does not match; was one \
         started in another tab?); sign in again"
    )]
    State,
    /// The callback has neither a code nor an error.
    #[error("the answer from Azure AD has no authorization code")]
    NoCode,
    /// Azure AD could not be reached.
    #[error("cannot reach Azure AD at {url}: {reason}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// Azure AD answered something unusable.
    #[error("Azure AD's answer from {url} is not usable: {reason}")]
    BadAnswer {
        /// What was asked.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The token endpoint refused the code.
    #[error("Azure AD refused to exchange the code: {0}")]
    TokenRefused(String),
    /// The ID token failed verification.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The user has no role.
    #[error(transparent)]
    Role(#[from] RoleError),
    /// No randomness or another local failure.
    #[error("sign-in failed on this appliance: {0}")]
    Local(String),
}

impl SignInError {
    /// A short, bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SignInError::Refused(_) => "refused",
            SignInError::NoFlow | SignInError::FlowExpired | SignInError::State => "flow",
            SignInError::NoCode => "no_code",
            SignInError::Unreachable { .. } => "unreachable",
            SignInError::BadAnswer { .. } => "bad_answer",
            SignInError::TokenRefused(_) => "token_refused",
            SignInError::Token(_) => "id_token",
            SignInError::Role(_) => "no_role",
            SignInError::Local(_) => "local",
        }
    }
}
