//! The client against the local identity provider, over HTTPS, without a browser: sign-in in
//! every cloud, every kind of spoiled ID token, key rollover and the limit on key fetches,
//! certificate assertions, and the requests the provider refuses as Azure AD would.

use pullback_domain::{Role, Secret};
use pullback_oidc::client::Callback;
use pullback_oidc::flow::{FlowState, pkce_challenge};
use pullback_oidc::testing::browserless::{Outcome, sign_in};
use pullback_oidc::testing::keys::fixture;
use pullback_oidc::testing::{App, LocalIdp, TENANT_DOMAIN, TENANT_ID, Tamper, User};
use pullback_oidc::{
    ClientCredential, Cloud, OidcClient, OidcSettings, RoleMapping, RoleMembers, SignInError,
    SignedIn,
};
use serde_json::Value;
use std::time::Duration;

const CLIENT_ID: &str = "4a1aa1d5-c567-49d0-ad0b-cd957a47f842";
const SECRET: &str = "Lz58Q~local.idp.secret-value";
const REDIRECT: &str = "https://pullback.contoso.test/api/v1/oidc/callback";
const ADMINS: &str = "b8b6d0a2-4c1f-4f0b-9a5e-0c9d1e2f3a4b";
const ALICE: &str = "alice@contoso.test";
const BOB: &str = "bob@contoso.test";
const CAROL: &str = "carol@contoso.test";
const PASSWORD: &str = "correct horse";

fn user(name: &str, object_id: &str, groups: &[&str], roles: &[&str]) -> User {
    User {
        username: name.to_owned(),
        password: PASSWORD.to_owned(),
        object_id: object_id.to_owned(),
        name: name.split('@').next().unwrap_or(name).to_owned(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        app_roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

/// The provider with the application (a secret and the `client` key's certificate) and
/// three users: alice an administrator by group, bob a reader by app role, carol nothing.
async fn start_idp(certificate: Vec<u8>) -> LocalIdp {
    let app = App {
        client_id: CLIENT_ID.to_owned(),
        secrets: vec![SECRET.to_owned()],
        certificates: vec![certificate],
        redirect_uris: vec![REDIRECT.to_owned()],
        groups_claim: true,
    };
    let users = vec![
        user(
            ALICE,
            "0d2b1b8e-1111-4c5d-9e6f-000000000a11",
            &[ADMINS, "another-group"],
            &[],
        ),
        user(
            BOB,
            "0d2b1b8e-2222-4c5d-9e6f-000000000b0b",
            &[],
            &["Pullback.Reader"],
        ),
        user(
            CAROL,
            "0d2b1b8e-3333-4c5d-9e6f-000000000ca4",
            &["unrelated"],
            &[],
        ),
    ];
    LocalIdp::start(vec![app], users).await
}

fn client_credential() -> ClientCredential {
    fixture("client").certificate_credential("CN=pullback sign-in")
}

fn certificate_of(credential: &ClientCredential) -> Vec<u8> {
    match credential {
        ClientCredential::Certificate {
            certificate_der, ..
        } => certificate_der.clone(),
        ClientCredential::Secret(_) => unreachable!("a certificate credential"),
    }
}

fn settings(idp: &LocalIdp, cloud: Cloud) -> OidcSettings {
    OidcSettings {
        cloud,
        authority_url: Some(idp.authority(cloud)),
        tenant_id: TENANT_ID.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        credential: ClientCredential::Secret(Secret(SECRET.to_owned())),
        redirect_url: REDIRECT.to_owned(),
        ca_pem: Some(idp.certificate_pem().as_bytes().to_vec()),
        roles: RoleMapping {
            admin: RoleMembers {
                groups: vec![ADMINS.to_owned()],
                app_roles: vec![],
            },
            analyst: RoleMembers::default(),
            read_only: RoleMembers {
                groups: vec![],
                app_roles: vec!["Pullback.Reader".to_owned()],
            },
            default_role: None,
        },
        timeout: Duration::from_secs(10),
        key_refresh_interval: OidcSettings::DEFAULT_KEY_REFRESH,
    }
}

fn callback_of(url: &str) -> Callback {
    assert!(url.starts_with(REDIRECT), "sent back to {url}");
    let url = reqwest::Url::parse(url).expect("a redirect URL");
    let pairs: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    Callback {
        code: pairs.get("code").cloned(),
        state: pairs.get("state").cloned(),
        error: pairs.get("error").cloned(),
        error_description: pairs.get("error_description").cloned(),
    }
}

/// A whole sign-in as `username`.
async fn sign_in_as(
    client: &OidcClient,
    idp: &LocalIdp,
    username: &str,
) -> Result<SignedIn, SignInError> {
    let start = client.begin("/incidents/3").await?;
    match sign_in(
        &start.authorize_url,
        username,
        PASSWORD,
        false,
        idp.certificate_pem(),
    )
    .await
    {
        Outcome::Redirect(url) => {
            client
                .finish(&callback_of(&url), Some(&start.flow_cookie))
                .await
        }
        Outcome::ErrorPage(page) => panic!("the provider refused the sign-in:\n{page}"),
    }
}

#[tokio::test]
async fn every_cloud_signs_in_with_its_own_issuer_and_keys() {
    let credential = client_credential();
    let idp = start_idp(certificate_of(&credential)).await;
    for cloud in [Cloud::Global, Cloud::UsGov, Cloud::China, Cloud::Custom] {
        let client = OidcClient::new(settings(&idp, cloud)).expect("good settings");
        let alice = sign_in_as(&client, &idp, ALICE)
            .await
            .unwrap_or_else(|e| panic!("{cloud}: {e}"));
        assert_eq!(alice.user, ALICE);
        assert_eq!(alice.role, Role::Admin, "{cloud}");
        assert_eq!(alice.tenant_id, TENANT_ID);
        assert_eq!(alice.return_to, "/incidents/3");
        let bob = sign_in_as(&client, &idp, BOB).await.expect("bob signs in");
        assert_eq!(bob.role, Role::ReadOnly, "{cloud}");
    }
    // The national clouds' issuers are their own.
    assert!(
        idp.issuer(Cloud::China)
            .starts_with("https://login.partner.microsoftonline.cn/")
    );
    assert!(
        idp.issuer(Cloud::UsGov)
            .starts_with("https://login.microsoftonline.us/")
    );

    // A client set for one cloud refuses another cloud's configuration before anyone signs in.
    let mut crossed = settings(&idp, Cloud::Global);
    crossed.authority_url = Some(idp.authority(Cloud::China));
    let client = OidcClient::new(crossed).expect("good settings");
    let refused = client.begin("/").await.err().expect("refused").to_string();
    assert!(refused.contains("is not of the global cloud"), "{refused}");

    // The tenant may be named by its domain; the issuer still carries its id.
    let mut by_domain = settings(&idp, Cloud::UsGov);
    by_domain.tenant_id = TENANT_DOMAIN.to_owned();
    let client = OidcClient::new(by_domain).expect("good settings");
    assert_eq!(
        sign_in_as(&client, &idp, ALICE)
            .await
            .expect("signs in")
            .role,
        Role::Admin
    );

    // A certificate instead of a secret.
    let mut with_certificate = settings(&idp, Cloud::China);
    with_certificate.credential = credential;
    let client = OidcClient::new(with_certificate).expect("good settings");
    assert_eq!(
        sign_in_as(&client, &idp, ALICE)
            .await
            .expect("signs in")
            .user,
        ALICE
    );
}

#[tokio::test]
async fn spoiled_id_tokens_are_refused_with_what_was_wrong() {
    let idp = start_idp(Vec::new()).await;
    let client = OidcClient::new(settings(&idp, Cloud::UsGov)).expect("good settings");
    sign_in_as(&client, &idp, ALICE)
        .await
        .expect("an honest token first");
    let cases = [
        (
            Tamper::WrongIssuer,
            "issued by \"https://login.microsoftonline.com/",
        ),
        (
            Tamper::WrongAudience,
            "meant for \"00000002-0000-0ff1-ce00-000000000000\"",
        ),
        (Tamper::WrongNonce, "nonce does not match"),
        (Tamper::WrongTenant, "from tenant \"f8cdef31"),
        (Tamper::BadSignature, "signature does not verify"),
        (Tamper::Expired, "expired at"),
        (Tamper::UnknownKey, "which the tenant does not publish"),
    ];
    for (tamper, expected) in cases {
        idp.tamper(tamper);
        let issued = idp.hits().issued;
        let refused = sign_in_as(&client, &idp, ALICE).await.expect_err("refused");
        assert!(
            matches!(refused, SignInError::Token(_)),
            "{tamper:?}: {refused:?}"
        );
        let message = refused.to_string();
        assert!(message.contains(expected), "{tamper:?}: {message}");
        // The provider issued the token: the client, not the provider, refused it.
        assert_eq!(idp.hits().issued, issued + 1, "{tamper:?}");
    }
    idp.tamper(Tamper::None);
    sign_in_as(&client, &idp, ALICE)
        .await
        .expect("honest again");
}

#[tokio::test]
async fn a_key_rollover_fetches_the_keys_again_but_unknown_keys_only_once_per_interval() {
    let idp = start_idp(Vec::new()).await;
    let client = OidcClient::new(settings(&idp, Cloud::Global)).expect("good settings");
    sign_in_as(&client, &idp, ALICE).await.expect("signs in");
    assert_eq!(idp.hits().keys, 1);
    sign_in_as(&client, &idp, ALICE).await.expect("signs in");
    assert_eq!(idp.hits().keys, 1, "the keys are cached");

    let rotated = idp.rotate_keys(Cloud::Global);
    assert_eq!(idp.signing_key(Cloud::Global).kid, rotated.kid);
    sign_in_as(&client, &idp, ALICE)
        .await
        .expect("the new key is fetched");
    assert_eq!(idp.hits().keys, 2);

    // Another unknown key right after: refused without asking again.
    idp.tamper(Tamper::UnknownKey);
    let refused = sign_in_as(&client, &idp, ALICE)
        .await
        .expect_err("unknown key");
    assert!(
        refused.to_string().contains("does not publish"),
        "{refused}"
    );
    assert_eq!(idp.hits().keys, 2, "rate-limited");

    // With no interval, each unknown key asks again, and is still refused.
    let mut eager = settings(&idp, Cloud::Global);
    eager.key_refresh_interval = Duration::ZERO;
    let eager = OidcClient::new(eager).expect("good settings");
    let before = idp.hits().keys;
    for _ in 0..2 {
        let refused = sign_in_as(&eager, &idp, ALICE)
            .await
            .expect_err("unknown key");
        assert!(
            refused.to_string().contains("does not publish"),
            "{refused}"
        );
    }
    assert_eq!(idp.hits().keys, before + 2);
}

#[tokio::test]
async fn the_answer_must_belong_to_this_sign_in_and_the_user_needs_a_role() {
    let idp = start_idp(Vec::new()).await;
    let client = OidcClient::new(settings(&idp, Cloud::Global)).expect("good settings");

    // No flow cookie, or one sealed by another configuration.
    let start = client.begin("/").await.expect("begins");
    let Outcome::Redirect(url) = sign_in(
        &start.authorize_url,
        ALICE,
        PASSWORD,
        false,
        idp.certificate_pem(),
    )
    .await
    else {
        panic!("no redirect");
    };
    let callback = callback_of(&url);
    assert_eq!(
        client.finish(&callback, None).await,
        Err(SignInError::NoFlow)
    );
    let mut other = settings(&idp, Cloud::Global);
    other.credential = ClientCredential::Secret(Secret("another secret".into()));
    let other = OidcClient::new(other).expect("good settings");
    let foreign = other.begin("/").await.expect("begins").flow_cookie;
    assert_eq!(
        client.finish(&callback, Some(&foreign)).await,
        Err(SignInError::NoFlow)
    );
    // Another sign-in's cookie: the state differs.
    let second = client.begin("/").await.expect("begins");
    assert_eq!(
        client.finish(&callback, Some(&second.flow_cookie)).await,
        Err(SignInError::State)
    );
    // The right cookie works once; the code cannot be redeemed twice.
    client
        .finish(&callback, Some(&start.flow_cookie))
        .await
        .expect("signs in");
    let again = client
        .finish(&callback, Some(&start.flow_cookie))
        .await
        .expect_err("a redeemed code");
    assert!(again.to_string().contains("AADSTS54005"), "{again}");

    // The user cancels.
    let start = client.begin("/").await.expect("begins");
    let Outcome::Redirect(url) = sign_in(
        &start.authorize_url,
        ALICE,
        PASSWORD,
        true,
        idp.certificate_pem(),
    )
    .await
    else {
        panic!("no redirect");
    };
    let refused = client
        .finish(&callback_of(&url), Some(&start.flow_cookie))
        .await
        .expect_err("cancelled");
    assert_eq!(
        refused.to_string(),
        "Azure AD refused the sign-in: access_denied: AADSTS65004: User declined to consent to \
         access the app."
    );

    // carol is in no mapped group: refused by name, not given a role.
    let refused = sign_in_as(&client, &idp, CAROL).await.expect_err("no role");
    let message = refused.to_string();
    assert!(message.starts_with(CAROL), "{message}");
    assert!(message.contains("grants a Pullback role"), "{message}");

    // More groups than a token holds: the groups are named as left out.
    idp.update_user(CAROL, |carol| {
        carol.groups = (0..201).map(|i| format!("group-{i}")).collect();
    });
    let refused = sign_in_as(&client, &idp, CAROL).await.expect_err("overage");
    assert!(
        refused.to_string().contains("more groups than Azure AD"),
        "{refused}"
    );
}

/// The authorization URL of a hand-made request, and its verifier.
fn authorize_url(
    idp: &LocalIdp,
    change: impl FnOnce(&mut Vec<(&'static str, String)>),
) -> (String, String) {
    let flow = FlowState::new("/", 0).expect("random values");
    let mut params: Vec<(&'static str, String)> = vec![
        ("client_id", CLIENT_ID.to_owned()),
        ("response_type", "code".to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("scope", "openid profile".to_owned()),
        ("state", "s1".to_owned()),
        ("nonce", "n1".to_owned()),
        ("code_challenge", flow.challenge()),
        ("code_challenge_method", "S256".to_owned()),
    ];
    change(&mut params);
    let mut url = reqwest::Url::parse(&format!(
        "{}/{TENANT_ID}/oauth2/v2.0/authorize",
        idp.authority(Cloud::Global)
    ))
    .expect("a URL");
    url.query_pairs_mut()
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
    (url.to_string(), flow.verifier)
}

fn set(params: &mut Vec<(&'static str, String)>, name: &'static str, value: Option<&str>) {
    params.retain(|(k, _)| *k != name);
    if let Some(value) = value {
        params.push((name, value.to_owned()));
    }
}

#[tokio::test]
async fn the_provider_refuses_bad_authorization_requests_as_azure_ad_does() {
    let idp = start_idp(Vec::new()).await;
    let pem = idp.certificate_pem().to_owned();
    type Change = Box<dyn FnOnce(&mut Vec<(&'static str, String)>)>;
    // Wrong application or redirect URI: an error page, never a redirect.
    let pages: Vec<(Change, &str)> = vec![
        (
            Box::new(|p| set(p, "client_id", Some("00000000-0000-0000-0000-000000000001"))),
            "AADSTS700016",
        ),
        (Box::new(|p| set(p, "client_id", None)), "AADSTS900144"),
        (
            Box::new(|p| {
                set(
                    p,
                    "redirect_uri",
                    Some("https://evil.test/api/v1/oidc/callback"),
                )
            }),
            "AADSTS50011",
        ),
        (
            Box::new(|p| set(p, "redirect_uri", Some(&format!("{REDIRECT}/")))),
            "AADSTS50011",
        ),
        (Box::new(|p| set(p, "redirect_uri", None)), "AADSTS900971"),
    ];
    for (change, expected) in pages {
        let (url, _) = authorize_url(&idp, change);
        match sign_in(&url, ALICE, PASSWORD, false, &pem).await {
            Outcome::ErrorPage(page) => assert!(page.contains(expected), "{expected}: {page}"),
            Outcome::Redirect(to) => panic!("{expected}: redirected to {to}"),
        }
    }
    // Anything else goes back to the application with the error and the state.
    let redirects: Vec<(Change, &str)> = vec![
        (
            Box::new(|p| set(p, "response_type", Some("id_token"))),
            "unsupported_response_type",
        ),
        (
            Box::new(|p| set(p, "scope", Some("profile email"))),
            "invalid_scope",
        ),
        (
            Box::new(|p| set(p, "code_challenge", None)),
            "AADSTS9002325",
        ),
        (
            Box::new(|p| set(p, "code_challenge_method", Some("plain"))),
            "'plain' is not allowed",
        ),
        (
            Box::new(|p| set(p, "code_challenge_method", None)),
            "'plain' is not allowed",
        ),
        (
            Box::new(|p| set(p, "code_challenge", Some("short"))),
            "AADSTS501491",
        ),
        (
            Box::new(|p| set(p, "response_mode", Some("fragment"))),
            "response_mode=query",
        ),
    ];
    for (change, expected) in redirects {
        let (url, _) = authorize_url(&idp, change);
        match sign_in(&url, ALICE, PASSWORD, false, &pem).await {
            Outcome::Redirect(to) => {
                let callback = callback_of(&to);
                assert_eq!(callback.state.as_deref(), Some("s1"));
                assert_eq!(callback.code, None);
                let error = format!("{:?} {:?}", callback.error, callback.error_description);
                assert!(error.contains(expected), "{expected}: {error}");
            }
            Outcome::ErrorPage(page) => panic!("{expected}: an error page\n{page}"),
        }
    }
    // A wrong password shows the form again with Azure AD's message.
    let (url, _) = authorize_url(&idp, |_| {});
    match sign_in(&url, ALICE, "wrong", false, &pem).await {
        Outcome::ErrorPage(page) => assert!(page.contains("AADSTS50126"), "{page}"),
        Outcome::Redirect(to) => panic!("signed in with a wrong password: {to}"),
    }
}

/// Redeems a code by hand; answers the status and body.
async fn redeem(idp: &LocalIdp, form: &[(&str, &str)], json: bool) -> (u16, Value) {
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(idp.certificate_pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let url = format!(
        "{}/{TENANT_ID}/oauth2/v2.0/token",
        idp.authority(Cloud::Global)
    );
    let request = http.post(url);
    let request = if json {
        let map: serde_json::Map<String, Value> = form
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        request.json(&map)
    } else {
        request.form(form)
    };
    let response = request.send().await.expect("POST token");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_provider_refuses_bad_token_requests_as_azure_ad_does() {
    let idp = start_idp(Vec::new()).await;
    let (url, verifier) = authorize_url(&idp, |_| {});
    let Outcome::Redirect(to) = sign_in(&url, ALICE, PASSWORD, false, idp.certificate_pem()).await
    else {
        panic!("no code");
    };
    let code = callback_of(&to).code.expect("a code");
    let good = [
        ("client_id", CLIENT_ID),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
        ("client_secret", SECRET),
    ];
    let with = |name: &'static str, value: Option<&'static str>| -> Vec<(&str, &str)> {
        let mut form: Vec<(&str, &str)> =
            good.iter().copied().filter(|(k, _)| *k != name).collect();
        if let Some(value) = value {
            form.push((name, value));
        }
        form
    };
    let other_verifier = FlowState::new("/", 0).unwrap().verifier;
    assert_ne!(pkce_challenge(&other_verifier), pkce_challenge(&verifier));
    let leaked: &'static str = Box::leak(other_verifier.into_boxed_str());
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Form, bool, u16, &str)> = vec![
        (good.to_vec(), true, 400, "AADSTS900144"),
        (
            with("grant_type", Some("password")),
            false,
            400,
            "AADSTS70003",
        ),
        (
            with("client_secret", Some("wrong")),
            false,
            401,
            "AADSTS7000215",
        ),
        (with("client_secret", None), false, 401, "AADSTS7000218"),
        (with("code_verifier", None), false, 400, "AADSTS501481"),
        (
            with("code_verifier", Some(leaked)),
            false,
            400,
            "AADSTS501481",
        ),
        (
            with("redirect_uri", Some("https://pullback.contoso.test/other")),
            false,
            400,
            "AADSTS500112",
        ),
        (
            with("code", Some("1.not-a-code")),
            false,
            400,
            "AADSTS70000",
        ),
    ];
    for (form, json, status, expected) in cases {
        let (got, body) = redeem(&idp, &form, json).await;
        assert_eq!(got, status, "{expected}: {body}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(description.starts_with(expected), "{expected}: {body}");
        assert!(description.contains("\r\nTrace ID: "), "{body}");
        assert!(
            body["error_codes"].is_array() && body["error"].is_string(),
            "{body}"
        );
    }
    assert_eq!(idp.hits().issued, 0, "no refused request got a token");
    let (status, body) = redeem(&idp, &good, false).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["id_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    let (status, body) = redeem(&idp, &good, false).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS54005"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unregistered_certificate_is_refused() {
    let registered = client_credential();
    let idp = start_idp(certificate_of(&registered)).await;
    let mut stranger = settings(&idp, Cloud::Global);
    stranger.credential = fixture("stranger").certificate_credential("CN=someone else");
    let client = OidcClient::new(stranger).expect("good settings");
    let refused = sign_in_as(&client, &idp, ALICE).await.expect_err("refused");
    let message = refused.to_string();
    assert!(
        message.starts_with("Azure AD refused to exchange the code: invalid_client: AADSTS700027"),
        "{message}"
    );
}

#[tokio::test]
async fn an_authority_that_cannot_be_reached_or_is_not_trusted_is_named() {
    let idp = start_idp(Vec::new()).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut unreachable = settings(&idp, Cloud::Global);
    unreachable.authority_url = Some(format!("https://127.0.0.1:{port}/global"));
    let client = OidcClient::new(unreachable).expect("good settings");
    let refused = client.begin("/").await.err().expect("refused");
    assert!(
        matches!(refused, SignInError::Unreachable { .. }),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot reach Azure AD at https://127.0.0.1:{port}/global/"
        )),
        "{message}"
    );
    // The provider's certificate, not trusted: the TLS failure says so.
    let mut untrusted = settings(&idp, Cloud::Global);
    untrusted.ca_pem = None;
    let client = OidcClient::new(untrusted).expect("good settings");
    let message = client.begin("/").await.err().expect("refused").to_string();
    assert!(message.contains("certificate"), "{message}");
    assert_eq!(idp.hits().discovery, 0);
}
