//! One module per part of the console; each handler calls the core and
//! renders its answer.

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod datasets;
pub(crate) mod home;
pub(crate) mod jobs;
pub(crate) mod market;
pub(crate) mod report;
pub(crate) mod selling;

/// A `?after=` cursor for list pages.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Cursor {
    pub(crate) after: Option<String>,
}

/// Rows per list page.
pub(crate) const PAGE: i64 = 25;

/// Keep the first `n` of `rows` fetched with limit `n + 1`; the cursor for the
/// next page if there is one.
pub(crate) fn page_of<T>(mut rows: Vec<T>, n: i64, id: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let n = usize::try_from(n).unwrap_or(25);
    let more = rows.len() > n;
    rows.truncate(n);
    let next = if more { rows.last().map(id) } else { None };
    (rows, next)
}

/// "Next page" link, when there is one.
pub(crate) fn pager(base: &str, next: Option<&str>) -> maud::Markup {
    maud::html! {
        @if let Some(n) = next {
            nav class="pager" aria-label="Pages" {
                a href=(format!("{base}?after={}", url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>())) { "Next page →" }
            }
        }
    }
}
