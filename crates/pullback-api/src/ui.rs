//! The web UI: a page and its scripts and styles, compiled into the binary and served without
//! authentication, because they hold no data; everything the UI shows comes from the API,
//! which the signed-in session authenticates.
//!
//! The headers forbid inline scripts and styles, framing, and connections to other origins,
//! so that data the UI displays cannot run as code even if it slipped past the escaping.

use crate::AppState;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Scripts may come only from this origin, and nothing may be inlined or framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the UI: the path it is served at, its content type and its text.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/ui/app.js", JAVASCRIPT, include_str!("../ui/app.js")),
    ("/ui/app.css", CSS, include_str!("../ui/app.css")),
    ("/ui/dom.js", JAVASCRIPT, include_str!("../ui/dom.js")),
    ("/ui/charts.js", JAVASCRIPT, include_str!("../ui/charts.js")),
    (
        "/ui/incidents.js",
        JAVASCRIPT,
        include_str!("../ui/incidents.js"),
    ),
    ("/ui/search.js", JAVASCRIPT, include_str!("../ui/search.js")),
    ("/ui/admin.js", JAVASCRIPT, include_str!("../ui/admin.js")),
    (
        "/ui/maintenance.js",
        JAVASCRIPT,
        include_str!("../ui/maintenance.js"),
    ),
];

const INDEX: &str = include_str!("../ui/index.html");

/// `GET /` and `GET /ui` serve the page; `GET /ui/<file>` its scripts and styles.
pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index));
    for &(path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router
}

async fn index() -> Response {
    asset(HTML, INDEX)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_scripts_import_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|(path, _, _)| *path).collect();
        for (path, _, body) in ASSETS {
            for (at, _) in body.match_indices("from \"./") {
                let name = &body[at + 8..];
                let name = &name[..name.find('"').expect("a closing quote")];
                let wanted = format!("/ui/{name}");
                assert!(
                    served.contains(&wanted.as_str()),
                    "{path} imports {wanted}, which is not served"
                );
            }
        }
        assert!(INDEX.contains("<script type=\"module\" src=\"/ui/app.js\">"));
    }

    #[test]
    fn the_page_has_no_inline_script_style_or_handler() {
        let lower = INDEX.to_ascii_lowercase();
        assert!(!lower.contains("style="), "inline style in index.html");
        assert!(!lower.contains("<style"), "style element in index.html");
        for (at, _) in lower.match_indices(" on") {
            let name: String = lower[at + 3..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let after = lower[at + 3 + name.len()..].trim_start();
            assert!(
                !after.starts_with('='),
                "an inline handler on{name} in index.html"
            );
        }
        let scripts = lower.matches("<script").count();
        let external = lower.matches("<script type=\"module\" src=").count();
        assert_eq!(scripts, external, "every script must be an external file");
        for (path, _, body) in ASSETS {
            assert!(!body.contains(".innerHTML"), "{path} uses innerHTML");
            assert!(!body.contains("outerHTML"), "{path} uses outerHTML");
            assert!(!body.contains("insertAdjacentHTML"), "{path} builds HTML");
            assert!(!body.contains("document.write"), "{path} writes HTML");
            assert!(!body.contains("eval("), "{path} evaluates text");
        }
    }
}
