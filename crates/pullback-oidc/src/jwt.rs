//! Reading and verifying an ID token (a JWS in compact form), without IO.
//!
//! Verification checks, in this order: the algorithm is RS256 (nothing else is accepted,
//! `none` least of all), the token names a key id, the signature verifies with the tenant's
//! key of that id, then the claims: issuer, audience (and the authorized party when there are
//! several audiences), tenant, nonce, and the times with a small allowance for clock skew.
//! Each refusal says what was wrong and what was expected, never the token itself.

use crate::encoding::from_b64url;
use crate::jwks::RsaPublicKey;
use serde::Deserialize;

/// The clock skew allowed between Azure AD and this machine, in seconds.
pub const CLOCK_SKEW_SECS: i64 = 120;

/// Why an ID token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It is not three base64url parts of JSON, or a claim has the wrong type.
    #[error("the ID token is malformed: {0}")]
    Malformed(String),
    /// Signed with something other than RS256.
    #[error("the ID token is signed with {0:?}; only RS256 is accepted")]
    Algorithm(String),
    /// The header has no `kid`.
    #[error("the ID token names no signing key (kid)")]
    NoKeyId,
    /// The tenant publishes no key of this id, even after fetching its keys again.
    #[error("the ID token is signed with key {kid:?}, which the tenant does not publish")]
    UnknownKey {
        /// The key id the token names.
        kid: String,
    },
    /// The signature does not verify.
    #[error("the ID token's signature does not verify with the tenant's key {kid:?}")]
    BadSignature {
        /// The key id the token names.
        kid: String,
    },
    /// `iss` is not the tenant's issuer in this cloud.
    #[error("the ID token was issued by {found:?}, not by the tenant's issuer {expected:?}")]
    Issuer {
        /// What the token says.
        found: String,
        /// The tenant's issuer.
        expected: String,
    },
    /// `aud` does not name this application.
    #[error("the ID token is meant for {found:?}, not for this application ({expected})")]
    Audience {
        /// What the token says.
        found: String,
        /// The client id.
        expected: String,
    },
    /// `tid` is not the configured tenant.
    #[error("the ID token is from tenant {found:?}, not from tenant {expected}")]
    Tenant {
        /// What the token says.
        found: String,
        /// The tenant id.
        expected: String,
    },
    /// `nonce` is not this sign-in's.
    #[error(
        "the ID token's nonce does not match this sign-in's (a token of another sign-in, or \
         replayed)"
    )]
    Nonce,
    /// `exp` has passed.
    #[error("the ID token expired at {exp} (Unix time); it is now {now}")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// This machine's time.
        now: i64,
    },
    /// `nbf` or `iat` is still ahead.
    #[error(
        "the ID token is not valid before {at} (Unix time) and it is now {now}; check this \
         machine's clock"
    )]
    NotYetValid {
        /// The token's `nbf` or `iat`.
        at: i64,
        /// This machine's time.
        now: i64,
    },
    /// A claim the checks need is missing.
    #[error("the ID token has no {0:?} claim")]
    Missing(&'static str),
}

/// The JOSE header fields that matter.
#[derive(Clone, Debug, Deserialize)]
pub struct Header {
    /// The signature algorithm.
    pub alg: String,
    /// The id of the signing key.
    #[serde(default)]
    pub kid: Option<String>,
    /// The media type, `JWT` for ID tokens.
    #[serde(default)]
    pub typ: Option<String>,
    /// Extensions the recipient must understand; none are.
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// `aud`: one audience or several.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// The usual case.
    One(String),
    /// Allowed by the JWT specification.
    Many(Vec<String>),
}

impl Audience {
    fn list(&self) -> Vec<&str> {
        match self {
            Audience::One(one) => vec![one.as_str()],
            Audience::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

/// The claims of a v2.0 ID token that Pullback reads.
#[derive(Clone, Debug, Deserialize)]
pub struct IdTokenClaims {
    /// The issuer: `https://<issuer host>/<tenant id>/v2.0`.
    pub iss: String,
    /// The application the token is for.
    pub aud: Audience,
    /// The party the token was issued to, when there are several audiences.
    #[serde(default)]
    pub azp: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: Option<i64>,
    /// Not before, Unix seconds.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: Option<i64>,
    /// The tenant id.
    #[serde(default)]
    pub tid: Option<String>,
    /// The user's object id in the tenant.
    #[serde(default)]
    pub oid: Option<String>,
    /// The subject, pairwise per application.
    #[serde(default)]
    pub sub: Option<String>,
    /// The nonce of the sign-in request.
    #[serde(default)]
    pub nonce: Option<String>,
    /// The user's sign-in name (UPN or e-mail); for display, not authorisation.
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// The user's display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The e-mail address, with the `email` scope.
    #[serde(default)]
    pub email: Option<String>,
    /// The UPN, when configured as an optional claim.
    #[serde(default)]
    pub upn: Option<String>,
    /// Group object ids, when the registration asks for them.
    #[serde(default)]
    pub groups: Vec<String>,
    /// App role values assigned to the user.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Present when Azure AD left the groups out because there are too many.
    #[serde(default, rename = "_claim_names")]
    pub claim_names: Option<serde_json::Value>,
    /// The implicit flow's form of the same.
    #[serde(default)]
    pub hasgroups: Option<bool>,
}

impl IdTokenClaims {
    /// Whether the groups were left out of the token (the groups overage).
    pub fn groups_left_out(&self) -> bool {
        self.hasgroups == Some(true)
            || self
                .claim_names
                .as_ref()
                .is_some_and(|names| names.get("groups").is_some())
    }
}

/// What the claims must say.
#[derive(Clone, Debug)]
pub struct Expectations<'a> {
    /// The tenant's issuer, from its OpenID configuration.
    pub issuer: &'a str,
    /// The application (client) id.
    pub client_id: &'a str,
    /// The tenant id (GUID).
    pub tenant_id: &'a str,
    /// This sign-in's nonce.
    pub nonce: &'a str,
    /// The time now, Unix seconds.
    pub now: i64,
}

/// A parsed ID token whose signature and claims are not checked yet.
#[derive(Clone, Debug)]
pub struct UnverifiedToken {
    header: Header,
    signing_input: String,
    signature: Vec<u8>,
    claims: IdTokenClaims,
}

/// Splits and decodes a compact JWS; checks nothing but its shape.
pub fn parse(token: &str) -> Result<UnverifiedToken, TokenError> {
    let malformed = |why: &str| TokenError::Malformed(why.to_owned());
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("it is not three dot-separated parts"));
    };
    let header_json =
        from_b64url(header).ok_or_else(|| malformed("the header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|e| TokenError::Malformed(format!("the header: {e}")))?;
    let payload_json =
        from_b64url(payload).ok_or_else(|| malformed("the claims are not base64url"))?;
    let claims: IdTokenClaims = serde_json::from_slice(&payload_json)
        .map_err(|e| TokenError::Malformed(format!("the claims: {e}")))?;
    let signature =
        from_b64url(signature).ok_or_else(|| malformed("the signature is not base64url"))?;
    let signing_input = format!("{}.{}", header_as_sent(token), payload);
    Ok(UnverifiedToken {
        header,
        signing_input,
        signature,
        claims,
    })
}

/// The first part exactly as sent: the signature covers the text, not its decoding.
fn header_as_sent(token: &str) -> &str {
    token.trim().split('.').next().unwrap_or_default()
}

impl UnverifiedToken {
    /// The header, for the key lookup.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Checks that the token is RS256 with a key id, and answers that id.
    pub fn key_id(&self) -> Result<&str, TokenError> {
        if self.header.alg != "RS256" {
            return Err(TokenError::Algorithm(self.header.alg.clone()));
        }
        if self.header.crit.is_some() {
            return Err(TokenError::Malformed(
                "the header names critical extensions (crit), which Pullback does not know".into(),
            ));
        }
        if let Some(typ) = &self.header.typ
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(TokenError::Malformed(format!(
                "the header's typ is {typ:?}, not JWT"
            )));
        }
        match self.header.kid.as_deref() {
            Some(kid) if !kid.is_empty() => Ok(kid),
            _ => Err(TokenError::NoKeyId),
        }
    }

    /// Verifies the RS256 signature with `key`.
    pub fn verify_signature(&self, key: &RsaPublicKey) -> Result<(), TokenError> {
        let kid = self.key_id()?.to_owned();
        let components = ring::signature::RsaPublicKeyComponents {
            n: &key.n,
            e: &key.e,
        };
        components
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                self.signing_input.as_bytes(),
                &self.signature,
            )
            .map_err(|_| TokenError::BadSignature { kid })
    }

    /// Checks the claims against what this sign-in expects. Call only after
    /// [`verify_signature`](Self::verify_signature) succeeded.
    pub fn check_claims(&self, expect: &Expectations<'_>) -> Result<&IdTokenClaims, TokenError> {
        let claims = &self.claims;
        if claims.iss != expect.issuer {
            return Err(TokenError::Issuer {
                found: claims.iss.clone(),
                expected: expect.issuer.to_owned(),
            });
        }
        let audiences = claims.aud.list();
        let for_us = audiences.contains(&expect.client_id)
            && (audiences.len() == 1 || claims.azp.as_deref() == Some(expect.client_id));
        if !for_us {
            return Err(TokenError::Audience {
                found: audiences.join(", "),
                expected: expect.client_id.to_owned(),
            });
        }
        let tid = claims.tid.as_deref().ok_or(TokenError::Missing("tid"))?;
        if !tid.eq_ignore_ascii_case(expect.tenant_id) {
            return Err(TokenError::Tenant {
                found: tid.to_owned(),
                expected: expect.tenant_id.to_owned(),
            });
        }
        let nonce = claims.nonce.as_deref().ok_or(TokenError::Nonce)?;
        if !constant_time_eq(nonce.as_bytes(), expect.nonce.as_bytes()) {
            return Err(TokenError::Nonce);
        }
        let exp = claims.exp.ok_or(TokenError::Missing("exp"))?;
        if exp + CLOCK_SKEW_SECS <= expect.now {
            return Err(TokenError::Expired {
                exp,
                now: expect.now,
            });
        }
        let iat = claims.iat.ok_or(TokenError::Missing("iat"))?;
        for at in [Some(iat), claims.nbf].into_iter().flatten() {
            if at - CLOCK_SKEW_SECS > expect.now {
                return Err(TokenError::NotYetValid {
                    at,
                    now: expect.now,
                });
            }
        }
        if claims.oid.as_deref().is_none_or(str::is_empty) {
            return Err(TokenError::Missing("oid"));
        }
        Ok(claims)
    }

    /// The claims, unverified: for messages only.
    pub fn unverified_claims(&self) -> &IdTokenClaims {
        &self.claims
    }
}

/// Compares in time that does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::b64url;
    use crate::testing::keys::{TestKey, fixture};
    use serde_json::{Value, json};

    const ISSUER: &str =
        "https://login.microsoftonline.us/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";
    const TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
    const CLIENT: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
    const NONCE: &str = "n-0S6_WzA2Mj";
    const NOW: i64 = 1_700_000_000;

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "aud": CLIENT, "tid": TENANT, "nonce": NONCE,
            "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 3600,
            "oid": "00000000-0000-0000-66f3-3332eca7ea81", "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "preferred_username": "abe@contoso.test", "ver": "2.0",
        })
    }

    fn header(key: &TestKey) -> Value {
        json!({ "alg": "RS256", "typ": "JWT", "kid": key.kid })
    }

    /// Checks one token against the global key and the expectations above.
    fn check(header: Value, claims: Value, signer: &TestKey) -> Result<String, TokenError> {
        let token = signer.sign_jwt(&header, &claims);
        verify(&token)
    }

    fn verify(token: &str) -> Result<String, TokenError> {
        let trusted = fixture("us_gov");
        let parsed = parse(token)?;
        let kid = parsed.key_id()?;
        if kid != trusted.kid {
            return Err(TokenError::UnknownKey {
                kid: kid.to_owned(),
            });
        }
        parsed.verify_signature(&trusted.public())?;
        let expect = Expectations {
            issuer: ISSUER,
            client_id: CLIENT,
            tenant_id: TENANT,
            nonce: NONCE,
            now: NOW,
        };
        let claims = parsed.check_claims(&expect)?;
        Ok(claims.preferred_username.clone().unwrap_or_default())
    }

    fn with(mut value: Value, key: &str, new: Value) -> Value {
        value[key] = new;
        value
    }

    fn without(mut value: Value, key: &str) -> Value {
        value.as_object_mut().unwrap().remove(key);
        value
    }

    #[test]
    fn a_good_token_verifies() {
        let key = fixture("us_gov");
        assert_eq!(
            check(header(&key), claims(), &key).unwrap(),
            "abe@contoso.test"
        );
        // Several audiences are fine when the authorized party is this application.
        let many = with(claims(), "aud", json!([CLIENT, "api://other"]));
        let many = with(many, "azp", json!(CLIENT));
        assert!(check(header(&key), many, &key).is_ok());
        // Within the allowed skew on both sides.
        let late = with(claims(), "exp", json!(NOW - CLOCK_SKEW_SECS + 1));
        assert!(check(header(&key), late, &key).is_ok());
        let early = with(claims(), "nbf", json!(NOW + CLOCK_SKEW_SECS));
        assert!(check(header(&key), early, &key).is_ok());
    }

    #[test]
    fn every_tampering_is_refused_with_what_was_wrong() {
        let key = fixture("us_gov");
        let stranger = fixture("stranger");
        let global_issuer =
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";
        let cases: Vec<(&str, Value, Value, &TestKey, &str)> = vec![
            (
                "issuer of another cloud",
                header(&key),
                with(claims(), "iss", json!(global_issuer)),
                &key,
                "issued by \"https://login.microsoftonline.com/",
            ),
            (
                "issuer of another tenant",
                header(&key),
                with(
                    claims(),
                    "iss",
                    json!(
                        "https://login.microsoftonline.us/f8cdef31-a31e-4b4a-93e4-5f571e91255a/v2.0"
                    ),
                ),
                &key,
                "not by the tenant's issuer",
            ),
            (
                "audience of another application",
                header(&key),
                with(
                    claims(),
                    "aud",
                    json!("00000003-0000-0000-c000-000000000000"),
                ),
                &key,
                "meant for \"00000003-0000-0000-c000-000000000000\"",
            ),
            (
                "several audiences, issued to another party",
                header(&key),
                with(
                    with(claims(), "aud", json!([CLIENT, "api://other"])),
                    "azp",
                    json!("api://other"),
                ),
                &key,
                "not for this application",
            ),
            (
                "another tenant",
                header(&key),
                with(
                    claims(),
                    "tid",
                    json!("f8cdef31-a31e-4b4a-93e4-5f571e91255a"),
                ),
                &key,
                "from tenant \"f8cdef31",
            ),
            (
                "no tenant",
                header(&key),
                without(claims(), "tid"),
                &key,
                "no \"tid\" claim",
            ),
            (
                "wrong nonce",
                header(&key),
                with(claims(), "nonce", json!("another-sign-in")),
                &key,
                "nonce does not match",
            ),
            (
                "no nonce",
                header(&key),
                without(claims(), "nonce"),
                &key,
                "nonce does not match",
            ),
            (
                "expired",
                header(&key),
                with(claims(), "exp", json!(NOW - CLOCK_SKEW_SECS)),
                &key,
                "expired at",
            ),
            (
                "no expiry",
                header(&key),
                without(claims(), "exp"),
                &key,
                "no \"exp\" claim",
            ),
            (
                "not valid yet",
                header(&key),
                with(claims(), "nbf", json!(NOW + CLOCK_SKEW_SECS + 1)),
                &key,
                "not valid before",
            ),
            (
                "issued in the future",
                header(&key),
                with(claims(), "iat", json!(NOW + 3600)),
                &key,
                "not valid before",
            ),
            (
                "no object id",
                header(&key),
                without(claims(), "oid"),
                &key,
                "no \"oid\" claim",
            ),
            (
                "signed by a stranger under the tenant's key id",
                header(&key),
                claims(),
                &stranger,
                "signature does not verify",
            ),
            (
                "signed by a key the tenant does not publish",
                header(&stranger),
                claims(),
                &stranger,
                "does not publish",
            ),
            (
                "no key id",
                json!({ "alg": "RS256", "typ": "JWT" }),
                claims(),
                &key,
                "names no signing key",
            ),
            (
                "HS256",
                json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid }),
                claims(),
                &key,
                "signed with \"HS256\"",
            ),
            (
                "an access token's type",
                json!({ "alg": "RS256", "typ": "at+jwt", "kid": key.kid }),
                claims(),
                &key,
                "typ is \"at+jwt\"",
            ),
            (
                "critical extensions",
                json!({ "alg": "RS256", "kid": key.kid, "crit": ["exp"] }),
                claims(),
                &key,
                "critical extensions",
            ),
        ];
        for (case, header, claims, signer, expected) in cases {
            let refused = check(header, claims, signer).expect_err(case).to_string();
            assert!(
                refused.contains(expected),
                "{case}: {expected:?} not in {refused:?}"
            );
        }
    }

    #[test]
    fn changed_claims_break_the_signature_and_none_is_refused() {
        let key = fixture("us_gov");
        let token = key.sign_jwt(&header(&key), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        // Another user's claims under the original signature.
        let forged = b64url(
            serde_json::to_vec(&with(claims(), "preferred_username", json!("mallory"))).unwrap(),
        );
        let swapped = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert!(matches!(
            verify(&swapped),
            Err(TokenError::BadSignature { .. })
        ));
        // The same header re-encoded (whitespace) changes the signed text too.
        let spaced = b64url(serde_json::to_vec_pretty(&header(&key)).unwrap());
        let respaced = format!("{spaced}.{}.{}", parts[1], parts[2]);
        assert!(matches!(
            verify(&respaced),
            Err(TokenError::BadSignature { .. })
        ));
        // alg none with no signature.
        let none = format!("{}.{}.", b64url(br#"{"alg":"none","kid":"x"}"#), parts[1]);
        assert_eq!(verify(&none), Err(TokenError::Algorithm("none".into())));
        // A truncated signature.
        let short = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]);
        assert!(matches!(
            verify(&short),
            Err(TokenError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_tokens_say_which_part_is_wrong() {
        for (token, expected) in [
            ("a.b", "three dot-separated parts"),
            ("a.b.c.d", "three dot-separated parts"),
            ("!!.e30.", "header is not base64url"),
            ("e30.e30.", "the header: missing field `alg`"),
            ("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.", "the claims"),
            ("eyJhbGciOiJSUzI1NiJ9.e30.", "missing field `iss`"),
        ] {
            let refused = verify(token).expect_err(token).to_string();
            assert!(refused.contains(expected), "{token}: {refused}");
        }
    }

    #[test]
    fn the_groups_overage_is_recognised() {
        let key = fixture("us_gov");
        let overage = with(claims(), "_claim_names", json!({ "groups": "src1" }));
        let token = key.sign_jwt(&header(&key), &overage);
        assert!(parse(&token).unwrap().unverified_claims().groups_left_out());
        let token = key.sign_jwt(&header(&key), &claims());
        assert!(!parse(&token).unwrap().unverified_claims().groups_left_out());
    }
}
