//! The support console: one static page (HTML, CSS and vanilla JavaScript, embedded in the
//! binary) served at `/`, `/console.css` and `/console.js`.
//!
//! The assets carry no data and need no token: the page asks for the support token, keeps it
//! in the tab's `sessionStorage` and calls the JSON API (`/v1/tenants…`) with it as a bearer
//! token, so every read and action goes through the API's roles and tenant scopes. Nothing is
//! loaded from elsewhere (no CDN, no fonts), and the Content-Security-Policy allows only this
//! origin: no inline script or style, no framing.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// The page's policy: this origin only, and nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route(
            "/console.css",
            get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }),
        )
        // Browsers ask for it on their own; an empty answer keeps their consoles quiet.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let fixed = |v: &'static str| HeaderValue::from_static(v);
    headers.insert(header::CONTENT_TYPE, fixed(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        fixed(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, fixed("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, fixed("DENY"));
    headers.insert(header::REFERRER_POLICY, fixed("no-referrer"));
    // Small and embedded: always revalidate, so a new release is seen at once.
    headers.insert(header::CACHE_CONTROL, fixed("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets_and_nothing_inline() {
        assert!(INDEX_HTML.contains(r#"<script src="/console.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/console.css">"#));
        assert_eq!(INDEX_HTML.matches("<script").count(), 1, "no inline script");
        assert!(!INDEX_HTML.contains("<style"), "no inline style element");
        assert!(!INDEX_HTML.contains(" style="), "no style attribute");
        assert!(
            !has_event_handler_attribute(INDEX_HTML),
            "no inline event handler"
        );
        for asset in [INDEX_HTML, CONSOLE_CSS, CONSOLE_JS] {
            assert!(
                !asset.contains("http://") && !asset.contains("https://"),
                "nothing external"
            );
        }
    }

    /// ` onclick=`, ` onload=`…: an attribute named `on` + letters.
    fn has_event_handler_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let letters = rest.chars().take_while(char::is_ascii_alphabetic).count();
            letters > 0 && rest[letters..].starts_with('=')
        })
    }

    #[test]
    fn the_script_never_writes_markup() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!CONSOLE_JS.contains(sink), "console.js uses {sink}");
        }
    }
}
