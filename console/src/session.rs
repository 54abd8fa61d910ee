//! Browser sessions and forgery protection.
//!
//! A console session is the same session a REST login opens (`dps_…`), held
//! in an HttpOnly, SameSite=Lax cookie (`__Host-` prefixed and `Secure`
//! behind HTTPS) instead of an `Authorization` header. Only session tokens
//! are accepted from the cookie, never API keys.
//!
//! Every state-changing request carries a CSRF token: for a signed-in
//! person an HMAC of their session token (so it changes when the session
//! does, at every login), for a signed-out one an HMAC of a random value in
//! a second cookie (login and sign-up forms). The token travels in the form
//! (`_csrf`) or, for scripts, the `X-CSRF-Token` header; a cross-site
//! `Sec-Fetch-Site` or a foreign `Origin` is refused before the token is
//! even looked at.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use poem::Request;
use sha2::Sha256;

/// The keys the console derives from the server's signing key.
#[derive(Clone)]
pub(crate) struct Keys {
    csrf: [u8; 32],
    /// Whether the public URL is HTTPS (cookies get `Secure` and `__Host-`).
    pub(crate) secure: bool,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl Keys {
    /// Keys derived from the signing key (shared by every server process, so
    /// a form rendered by one is accepted by another).
    pub(crate) fn new(signing_key: &[u8], public_url: &str) -> Keys {
        Keys {
            csrf: hmac(signing_key, &[b"doppel console csrf key"]),
            secure: public_url.starts_with("https://"),
        }
    }

    /// The session cookie's name.
    pub(crate) fn session_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-doppel_session"
        } else {
            "doppel_session"
        }
    }

    /// The signed-out forms' cookie name.
    pub(crate) fn anon_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-doppel_csrf"
        } else {
            "doppel_csrf"
        }
    }

    /// The flash-message cookie name.
    pub(crate) fn flash_cookie(&self) -> &'static str {
        if self.secure {
            "__Host-doppel_flash"
        } else {
            "doppel_flash"
        }
    }

    /// The CSRF token of a signed-in session.
    pub(crate) fn session_csrf(&self, session_token: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac(&self.csrf, &[b"session", session_token.as_bytes()]))
    }

    /// The CSRF token of a signed-out browser holding `nonce` in its cookie.
    pub(crate) fn anon_csrf(&self, nonce: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac(&self.csrf, &[b"anonymous", nonce.as_bytes()]))
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure when the
    /// console is served over HTTPS; `max_age` 0 deletes the cookie.
    pub(crate) fn cookie(&self, name: &str, value: &str, max_age_s: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}")
    }
}

/// The value of cookie `name`, if the request sends it once and plainly.
pub(crate) fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in req.headers().get_all("cookie") {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k == name {
                // Two cookies of one name (one planted by a sibling domain)
                // are ambiguous: trust neither.
                if found.is_some() {
                    return None;
                }
                found = Some(v);
            }
        }
    }
    found.filter(|v| !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| b.is_ascii_graphic() && b != b';'))
}

/// Constant-time equality of two tokens.
pub(crate) fn same(a: &str, b: &str) -> bool {
    doppel_platform::util::ct_eq(a.as_bytes(), b.as_bytes())
}

/// Whether the browser says this request came from another site. Browsers
/// send `Sec-Fetch-Site` on every request; older ones send `Origin` on
/// cross-origin POSTs. Either betrays a forged form.
pub(crate) fn cross_site(req: &Request) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) {
        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        return origin == "null" || !origin_host.eq_ignore_ascii_case(host);
    }
    false
}

/// The `_csrf` field of a URL-encoded form body.
pub(crate) fn form_token(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "_csrf")
        .map(|(_, v)| v.into_owned())
}

/// A fresh random value for the signed-out cookie.
pub(crate) fn nonce() -> String {
    doppel_platform::util::base62(&doppel_platform::util::random_bytes::<24>(), 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_to_their_session_and_key() {
        let k = Keys::new(b"signing key", "http://127.0.0.1:8080");
        let a = k.session_csrf("dps_a");
        assert_eq!(a, k.session_csrf("dps_a"), "stable for one session");
        assert_ne!(a, k.session_csrf("dps_b"), "another session, another token");
        assert_ne!(a, k.anon_csrf("dps_a"), "signed-out tokens are a different family");
        let other = Keys::new(b"another key", "http://127.0.0.1:8080");
        assert_ne!(a, other.session_csrf("dps_a"), "another server key");
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &a[1..]));
    }

    #[test]
    fn cookies_are_http_only_and_secure_behind_https() {
        let plain = Keys::new(b"k", "http://localhost:8080");
        assert_eq!(plain.session_cookie(), "doppel_session");
        let c = plain.cookie("doppel_session", "dps_x", 60);
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"),
            "{c}"
        );
        let tls = Keys::new(b"k", "https://doppel.example.com");
        assert_eq!(tls.session_cookie(), "__Host-doppel_session");
        assert!(tls.cookie(tls.session_cookie(), "v", 60).ends_with("; Secure"));
    }

    #[test]
    fn form_tokens_are_read_from_url_encoded_bodies() {
        assert_eq!(form_token(b"email=a%40b.c&_csrf=abc-_1").as_deref(), Some("abc-_1"));
        assert_eq!(form_token(b"email=x"), None);
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let req = |headers: &[(&str, &str)]| {
            let mut b = Request::builder().uri(poem::http::Uri::from_static("/login"));
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.finish()
        };
        assert!(!cross_site(&req(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&req(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&req(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&req(&[("origin", "http://a:1"), ("host", "a:1")])));
        assert!(cross_site(&req(&[("origin", "http://evil"), ("host", "a:1")])));
        assert!(cross_site(&req(&[("origin", "null"), ("host", "a:1")])));
        assert!(!cross_site(&req(&[])), "no browser headers: the token decides");
    }
}
