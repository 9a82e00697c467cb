//! A local identity provider that behaves like Azure AD's v2.0 endpoints as Microsoft
//! documents them, for tests: one tenant, published in each cloud under its own path
//! (`https://127.0.0.1:<port>/<cloud>/<tenant>/…`) with the issuer host and signing key of
//! that cloud.
//!
//! - `/<cloud>/<tenant>/v2.0/.well-known/openid-configuration` and
//!   `/<cloud>/<tenant>/discovery/v2.0/keys`: the configuration and the keys;
//! - `/<cloud>/<tenant>/oauth2/v2.0/authorize`: checks the request like Azure AD (known
//!   application, registered redirect URI, `response_type=code`, `openid` in the scope, a
//!   PKCE challenge with S256) and shows a sign-in form; a signed-in user is sent back with a
//!   code and the state, a user who cancels with `access_denied`;
//! - `/<cloud>/<tenant>/oauth2/v2.0/token`: redeems a code once, within ten minutes, for the
//!   application it was issued to, with the same redirect URI, the verifier of the challenge
//!   and the application's secret or certificate assertion; errors are Azure AD's JSON
//!   (`error`, `error_description` with an AADSTS code, `error_codes`, ids and time).
//!
//! It is stricter than Azure AD in three places, on purpose: PKCE with S256 and the `openid`
//! scope are required, and only `response_mode=query` is answered. [`Tamper`] makes it issue the ID tokens an
//! attacker or a broken provider would; [`LocalIdp::rotate_keys`] rolls a cloud's signing key
//! over. It serves HTTPS with a certificate made at start (see [`tls`]).

pub mod browserless;
pub mod keys;
pub mod tls;

mod authorize;
mod metadata;
mod token_endpoint;

use crate::cloud::Cloud;
use crate::encoding::{b64url, random_token, sha256};
use keys::{TestKey, fixture};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The tenant id of the local directory.
pub const TENANT_ID: &str = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346";
/// The tenant's verified domain, which also names it in URLs.
pub const TENANT_DOMAIN: &str = "contoso.test";
/// A tenant id of nobody we know, for "another tenant" tokens.
pub const OTHER_TENANT_ID: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";
/// How long a code may wait before it is redeemed, in seconds (Azure AD: 10 minutes).
pub const CODE_LIFETIME_SECS: i64 = 600;

/// An application registration.
#[derive(Clone, Debug)]
pub struct App {
    /// The application (client) id.
    pub client_id: String,
    /// Client secrets' values.
    pub secrets: Vec<String>,
    /// Certificates (DER) whose keys may sign client assertions.
    pub certificates: Vec<Vec<u8>>,
    /// The redirect URIs registered for the web platform, compared exactly.
    pub redirect_uris: Vec<String>,
    /// Whether the registration asks for the `groups` claim (`groupMembershipClaims`).
    pub groups_claim: bool,
}

/// A user of the directory.
#[derive(Clone, Debug)]
pub struct User {
    /// The sign-in name (UPN).
    pub username: String,
    /// The password the sign-in form checks.
    pub password: String,
    /// The object id.
    pub object_id: String,
    /// The display name.
    pub name: String,
    /// The object ids of the groups the user is in.
    pub groups: Vec<String>,
    /// App role values assigned to the user.
    pub app_roles: Vec<String>,
}

/// How the next ID tokens are spoiled, to see the client refuse them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tamper {
    /// Honest tokens.
    #[default]
    None,
    /// The issuer of another cloud.
    WrongIssuer,
    /// Meant for another application.
    WrongAudience,
    /// Another sign-in's nonce.
    WrongNonce,
    /// From another tenant (`tid`).
    WrongTenant,
    /// Signed by a key that is not the one its `kid` names.
    BadSignature,
    /// Expired an hour ago.
    Expired,
    /// Signed by a key the tenant never published, under that key's own id.
    UnknownKey,
}

/// How often each endpoint was asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    /// OpenID configurations served.
    pub discovery: u32,
    /// Key sets served.
    pub keys: u32,
    /// Authorization requests (the sign-in form shown or refused).
    pub authorize: u32,
    /// Token requests, answered or refused.
    pub token: u32,
    /// Tokens issued.
    pub issued: u32,
}

/// A cloud's signing keys: all published, one signing.
struct CloudKeys {
    published: Vec<TestKey>,
    active: usize,
}

/// An authorization request waiting for its user to sign in.
#[derive(Clone, Debug)]
struct PendingSignIn {
    cloud: Cloud,
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    challenge: String,
    scope: String,
}

/// A code issued and not yet redeemed (or redeemed, to say so).
#[derive(Clone, Debug)]
struct IssuedCode {
    request: PendingSignIn,
    user: User,
    issued_at: i64,
    redeemed: bool,
}

struct Directory {
    apps: Vec<App>,
    users: Vec<User>,
    keys: HashMap<Cloud, CloudKeys>,
    pending: HashMap<String, PendingSignIn>,
    codes: HashMap<String, IssuedCode>,
    /// Client assertion ids already used; a replayed assertion is refused.
    assertion_ids: HashSet<String>,
    tamper: Tamper,
    hits: Hits,
}

/// The provider's state, shared by its handlers and the test.
pub(crate) struct Idp {
    base_url: String,
    directory: Mutex<Directory>,
}

/// A running local identity provider; it stops when dropped.
pub struct LocalIdp {
    idp: Arc<Idp>,
    tls: tls::TlsIdentity,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The path segment of a cloud.
fn cloud_segment(cloud: Cloud) -> &'static str {
    cloud.as_str()
}

fn cloud_of(segment: &str) -> Option<Cloud> {
    [Cloud::Global, Cloud::UsGov, Cloud::China, Cloud::Custom]
        .into_iter()
        .find(|c| c.as_str() == segment)
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl LocalIdp {
    /// Starts the provider on a free port of 127.0.0.1 with these registrations and users.
    pub async fn start(apps: Vec<App>, users: Vec<User>) -> LocalIdp {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the local identity provider");
        let address = tcp.local_addr().expect("its address");
        let mut keys = HashMap::new();
        for (cloud, key) in [
            (Cloud::Global, "global"),
            (Cloud::UsGov, "us_gov"),
            (Cloud::China, "china"),
            (Cloud::Custom, "global"),
        ] {
            keys.insert(
                cloud,
                CloudKeys {
                    published: vec![fixture(key)],
                    active: 0,
                },
            );
        }
        let idp = Arc::new(Idp {
            base_url: format!("https://{address}"),
            directory: Mutex::new(Directory {
                apps,
                users,
                keys,
                pending: HashMap::new(),
                codes: HashMap::new(),
                assertion_ids: HashSet::new(),
                tamper: Tamper::None,
                hits: Hits::default(),
            }),
        });
        let tls = tls::TlsIdentity::generate();
        let listener = tls::TlsListener::new(tcp, &tls);
        let router = router(idp.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        LocalIdp { idp, tls, task }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.idp.base_url
    }

    /// The authority to configure for `cloud`: `https://127.0.0.1:<port>/<cloud>`.
    pub fn authority(&self, cloud: Cloud) -> String {
        self.idp.authority(cloud)
    }

    /// The issuer of `cloud`'s ID tokens.
    pub fn issuer(&self, cloud: Cloud) -> String {
        self.idp.issuer(cloud, TENANT_ID)
    }

    /// The HTTPS certificate (PEM), to trust as `ca_file`.
    pub fn certificate_pem(&self) -> &str {
        &self.tls.certificate_pem
    }

    /// The HTTPS key's SPKI SHA-256 (base64), for Chromium's
    /// `--ignore-certificate-errors-spki-list`.
    pub fn spki_sha256(&self) -> &str {
        &self.tls.spki_sha256
    }

    /// Spoils the ID tokens issued from now on.
    pub fn tamper(&self, tamper: Tamper) {
        self.idp.lock().tamper = tamper;
    }

    /// Publishes the `rotated` key in `cloud` and signs with it from now on; the old key
    /// stays published, as Azure AD keeps it for a while.
    pub fn rotate_keys(&self, cloud: Cloud) -> TestKey {
        let mut directory = self.idp.lock();
        let keys = directory
            .keys
            .get_mut(&cloud)
            .expect("every cloud has keys");
        let rotated = fixture("rotated");
        if !keys.published.iter().any(|k| k.kid == rotated.kid) {
            keys.published.push(rotated.clone());
        }
        keys.active = keys
            .published
            .iter()
            .position(|k| k.kid == rotated.kid)
            .expect("just published");
        rotated
    }

    /// The key `cloud` signs with.
    pub fn signing_key(&self, cloud: Cloud) -> TestKey {
        let directory = self.idp.lock();
        let keys = &directory.keys[&cloud];
        keys.published[keys.active].clone()
    }

    /// How often each endpoint was asked.
    pub fn hits(&self) -> Hits {
        self.idp.lock().hits
    }

    /// Changes a user (found by user name), for example their groups.
    pub fn update_user(&self, username: &str, change: impl FnOnce(&mut User)) {
        let mut directory = self.idp.lock();
        let user = directory
            .users
            .iter_mut()
            .find(|u| u.username == username)
            .unwrap_or_else(|| panic!("no user {username}"));
        change(user);
    }
}

impl Idp {
    fn lock(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authority(&self, cloud: Cloud) -> String {
        format!("{}/{}", self.base_url, cloud_segment(cloud))
    }

    /// The issuer in the cloud's own host, except for a custom cloud, whose issuer is its
    /// authority.
    fn issuer(&self, cloud: Cloud, tenant_id: &str) -> String {
        match cloud.issuer_hosts().first() {
            Some(host) => format!("https://{host}/{tenant_id}/v2.0"),
            None => format!("{}/{tenant_id}/v2.0", self.authority(cloud)),
        }
    }

    /// Whether `tenant` (from a URL) is this directory: its id or its domain.
    fn is_tenant(tenant: &str) -> bool {
        tenant.eq_ignore_ascii_case(TENANT_ID) || tenant.eq_ignore_ascii_case(TENANT_DOMAIN)
    }

    /// Signs the ID token of a redeemed code, spoiled as [`Tamper`] says.
    fn id_token(&self, code: &IssuedCode, directory: &Directory) -> String {
        let request = &code.request;
        let user = &code.user;
        let cloud = request.cloud;
        let now = now();
        let app = directory
            .apps
            .iter()
            .find(|a| a.client_id == request.client_id);
        let mut claims = json!({
            "aud": request.client_id,
            "iss": self.issuer(cloud, TENANT_ID),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "aio": random_token().unwrap_or_default(),
            "name": user.name,
            "oid": user.object_id,
            "preferred_username": user.username,
            "rh": "0.local-idp.",
            "sub": b64url(sha256(format!("{}{}", user.object_id, request.client_id).as_bytes())),
            "tid": TENANT_ID,
            "uti": random_token().unwrap_or_default()[..22].to_owned(),
            "ver": "2.0",
        });
        if let Some(nonce) = &request.nonce {
            claims["nonce"] = json!(nonce);
        }
        if request.scope.split(' ').any(|s| s == "email") {
            claims["email"] = json!(user.username);
        }
        if !user.app_roles.is_empty() {
            claims["roles"] = json!(user.app_roles);
        }
        if app.is_some_and(|a| a.groups_claim) {
            // A JWT holds at most 200 groups; beyond that Azure AD points at a query instead.
            if user.groups.len() > 200 {
                claims["_claim_names"] = json!({ "groups": "src1" });
                claims["_claim_sources"] = json!({ "src1": { "endpoint": format!(
                    "{}/graph/v1.0/users/{}/getMemberObjects", self.authority(cloud), user.object_id
                ) } });
            } else {
                claims["groups"] = json!(user.groups);
            }
        }
        let keys = &directory.keys[&cloud];
        let active = &keys.published[keys.active];
        let stranger = fixture("stranger");
        let mut signer = active;
        let mut kid = active.kid.clone();
        match directory.tamper {
            Tamper::None => {}
            Tamper::WrongIssuer => {
                let other = if cloud == Cloud::Global {
                    Cloud::UsGov
                } else {
                    Cloud::Global
                };
                claims["iss"] = json!(self.issuer(other, TENANT_ID));
            }
            Tamper::WrongAudience => claims["aud"] = json!("00000002-0000-0ff1-ce00-000000000000"),
            Tamper::WrongNonce => claims["nonce"] = json!(random_token().unwrap_or_default()),
            Tamper::WrongTenant => claims["tid"] = json!(OTHER_TENANT_ID),
            Tamper::BadSignature => signer = &stranger,
            Tamper::Expired => {
                claims["iat"] = json!(now - 7200);
                claims["nbf"] = json!(now - 7200);
                claims["exp"] = json!(now - 3600);
            }
            Tamper::UnknownKey => {
                signer = &stranger;
                kid = stranger.kid.clone();
            }
        }
        let header = json!({ "typ": "JWT", "alg": "RS256", "kid": kid });
        signer.sign_jwt(&header, &claims)
    }
}

/// An Azure AD error body: OAuth's `error` and `error_description`, and Azure AD's own
/// fields beside them.
pub(crate) fn error_body(error: &str, code: u32, text: &str) -> Value {
    let trace = random_token().unwrap_or_default();
    let timestamp = chrono_like_now();
    json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": trace,
    })
}

/// `YYYY-MM-DD hh:mm:ssZ` without a date library: days from the civil calendar algorithm.
fn chrono_like_now() -> String {
    let secs = now();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn router(idp: Arc<Idp>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/{cloud}/{tenant}/v2.0/.well-known/openid-configuration",
            get(metadata::configuration),
        )
        .route("/{cloud}/{tenant}/discovery/v2.0/keys", get(metadata::keys))
        .route(
            "/{cloud}/{tenant}/oauth2/v2.0/authorize",
            get(authorize::show).post(authorize::sign_in),
        )
        .route(
            "/{cloud}/{tenant}/oauth2/v2.0/token",
            post(token_endpoint::token),
        )
        .with_state(idp)
}
