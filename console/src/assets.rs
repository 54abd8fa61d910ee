//! The console's static files, compiled into the binary and served under
//! names that carry a hash of their content (`/assets/console-1a2b3c4d.css`),
//! so browsers may keep them for a year and still never run a stale script
//! after an upgrade. Nothing is fetched from another origin.

use std::sync::LazyLock;

use poem::http::StatusCode;
use poem::web::Path;
use poem::{Response, handler};
use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    path: String,
    content_type: &'static str,
    body: &'static [u8],
}

impl Asset {
    fn new(stem: &str, ext: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
        let hash = doppel_platform::util::hex(&Sha256::digest(body));
        Asset {
            path: format!("/assets/{stem}-{}.{ext}", &hash[..12]),
            content_type,
            body,
        }
    }

    /// Where pages link it.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Its size, for the page-weight figures.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.body.len()
    }
}

/// The stylesheet.
pub(crate) static CSS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "console",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    )
});

/// The script: drag-and-drop uploads with progress, live job progress over
/// SSE, the two-factor step of sign-in, confirmations, copy buttons.
pub(crate) static JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "console",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    )
});

/// The tab icon.
pub(crate) static ICON: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("icon", "svg", "image/svg+xml", include_bytes!("../assets/icon.svg")));

/// `GET /assets/{name}`.
#[handler]
pub(crate) fn serve(Path(name): Path<String>) -> Response {
    let wanted = format!("/assets/{name}");
    for asset in [&*CSS, &*JS, &*ICON] {
        if asset.path == wanted {
            return Response::builder()
                .content_type(asset.content_type)
                .header("cache-control", "public, max-age=31536000, immutable")
                .body(asset.body);
        }
    }
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .content_type("text/plain; charset=utf-8")
        .body("no such file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_content_addressed_and_light() {
        for a in [&*CSS, &*JS, &*ICON] {
            assert!(a.path().starts_with("/assets/"));
            assert_eq!(
                a.path().rsplit('-').next().unwrap().split('.').next().unwrap().len(),
                12
            );
        }
        // Everything a page loads besides its own HTML: kept small on purpose
        // (no framework, no fonts).
        let total = CSS.len() + JS.len() + ICON.len();
        assert!(total < 40 * 1024, "{total} bytes of assets");
    }
}
