//! What a sign-in remembers between sending the browser to Azure AD and its return: the
//! `state`, the `nonce`, the PKCE verifier and the page to return to.
//!
//! It is kept in the browser, in a short-lived `HttpOnly` cookie sealed with AES-256-GCM, so
//! that any node of the cluster can take the callback and nothing is written to the
//! replicated state before someone has signed in. The sealing key is derived (HKDF-SHA256)
//! from the application's credential, which every node has alike; the browser can neither
//! read the verifier nor forge a flow. The purpose is bound into the seal, so a value sealed
//! for one cookie cannot be replayed as another.

use crate::encoding::{b64url, from_b64url, random_bytes, random_token, sha256};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use serde::{Deserialize, Serialize};

/// How long a sign-in may take, from the redirect to the callback, in seconds.
pub const FLOW_LIFETIME_SECS: i64 = 600;

/// The longest route a sign-in returns to.
const MAX_RETURN_TO: usize = 200;

/// One sign-in in progress.
#[derive(Clone, Serialize, Deserialize)]
pub struct FlowState {
    /// Sent as `state`; the callback must bring it back.
    pub state: String,
    /// Sent as `nonce`; the ID token must carry it.
    pub nonce: String,
    /// The PKCE code verifier; only its SHA-256 (the challenge) leaves before the callback.
    pub verifier: String,
    /// The UI route to show once signed in.
    pub return_to: String,
    /// When the sign-in started, Unix seconds.
    pub started_at: i64,
}

impl std::fmt::Debug for FlowState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowState")
            .field("return_to", &self.return_to)
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

impl FlowState {
    /// A new sign-in with fresh random values.
    pub fn new(return_to: &str, now: i64) -> Result<FlowState, ring::error::Unspecified> {
        Ok(FlowState {
            state: random_token()?,
            nonce: random_token()?,
            verifier: random_token()?,
            return_to: safe_return_to(return_to),
            started_at: now,
        })
    }

    /// The PKCE challenge (S256): base64url of the verifier's SHA-256.
    pub fn challenge(&self) -> String {
        pkce_challenge(&self.verifier)
    }

    /// Whether the sign-in took too long.
    pub fn expired(&self, now: i64) -> bool {
        now - self.started_at > FLOW_LIFETIME_SECS || now < self.started_at - 60
    }
}

/// The S256 challenge of a PKCE verifier (RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    b64url(sha256(verifier.as_bytes()))
}

/// A UI route to return to: a path of the UI's own routes, or the dashboard. Nothing that
/// could lead the browser to another site or inject markup survives.
pub fn safe_return_to(route: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/-_.?=&%".contains(c);
    if route.starts_with('/')
        && !route.starts_with("//")
        && route.len() <= MAX_RETURN_TO
        && route.chars().all(allowed)
    {
        route.to_owned()
    } else {
        "/dashboard".to_owned()
    }
}

/// Seals and opens cookie values with a key derived from the application's credential.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// The sealer for a credential's secret material and the client id.
    pub fn new(secret_material: &[u8], client_id: &str) -> Sealer {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"pullback oidc cookie v1");
        let prk = salt.extract(secret_material);
        let info = [client_id.as_bytes()];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .expect("an AES-256 key is a valid HKDF output length");
        Sealer {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }

    /// Seals `plaintext` for `purpose`: base64url of a random nonce and the ciphertext.
    pub fn seal(
        &self,
        purpose: &str,
        plaintext: &[u8],
    ) -> Result<String, ring::error::Unspecified> {
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let mut data = plaintext.to_vec();
        self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(purpose.as_bytes()),
            &mut data,
        )?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Ok(b64url(out))
    }

    /// Opens a value sealed for `purpose`; `None` if it was sealed otherwise or changed.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = from_b64url(sealed)?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn flows_are_fresh_and_expire() {
        let a = FlowState::new("/incidents/7", 1000).unwrap();
        let b = FlowState::new("/incidents/7", 1000).unwrap();
        assert_ne!(a.state, b.state);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.verifier, b.verifier);
        assert_eq!(a.verifier.len(), 43);
        assert!(!a.expired(1000 + FLOW_LIFETIME_SECS));
        assert!(a.expired(1001 + FLOW_LIFETIME_SECS));
        assert!(!format!("{a:?}").contains(&a.verifier));
    }

    #[test]
    fn only_ui_routes_are_returned_to() {
        for (asked, got) in [
            ("/incidents/7", "/incidents/7"),
            ("/search?q=evil.test", "/search?q=evil.test"),
            ("//evil.test/", "/dashboard"),
            ("https://evil.test/", "/dashboard"),
            ("/x\"><script>", "/dashboard"),
            ("", "/dashboard"),
        ] {
            assert_eq!(safe_return_to(asked), got, "{asked}");
        }
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_purpose() {
        let sealer = Sealer::new(b"client secret", "app");
        let sealed = sealer.seal("flow", b"hello").unwrap();
        assert_eq!(sealer.open("flow", &sealed).as_deref(), Some(&b"hello"[..]));
        // Another purpose, another key, a changed byte or garbage: nothing.
        assert_eq!(sealer.open("error", &sealed), None);
        assert_eq!(
            Sealer::new(b"other secret", "app").open("flow", &sealed),
            None
        );
        assert_eq!(
            Sealer::new(b"client secret", "app2").open("flow", &sealed),
            None
        );
        let mut bytes = from_b64url(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(sealer.open("flow", &b64url(bytes)), None);
        assert_eq!(sealer.open("flow", "not base64!"), None);
        assert_eq!(sealer.open("flow", "AAAA"), None);
        // Two seals of one value differ (random nonces).
        assert_ne!(sealed, sealer.seal("flow", b"hello").unwrap());
    }
}
