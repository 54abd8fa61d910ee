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

/// Stream the stored object `key` as an attachment called `file_name`
/// (`media`) — or, with `as_csv`, the stored Parquet object converted to CSV
/// as it streams. The file name keeps only letters, digits, `.`, `-`, `_`.
pub(crate) async fn attachment(
    state: &doppel_app::AppState,
    key: &str,
    as_csv: bool,
    media: &str,
    file_name: &str,
) -> crate::errors::PageResult<poem::Response> {
    use futures::StreamExt;
    let (body, size, media) = if as_csv {
        let stream = doppel_app::jobs::csv_stream(state, key).await?;
        (poem::Body::from_bytes_stream(stream), None, "text/csv")
    } else {
        let (size, stream) = state.storage.get_stream(key).await?;
        let stream = stream.map(|c| c.map_err(std::io::Error::other));
        (poem::Body::from_bytes_stream(stream), Some(size), media)
    };
    let safe: String = file_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let mut r = poem::Response::builder()
        .content_type(media)
        .header("content-disposition", format!("attachment; filename=\"{safe}\""));
    if let Some(n) = size {
        r = r.header("content-length", n);
    }
    Ok(r.body(body))
}

/// `s` encoded for a URL query.
pub(crate) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// "Next page" link, when there is one.
pub(crate) fn pager(base: &str, next: Option<&str>) -> maud::Markup {
    maud::html! {
        @if let Some(n) = next {
            nav class="pager" aria-label="Pages" {
                a href=(format!("{base}?after={}", enc(n))) { "Next page →" }
            }
        }
    }
}
