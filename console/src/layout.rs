//! The page shell (header, navigation, flash message, footer) and the small
//! pieces every page uses: status badges, empty states, form fields with
//! their errors, times and sizes as people read them.
//!
//! Pages carry no inline script or style (the CSP forbids both): behaviour
//! comes from `console.js` through `data-*` attributes, looks from
//! `console.css` through classes.

use doppel_platform::authz::{Principal, Role};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use poem::http::StatusCode;
use poem::{IntoResponse, Response};

use crate::assets;

/// What the middleware resolved about a request, handed to every page.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The signed-in person, if any.
    pub(crate) viewer: Option<Principal>,
    /// The CSRF token forms and scripts send back.
    pub(crate) csrf: String,
    /// The request id (shown on error pages).
    pub(crate) request_id: String,
    /// A one-time message from the previous request.
    pub(crate) flash: Option<Flash>,
    /// Unread notifications of the viewer.
    pub(crate) unread: i64,
    /// The configured single sign-on providers (name, label).
    pub(crate) sso: std::sync::Arc<Vec<(String, String)>>,
}

/// A one-time message shown on the next page, chosen from a fixed list so
/// the cookie carrying it can never inject text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flash {
    SignedOut,
    Welcome,
    DatasetDeleted,
    JobCancelled,
    BudgetSaved,
    KeyRevoked,
    ListingSaved,
    PayoutSaved,
    TotpOn,
    NotificationsRead,
    UserChanged,
    ListingSuspended,
    Refunded,
    Reconciled,
}

impl Flash {
    const ALL: [Flash; 14] = [
        Flash::SignedOut,
        Flash::Welcome,
        Flash::DatasetDeleted,
        Flash::JobCancelled,
        Flash::BudgetSaved,
        Flash::KeyRevoked,
        Flash::ListingSaved,
        Flash::PayoutSaved,
        Flash::TotpOn,
        Flash::NotificationsRead,
        Flash::UserChanged,
        Flash::ListingSuspended,
        Flash::Refunded,
        Flash::Reconciled,
    ];

    /// The cookie value.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Flash::SignedOut => "signed-out",
            Flash::Welcome => "welcome",
            Flash::DatasetDeleted => "dataset-deleted",
            Flash::JobCancelled => "job-cancelled",
            Flash::BudgetSaved => "budget-saved",
            Flash::KeyRevoked => "key-revoked",
            Flash::ListingSaved => "listing-saved",
            Flash::PayoutSaved => "payout-saved",
            Flash::TotpOn => "totp-on",
            Flash::NotificationsRead => "notifications-read",
            Flash::UserChanged => "user-changed",
            Flash::ListingSuspended => "listing-suspended",
            Flash::Refunded => "refunded",
            Flash::Reconciled => "reconciled",
        }
    }

    /// From the cookie value.
    pub(crate) fn parse(key: &str) -> Option<Flash> {
        Flash::ALL.into_iter().find(|f| f.key() == key)
    }

    fn text(self) -> &'static str {
        match self {
            Flash::SignedOut => "You are signed out.",
            Flash::Welcome => "Welcome to doppel. Upload a table to make its synthetic twin.",
            Flash::DatasetDeleted => "The dataset and its stored table were deleted.",
            Flash::JobCancelled => "The job was asked to stop. It ends at the next stage boundary.",
            Flash::BudgetSaved => "The privacy budget was saved.",
            Flash::KeyRevoked => "The API key was revoked. It stops working at once.",
            Flash::ListingSaved => "The listing was saved.",
            Flash::PayoutSaved => "Your payout account was saved.",
            Flash::TotpOn => "Two-factor sign-in is on. Keep your recovery codes somewhere safe.",
            Flash::NotificationsRead => "All notifications are marked as read.",
            Flash::UserChanged => "The account was updated.",
            Flash::ListingSuspended => "The listing was suspended; buyers no longer see it.",
            Flash::Refunded => "The purchase was refunded and the buyer's access ended.",
            Flash::Reconciled => "Pending purchases were checked with the payment provider.",
        }
    }
}

/// Which top-level section a page belongs to (highlighted in the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Home,
    Datasets,
    Jobs,
    Market,
    Selling,
    Account,
    Admin,
    None,
}

fn nav_link(current: Nav, this: Nav, href: &str, label: &str) -> Markup {
    html! {
        li {
            @if current == this {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="_csrf" value=(ctx.csrf); }
}

/// A whole HTML page with status 200.
pub(crate) fn page(ctx: &Ctx, nav: Nav, title: &str, body: Markup) -> Response {
    page_with_status(ctx, nav, title, StatusCode::OK, body)
}

/// A whole HTML page.
pub(crate) fn page_with_status(ctx: &Ctx, nav: Nav, title: &str, status: StatusCode, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · doppel" }
                meta name="csrf-token" content=(ctx.csrf);
                link rel="icon" href=(assets::ICON.path());
                link rel="stylesheet" href=(assets::CSS.path());
                script src=(assets::JS.path()) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/" { span aria-hidden="true" { "◐ " } "doppel" }
                    @if let Some(v) = &ctx.viewer {
                        nav aria-label="Main" {
                            ul {
                                (nav_link(nav, Nav::Datasets, "/datasets", "Datasets"))
                                (nav_link(nav, Nav::Jobs, "/jobs", "Jobs"))
                                (nav_link(nav, Nav::Market, "/market", "Marketplace"))
                                (nav_link(nav, Nav::Selling, "/selling", "Selling"))
                                (nav_link(nav, Nav::Account, "/account", "Account"))
                                @if v.role == Role::Admin {
                                    (nav_link(nav, Nav::Admin, "/admin", "Admin"))
                                }
                            }
                        }
                        div class="who" {
                            a class="bell" href="/notifications" {
                                "Notifications"
                                @if ctx.unread > 0 {
                                    " " span class="badge" { (ctx.unread) span class="sr" { " unread" } }
                                }
                            }
                            span class="email" { (v.email) }
                            form method="post" action="/logout" class="inline" {
                                (csrf_field(ctx))
                                button type="submit" class="link" { "Sign out" }
                            }
                        }
                    } @else {
                        nav aria-label="Main" {
                            ul {
                                (nav_link(nav, Nav::None, "/login", "Sign in"))
                                (nav_link(nav, Nav::None, "/signup", "Create account"))
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    @if let Some(f) = ctx.flash {
                        p class="flash" role="status" { (f.text()) }
                    }
                    (body)
                }
                footer class="bottom" {
                    "doppel " (env!("CARGO_PKG_VERSION"))
                    " · " a href="/docs" { "REST API" }
                    " · " a href="/openapi.json" { "OpenAPI" }
                }
            }
        }
    };
    let mut resp = Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string());
    resp.headers_mut()
        .insert("cache-control", poem::http::HeaderValue::from_static("no-store"));
    resp.into_response()
}

/// A heading with optional actions to its right.
pub(crate) fn heading(title: &str, actions: Markup) -> Markup {
    html! {
        div class="heading" {
            h1 { (title) }
            div class="actions" { (actions) }
        }
    }
}

/// What a list shows when it is empty: what the thing is and how to get one.
pub(crate) fn empty(title: &str, text: &str, action: Option<(&str, &str)>) -> Markup {
    html! {
        div class="empty" {
            h2 { (title) }
            p { (text) }
            @if let Some((href, label)) = action {
                a class="button" href=(href) { (label) }
            }
        }
    }
}

/// A coloured badge for a state word (job, purchase, listing, verdict).
pub(crate) fn badge(state: &str) -> Markup {
    let class = match state {
        "succeeded" | "completed" | "active" | "pass" | "ok" | "low risk" => "badge good",
        "failed" | "fail" | "refunded" | "suspended" | "critical risk" | "high risk" => "badge bad",
        "running" | "pending" | "warn" | "warning" | "medium risk" | "paused" => "badge warn",
        _ => "badge",
    };
    html! { span class=(class) { (state) } }
}

/// A form field's error, linked to its input by `aria-describedby`.
pub(crate) fn field_error(id: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error {
            p class="field-error" id=(format!("{id}-error")) { (e) }
        }
    }
}

/// An alert box for a whole-form error.
pub(crate) fn alert(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message {
            div class="alert" role="alert" { (m) }
        }
    }
}

/// Milliseconds since the epoch as `2026-12-05 14:03 UTC`.
pub(crate) fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = doppel_host::generators::fake::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Bytes as people read them.
pub(crate) fn bytes(n: i64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "sizes are shown rounded")]
    let f = n as f64;
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", f / 1024.0),
        n if n < 1024 * 1024 * 1024 => format!("{:.1} MiB", f / 1_048_576.0),
        _ => format!("{:.2} GiB", f / 1_073_741_824.0),
    }
}

/// A count with thousands separators (`32,561`).
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Money in minor units as `15.00 EUR` (the currency's exponent).
pub(crate) fn money(minor: i64, currency: &str) -> String {
    doppel_market::payments::Money {
        minor,
        currency: currency.to_owned(),
    }
    .display()
}

/// Raw SVG produced by our own chart code (never user text unescaped: the
/// chart module escapes every label it writes).
pub(crate) fn svg(markup: String) -> Markup {
    PreEscaped(markup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(time(1_796_476_980_000), "2026-12-05 13:23 UTC");
        assert_eq!(time(-60_000), "1969-12-31 23:59 UTC");
        assert_eq!(time(19_723 * 86_400_000), "2024-01-01 00:00 UTC");
        assert_eq!(time(19_782 * 86_400_000), "2024-02-29 00:00 UTC", "a leap day");
    }

    #[test]
    fn counts_and_sizes_read_naturally() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(32_561), "32,561");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn flash_keys_round_trip_and_unknown_ones_are_ignored() {
        for f in Flash::ALL {
            assert_eq!(Flash::parse(f.key()), Some(f));
        }
        assert_eq!(Flash::parse("<script>"), None);
    }
}
