//! The release keys an upgrade image must be signed with.
//!
//! A slot carries the public keys its release trusts in
//! `/usr/lib/pullback/trusted-release-keys`, one per line: `ed25519 <64 hex digits> <name>`.
//! A release can introduce a new key by shipping it in this file, signed with a key the
//! running release already trusts.

use ring::signature::{ED25519, UnparsedPublicKey};
use std::path::Path;

/// One trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The key's name, shown when it verified a manifest.
    pub name: String,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
}

/// The keys a release accepts upgrades from.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read.
    #[error("cannot read the trusted release keys {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A line is not `ed25519 <hex> <name>`.
    #[error("{path} line {line}: {problem}")]
    Line {
        /// The file.
        path: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The file has no key: no image could ever be accepted.
    #[error("{path} lists no key, so no upgrade image can be accepted")]
    Empty {
        /// The file.
        path: String,
    },
}

impl TrustedKeys {
    /// Reads the key file.
    pub fn read(path: &Path) -> Result<TrustedKeys, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.display().to_string(),
            error: source,
        })?;
        Self::parse(&text)
            .map_err(|(line, problem)| KeysError::Line {
                path: path.display().to_string(),
                line,
                problem,
            })
            .and_then(|keys| {
                if keys.keys.is_empty() {
                    Err(KeysError::Empty {
                        path: path.display().to_string(),
                    })
                } else {
                    Ok(keys)
                }
            })
    }

    /// Parses the key file's text; `Err` is the line number and the problem.
    pub fn parse(text: &str) -> Result<TrustedKeys, (usize, String)> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [kind, hex_key, name] = fields[..] else {
                return Err((index + 1, "expected `ed25519 <hex> <name>`".into()));
            };
            if kind != "ed25519" {
                return Err((index + 1, format!("unknown key type {kind:?}")));
            }
            let mut public_key = [0u8; 32];
            hex::decode_to_slice(hex_key, &mut public_key)
                .map_err(|_| (index + 1, "the key is not 64 hex digits".to_string()))?;
            keys.push(TrustedKey {
                name: name.to_string(),
                public_key,
            });
        }
        Ok(TrustedKeys { keys })
    }

    /// The keys, in file order.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// The key that made `signature` over `message`, if any trusted one did.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Option<&TrustedKey> {
        self.keys.iter().find(|key| {
            UnparsedPublicKey::new(&ED25519, key.public_key)
                .verify(message, signature)
                .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    pub(crate) fn key_pair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    #[test]
    fn verifies_with_the_key_that_signed_and_no_other() {
        let (signer, other) = (key_pair(1), key_pair(2));
        let text = format!(
            "# comment\n\ned25519 {} other\ned25519 {} release\n",
            hex::encode(other.public_key()),
            hex::encode(signer.public_key())
        );
        let keys = TrustedKeys::parse(&text).unwrap();
        let signature = signer.sign(b"manifest");
        assert_eq!(
            keys.verify(b"manifest", signature.as_ref()).unwrap().name,
            "release"
        );
        assert!(keys.verify(b"manifest!", signature.as_ref()).is_none());
        let only_other = TrustedKeys::parse(&format!(
            "ed25519 {} other\n",
            hex::encode(other.public_key())
        ))
        .unwrap();
        assert!(only_other.verify(b"manifest", signature.as_ref()).is_none());
    }

    #[test]
    fn names_the_bad_line() {
        let checks = [
            ("rsa 00 x\n", 1, "unknown key type"),
            ("# c\ned25519 abcd x\n", 2, "64 hex digits"),
            ("ed25519 x\n", 1, "expected"),
        ];
        for (text, line, words) in checks {
            let (at, problem) = TrustedKeys::parse(text).unwrap_err();
            assert_eq!(at, line, "{text:?}");
            assert!(problem.contains(words), "{text:?}: {problem}");
        }
    }
}
