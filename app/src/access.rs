//! Finding a resource for a caller: one function per resource that fetches
//! it and authorizes the caller in the same step, so no door can fetch
//! without authorizing. Another account's resource answers exactly like a
//! missing one ([`Error::NotFound`]), so ids cannot be probed.

use doppel_platform::authz::{Grant, Principal, Scope, authorize, require};
use doppel_platform::datasets::{self, Dataset};
use doppel_platform::jobs::Job;
use doppel_platform::{Error, Result};

use crate::AppState;

/// The dataset `id`, if the caller may use it with `need`.
pub async fn dataset(state: &AppState, p: &Principal, id: &str, need: Scope) -> Result<Dataset> {
    let d = datasets::get(&state.db, id).await?;
    authorize(p, need, &d.owner_id, "dataset", Grant::OwnerOnly)?;
    Ok(d)
}

/// A dataset of the caller's by id (`ds_…`) or by name, and then by version
/// (1-based, default the latest): how Flight descriptors and Flight SQL name
/// tables. Names are the caller's own, so only their datasets are searched.
pub async fn dataset_by_key(state: &AppState, p: &Principal, key: &str, version: Option<u32>) -> Result<Dataset> {
    if key.starts_with(crate::datasets::ID_PREFIX) && version.is_none() {
        return dataset(state, p, key, Scope::DatasetsRead).await;
    }
    require(p, Scope::DatasetsRead)?;
    let all = datasets::versions(&state.db, &p.account_id, key).await?;
    let chosen = match version {
        None => all.last(),
        Some(n) => usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| all.get(i)),
    };
    match chosen {
        Some(d) => Ok(d.clone()),
        None if all.is_empty() => Err(Error::NotFound(format!("dataset `{key}`"))),
        None => Err(Error::NotFound(format!(
            "version {} of dataset `{key}` (it has {} version(s))",
            version.unwrap_or_default(),
            all.len()
        ))),
    }
}

/// Which upload of its name `d` is (1-based).
pub async fn version_of(state: &AppState, d: &Dataset) -> Result<usize> {
    Ok(datasets::versions(&state.db, &d.owner_id, &d.name)
        .await?
        .iter()
        .position(|v| v.id == d.id)
        .map_or(1, |i| i + 1))
}

/// The job `id`, if the caller may use it with `need`.
pub async fn job(state: &AppState, p: &Principal, id: &str, need: Scope) -> Result<Job> {
    let job = state.queue.get(id).await?;
    authorize(p, need, &job.owner_id, "job", Grant::OwnerOnly)?;
    Ok(job)
}

/// A lookup's "not found" as a problem with the request's `field` (a job
/// submission that names another account's dataset is a bad `dataset_id`,
/// not a missing URL); other errors pass through.
pub(crate) fn as_field(field: &'static str, what: &'static str) -> impl Fn(Error) -> Error {
    move |e| match e {
        Error::NotFound(_) => Error::invalid(field, format!("no such {what}")),
        other => other,
    }
}

/// The caller's datasets, newest first (needs `datasets:read`).
pub async fn datasets(
    state: &AppState,
    p: &Principal,
    starting_after: Option<&str>,
    limit: i64,
) -> Result<Vec<Dataset>> {
    require(p, Scope::DatasetsRead)?;
    datasets::list(&state.db, &p.account_id, starting_after, limit).await
}

/// The caller's jobs, newest first (needs `datasets:read`).
pub async fn jobs(state: &AppState, p: &Principal, starting_after: Option<&str>, limit: i64) -> Result<Vec<Job>> {
    require(p, Scope::DatasetsRead)?;
    state.queue.list(Some(&p.account_id), starting_after, limit).await
}

/// The caller's purchases, newest first (needs `datasets:read`).
pub async fn purchases(
    state: &AppState,
    p: &Principal,
    starting_after: Option<&str>,
    limit: i64,
) -> Result<Vec<doppel_market::Purchase>> {
    require(p, Scope::DatasetsRead)?;
    state.market.purchases_of(&p.account_id, starting_after, limit).await
}

/// Active listings matching `query` (needs `datasets:read`).
pub async fn search(
    state: &AppState,
    p: &Principal,
    query: &doppel_market::SearchQuery,
) -> Result<(Vec<doppel_market::Listing>, Option<String>)> {
    require(p, Scope::DatasetsRead)?;
    state.market.search(query).await
}

/// A listing the caller may see (active ones to everyone; others to their
/// seller and buyers), needing `datasets:read`.
pub async fn listing(state: &AppState, p: &Principal, id: &str) -> Result<doppel_market::Listing> {
    require(p, Scope::DatasetsRead)?;
    state.market.visible_listing(p, id).await
}
