//! The committed test keys (see `keys/README.md`): signing JWTs, publishing JWKs, and making
//! a certificate credential.

use crate::encoding::{b64url, sha256};
use crate::jwks::RsaPublicKey;
use crate::settings::{ClientCredential, PrivateKey};
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::sync::Arc;

const FIXTURES: [(&str, &str); 6] = [
    ("global", include_str!("keys/global.pem")),
    ("us_gov", include_str!("keys/us_gov.pem")),
    ("china", include_str!("keys/china.pem")),
    ("rotated", include_str!("keys/rotated.pem")),
    ("stranger", include_str!("keys/stranger.pem")),
    ("client", include_str!("keys/client.pem")),
];

/// One RSA test key and its id.
#[derive(Clone)]
pub struct TestKey {
    /// The fixture's name.
    pub name: &'static str,
    /// The key id, derived from the public key as Azure AD's look (27 base64url characters).
    pub kid: String,
    pem: &'static str,
    pair: Arc<RsaKeyPair>,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({}, kid {})", self.name, self.kid)
    }
}

/// The fixture `name`: `global`, `us_gov`, `china`, `rotated`, `stranger` or `client`.
pub fn fixture(name: &str) -> TestKey {
    let (name, pem) = FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no test key {name:?}"));
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).expect("a PKCS#8 test key");
    let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("an RSA test key");
    let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    let kid = b64url(sha256(&components.n))[..27].to_owned();
    TestKey {
        name,
        kid,
        pem,
        pair: Arc::new(pair),
    }
}

impl TestKey {
    /// The public key.
    pub fn public(&self) -> RsaPublicKey {
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public());
        RsaPublicKey {
            n: components.n,
            e: components.e,
        }
    }

    /// The key as a JWK of a JWKS document.
    pub fn jwk(&self) -> Value {
        let public = self.public();
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url(&public.n),
            "e": b64url(&public.e),
        })
    }

    /// A compact JWS of `claims` under `header`, signed RS256 (whatever the header says).
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string()),
            b64url(claims.to_string())
        );
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing");
        format!("{input}.{}", b64url(signature))
    }

    /// The private key in PEM (PKCS#8).
    pub fn pem(&self) -> &'static str {
        self.pem
    }

    /// A self-signed certificate for this key, in DER and PEM.
    pub fn certificate(&self, common_name: &str) -> (Vec<u8>, String) {
        let key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(self.pem, &rcgen::PKCS_RSA_SHA256)
            .expect("rcgen reads the test key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("certificate parameters");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let certificate = params.self_signed(&key).expect("a self-signed certificate");
        (certificate.der().to_vec(), certificate.pem())
    }

    /// A certificate credential of this key, as the application would hold it.
    pub fn certificate_credential(&self, common_name: &str) -> ClientCredential {
        let (der, _) = self.certificate(common_name);
        let key = PrivatePkcs8KeyDer::from_pem_slice(self.pem.as_bytes()).expect("PKCS#8");
        ClientCredential::Certificate {
            certificate_der: der,
            key: PrivateKey {
                der: key.secret_pkcs8_der().to_vec(),
                pkcs8: true,
            },
        }
    }
}
