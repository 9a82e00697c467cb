//! The browser's part of a sign-in, done with an HTTP client: open the authorization URL,
//! fill in the local provider's sign-in form, and answer where the provider sends the browser
//! back. For tests that need no browser.

use std::time::Duration;

/// What the provider did with the browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent back to this URL (with a code, or an error).
    Redirect(String),
    /// Showed an error page with this text (a wrong application or redirect URI).
    ErrorPage(String),
}

/// Signs in as `username` with `password` at `authorize_url`, trusting the provider's
/// certificate `ca_pem`; `cancel` presses Cancel instead.
pub async fn sign_in(
    authorize_url: &str,
    username: &str,
    password: &str,
    cancel: bool,
    ca_pem: &str,
) -> Outcome {
    let root =
        reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("the provider's certificate");
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(root)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let shown = http.get(authorize_url).send().await.expect("GET authorize");
    let page = match read(shown).await {
        Page::Done(outcome) => return outcome,
        Page::Form(text) => text,
    };
    let login = hidden_login(&page).expect("the sign-in form has a login field");
    let action = if cancel { "cancel" } else { "sign_in" };
    let answer = http
        .post(authorize_url)
        .form(&[
            ("login", login.as_str()),
            ("username", username),
            ("password", password),
            ("action", action),
        ])
        .send()
        .await
        .expect("POST the sign-in form");
    match read(answer).await {
        Page::Done(outcome) => outcome,
        Page::Form(_) => Outcome::ErrorPage("the sign-in form was shown again".into()),
    }
}

enum Page {
    Done(Outcome),
    Form(String),
}

/// A redirect, an error page, or the sign-in form.
async fn read(response: reqwest::Response) -> Page {
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        return Page::Done(Outcome::Redirect(location));
    }
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() || text.contains("id=\"idp-error\"") {
        return Page::Done(Outcome::ErrorPage(text));
    }
    Page::Form(text)
}

fn hidden_login(page: &str) -> Option<String> {
    let at = page.find("name=\"login\" value=\"")? + "name=\"login\" value=\"".len();
    let rest = &page[at..];
    Some(rest[..rest.find('"')?].to_owned())
}
