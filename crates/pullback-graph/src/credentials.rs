//! How the application proves who it is to the token endpoint: a client secret, or a
//! certificate whose private key signs a short-lived JWT (a client assertion).
//!
//! Microsoft documents two forms of assertion: `PS256` (RSA-PSS) with the certificate's
//! SHA-256 thumbprint in `x5t#S256`, the current one, and `RS256` (RSA PKCS#1 v1.5) with the
//! SHA-1 thumbprint in `x5t`, the older one still accepted. Both are built here from the same
//! key; neither the key nor the secret ever appears in `Debug` output or an error.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// The `client_assertion_type` of a JWT client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid; Microsoft advises five to ten minutes at most.
const ASSERTION_LIFETIME_SECS: i64 = 300;

/// The signature scheme of a client assertion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AssertionAlgorithm {
    /// RSA-PSS with SHA-256, the certificate named by its SHA-256 thumbprint (`x5t#S256`).
    #[default]
    Ps256,
    /// RSA PKCS#1 v1.5 with SHA-256, the certificate named by its SHA-1 thumbprint (`x5t`).
    Rs256,
}

impl AssertionAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionAlgorithm::Ps256 => "PS256",
            AssertionAlgorithm::Rs256 => "RS256",
        }
    }
}

/// Why a certificate credential could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the certificate is not a PEM X.509 certificate: {0}")]
    Certificate(String),
    #[error("the private key is not a PEM RSA key (PKCS#8 or PKCS#1): {0}")]
    Key(String),
    #[error("the private key is not an RSA key usable for signing: {0}")]
    Rsa(String),
    #[error("signing the client assertion failed")]
    Sign,
}

/// An application's credential for the client-credentials grant.
#[derive(Clone)]
pub enum Credential {
    /// A client secret, sent as `client_secret`.
    Secret(String),
    /// A certificate registered with the application, whose key signs each assertion.
    Certificate(CertificateCredential),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Secret(<redacted>)"),
            Credential::Certificate(cert) => f.debug_tuple("Certificate").field(cert).finish(),
        }
    }
}

/// A certificate and its RSA private key.
#[derive(Clone)]
pub struct CertificateCredential {
    key: Arc<RsaKeyPair>,
    sha1_thumbprint: Vec<u8>,
    sha256_thumbprint: Vec<u8>,
    algorithm: AssertionAlgorithm,
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("sha1_thumbprint", &hex_upper(&self.sha1_thumbprint))
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl CertificateCredential {
    /// Loads the first certificate of `cert_pem` and the RSA key of `key_pem`.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        algorithm: AssertionAlgorithm,
    ) -> Result<CertificateCredential, CredentialError> {
        let cert = CertificateDer::from_pem_slice(cert_pem)
            .map_err(|e| CredentialError::Certificate(e.to_string()))?;
        let key = match PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| CredentialError::Key(e.to_string()))?
        {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => return Err(CredentialError::Key("an EC key; Azure AD needs RSA".into())),
        }
        .map_err(|e| CredentialError::Rsa(e.to_string()))?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        let sha256 = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        Ok(CertificateCredential {
            key: Arc::new(key),
            sha1_thumbprint: sha1.as_ref().to_vec(),
            sha256_thumbprint: sha256.as_ref().to_vec(),
            algorithm,
        })
    }

    /// The SHA-1 thumbprint in hex, as the Azure portal shows it under the application's
    /// certificates.
    pub fn thumbprint(&self) -> String {
        hex_upper(&self.sha1_thumbprint)
    }

    /// A signed assertion for `client_id` addressed to the token endpoint `audience`, valid
    /// from `now` (seconds since the epoch) for five minutes.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
    ) -> Result<String, CredentialError> {
        let mut header = serde_json::json!({ "alg": self.algorithm.as_str(), "typ": "JWT" });
        match self.algorithm {
            AssertionAlgorithm::Ps256 => {
                header["x5t#S256"] = URL_SAFE_NO_PAD.encode(&self.sha256_thumbprint).into();
            }
            AssertionAlgorithm::Rs256 => {
                header["x5t"] = URL_SAFE_NO_PAD.encode(&self.sha1_thumbprint).into();
            }
        }
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": random_guid(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let scheme: &'static dyn signature::RsaEncoding = match self.algorithm {
            AssertionAlgorithm::Ps256 => &signature::RSA_PSS_SHA256,
            AssertionAlgorithm::Rs256 => &signature::RSA_PKCS1_SHA256,
        };
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                scheme,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| CredentialError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// A random version-4 GUID, for `jti`.
pub(crate) fn random_guid() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness a jti could repeat and the token endpoint would refuse it as a
    // replay; the assertion stays well formed, so fall back to the clock.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_version_four() {
        let guid = random_guid();
        assert_eq!(guid.len(), 36, "{guid}");
        assert_eq!(&guid[14..15], "4", "{guid}");
        assert_ne!(random_guid(), guid);
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", Credential::Secret("hunter2-secret".into()));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn an_ec_or_broken_key_is_named() {
        let err = CertificateCredential::from_pem(b"nothing", b"nothing", Default::default())
            .expect_err("no PEM");
        assert!(matches!(err, CredentialError::Certificate(_)), "{err}");
    }
}
