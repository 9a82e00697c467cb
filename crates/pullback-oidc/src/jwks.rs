//! The tenant's signing keys (a JSON Web Key Set at the configuration's `jwks_uri`) and the
//! rules for fetching them again.
//!
//! Keys are cached. Azure AD publishes a new key well before it signs with it, but a key
//! set fetched before a rollover lacks the new key: a token naming an unknown key id makes the
//! set be fetched again, at most once per interval, so that a flood of such tokens cannot
//! turn into a flood of requests to Azure AD. A set older than a day is fetched again anyway.

use crate::encoding::from_b64url;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A key set is used for at most this long before it is fetched again.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(24 * 3600);

/// An RSA public key: modulus and exponent, big-endian.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// The modulus.
    pub n: Vec<u8>,
    /// The public exponent.
    pub e: Vec<u8>,
}

/// Keys by key id.
pub type KeySet = BTreeMap<String, RsaPublicKey>;

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

/// Reads a JWKS document. Keys that are not RSA signing keys with an id are skipped; a set
/// with no usable key at all is an error, since nothing could then verify.
pub fn parse_key_set(json: &[u8]) -> Result<KeySet, String> {
    let set: JwkSet =
        serde_json::from_slice(json).map_err(|e| format!("the key set is not a JWKS: {e}"))?;
    let mut keys = KeySet::new();
    for jwk in set.keys {
        if jwk.kty != "RSA" || jwk.usage.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
            continue;
        };
        let (Some(n), Some(e)) = (from_b64url(&n), from_b64url(&e)) else {
            return Err(format!("key {kid:?}: n or e is not base64url"));
        };
        // ring refuses moduli under 2048 bits at verification; say so here instead.
        let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
        if bits < 2048 {
            return Err(format!(
                "key {kid:?} has a {bits}-bit modulus; at least 2048 is needed"
            ));
        }
        keys.insert(kid, RsaPublicKey { n, e });
    }
    if keys.is_empty() {
        return Err("the key set has no RSA signing key with an id".to_owned());
    }
    Ok(keys)
}

/// The cached key set and when it was fetched.
#[derive(Debug)]
pub struct KeyCache {
    keys: KeySet,
    fetched_at: Option<Instant>,
    /// When an unknown key id last caused a fetch.
    forced_at: Option<Instant>,
    refresh_interval: Duration,
}

/// What to do for a key id.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The cached key.
    Found(RsaPublicKey),
    /// Fetch the set (none yet, too old, or the id is new and a fetch is allowed), then look
    /// again with [`KeyCache::get`].
    Fetch,
    /// The id is unknown and the set was fetched for an unknown id too recently.
    Unknown,
}

impl KeyCache {
    /// An empty cache; unknown ids fetch at most once per `refresh_interval`.
    pub fn new(refresh_interval: Duration) -> KeyCache {
        KeyCache {
            keys: KeySet::new(),
            fetched_at: None,
            forced_at: None,
            refresh_interval,
        }
    }

    /// What to do for `kid` at `now`.
    pub fn lookup(&mut self, kid: &str, now: Instant) -> Lookup {
        let fresh = self
            .fetched_at
            .is_some_and(|at| now.saturating_duration_since(at) < MAX_KEY_AGE);
        if !fresh {
            return Lookup::Fetch;
        }
        if let Some(key) = self.keys.get(kid) {
            return Lookup::Found(key.clone());
        }
        let may_force = self
            .forced_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.refresh_interval);
        if may_force {
            self.forced_at = Some(now);
            Lookup::Fetch
        } else {
            Lookup::Unknown
        }
    }

    /// Replaces the set with a fetched one.
    pub fn store(&mut self, keys: KeySet, now: Instant) {
        self.keys = keys;
        self.fetched_at = Some(now);
    }

    /// The key of `kid` in the set as it is, without fetching.
    pub fn get(&self, kid: &str) -> Option<RsaPublicKey> {
        self.keys.get(kid).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::keys::fixture;

    fn set_of(names: &[&str]) -> KeySet {
        let keys: Vec<_> = names.iter().map(|n| fixture(n).jwk()).collect();
        parse_key_set(&serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()).unwrap()
    }

    #[test]
    fn reads_rsa_signing_keys_and_skips_the_rest() {
        let global = fixture("global");
        let json = serde_json::json!({ "keys": [
            global.jwk(),
            { "kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA" },
            { "kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB" },
            { "kty": "RSA", "n": "AQAB", "e": "AQAB" },
        ]});
        let keys = parse_key_set(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec![&global.kid]);
        assert_eq!(keys[&global.kid], global.public());

        for (json, expected) in [
            (serde_json::json!({ "keys": [] }), "no RSA signing key"),
            (serde_json::json!({ "nope": 1 }), "not a JWKS"),
            (
                serde_json::json!({ "keys": [{ "kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB" }] }),
                "24-bit modulus",
            ),
        ] {
            let refused = parse_key_set(&serde_json::to_vec(&json).unwrap()).unwrap_err();
            assert!(refused.contains(expected), "{refused}");
        }
    }

    #[test]
    fn unknown_ids_fetch_again_at_most_once_per_interval() {
        let start = Instant::now();
        let interval = Duration::from_secs(60);
        let mut cache = KeyCache::new(interval);
        let global = fixture("global");
        let rotated = fixture("rotated");

        // Nothing cached: fetch.
        assert_eq!(cache.lookup(&global.kid, start), Lookup::Fetch);
        cache.store(set_of(&["global"]), start);
        assert_eq!(
            cache.lookup(&global.kid, start),
            Lookup::Found(global.public())
        );

        // The tenant rolled over: the first unknown id fetches at once.
        let later = start + Duration::from_secs(5);
        assert_eq!(cache.lookup(&rotated.kid, later), Lookup::Fetch);
        cache.store(set_of(&["global", "rotated"]), later);
        assert_eq!(cache.get(&rotated.kid), Some(rotated.public()));

        // Another unknown id within the interval does not fetch; after it, it may.
        assert_eq!(cache.lookup("forged", later), Lookup::Unknown);
        assert_eq!(
            cache.lookup("forged", later + interval - Duration::from_secs(1)),
            Lookup::Unknown
        );
        assert_eq!(cache.lookup("forged", later + interval), Lookup::Fetch);

        // A day-old set is fetched again even for a known id.
        assert_eq!(
            cache.lookup(&global.kid, later + MAX_KEY_AGE),
            Lookup::Fetch
        );
    }
}
