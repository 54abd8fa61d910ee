//! Listing a twin: whether a succeeded job's table may be offered on the
//! marketplace, and what a buyer sees before paying. The gate's inputs come
//! from the job's typed `report.json` ([`doppel_host::report::Report`]):
//! its privacy score and failed rules are fields, so a report this doppel
//! cannot read refuses the listing instead of letting it through.

use doppel_host::report::Report;
use doppel_market::{Listing, NewListing};
use doppel_platform::audit::RequestMeta;
use doppel_platform::authz::{Principal, Scope, require};
use doppel_platform::jobs::{Job, JobState, OutputFile};
use doppel_platform::{Error, Result};

use crate::AppState;

/// Rows of the twin a listing shows before purchase.
pub const PREVIEW_ROWS: usize = 20;

/// What a seller asks to list.
#[derive(Debug, Clone)]
pub struct ListJob {
    /// The seller's succeeded job.
    pub job_id: String,
    /// Which table output (default `synthetic.parquet` or `synthetic.csv`).
    pub output: Option<String>,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Category.
    pub category: String,
    /// Price in minor units.
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// License text.
    pub license: String,
}

/// A job's output, once the job has succeeded.
pub fn output<'a>(job: &'a Job, name: &str) -> Result<&'a OutputFile> {
    succeeded(job, "outputs exist once it has succeeded")?;
    job.manifest
        .as_ref()
        .and_then(|m| m.files.iter().find(|f| f.name == name))
        .ok_or_else(|| Error::NotFound(format!("output `{name}`")))
}

fn succeeded(job: &Job, then: &str) -> Result<()> {
    if job.state == JobState::Succeeded {
        Ok(())
    } else {
        Err(Error::NotReady {
            code: "job_not_finished",
            message: format!("the job is {}; {then}", job.state.as_str()),
        })
    }
}

/// List the seller's job output: the seller needs `marketplace:sell` and
/// read access to the job; the market then applies the privacy gate.
pub async fn list_job(state: &AppState, meta: &RequestMeta, p: &Principal, request: ListJob) -> Result<Listing> {
    require(p, Scope::MarketplaceSell)?;
    let job = crate::access::job(state, p, &request.job_id, Scope::DatasetsRead).await?;
    succeeded(&job, "list it once it has succeeded")?;
    let files = job.manifest.as_ref().map(|m| m.files.as_slice()).unwrap_or_default();
    let output = match &request.output {
        Some(name) => files.iter().find(|f| &f.name == name),
        None => files
            .iter()
            .find(|f| f.name == "synthetic.parquet" || f.name == "synthetic.csv"),
    }
    .ok_or_else(|| Error::invalid("output", "the job has no such table output"))?;
    if !(output.name.ends_with(".parquet") || output.name.ends_with(".csv")) {
        return Err(Error::invalid(
            "output",
            format!("`{}` is not a table; only synthetic tables are sold", output.name),
        ));
    }
    let appraisal = appraise(state, &job, output).await?;
    state
        .market
        .create_listing(
            meta,
            p,
            NewListing {
                job_id: job.id.clone(),
                output_name: output.name.clone(),
                output_key: output.key.clone(),
                title: request.title,
                description: request.description,
                tags: request.tags,
                category: request.category,
                price_minor: request.price_minor,
                currency: request.currency,
                license: request.license,
                preview: appraisal.preview,
                quality_score: appraisal.quality,
                privacy_score: appraisal.privacy,
                failed_checks: appraisal.failed,
            },
        )
        .await
}

/// What the gate and the buyer learn from a job.
#[derive(Debug)]
struct Appraisal {
    quality: Option<f64>,
    privacy: Option<f64>,
    failed: Vec<String>,
    preview: serde_json::Value,
}

/// Scores, compliance and a preview of a job's output, from its stored
/// `report.json` and the table itself.
async fn appraise(state: &AppState, job: &Job, output: &OutputFile) -> Result<Appraisal> {
    let manifest = job
        .manifest
        .as_ref()
        .ok_or_else(|| Error::Internal("succeeded job without a manifest".into()))?;
    let report = match manifest.files.iter().find(|f| f.name == "report.json") {
        Some(f) => {
            let bytes = state.storage.get_bytes(&f.key).await?;
            Some(Report::from_slice(&bytes).map_err(|e| Error::Refused {
                code: "listing_refused",
                message: format!(
                    "job {}'s report cannot be read by this server ({e}); run the job again to list its twin",
                    job.id
                ),
            })?)
        }
        None => None,
    };
    let (quality, privacy) = report
        .as_ref()
        .map_or((None, None), |r| (r.summary.quality_score, r.summary.privacy_score));
    let failed: Vec<String> = report
        .iter()
        .flat_map(|r| &r.summary.failed_rules)
        .map(|r| format!("{}: {} ({})", r.stage, r.rule, r.title))
        .collect();
    let bytes = state.storage.get_bytes(&output.key).await?;
    let table = if output.name.ends_with(".parquet") {
        tokio::task::spawn_blocking(move || preview_parquet(bytes))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(Error::Internal)?
    } else {
        serde_json::json!({ "rows": [], "note": "preview is shown for Parquet outputs" })
    };
    let preview = serde_json::json!({
        "table": table,
        "quality_score": quality,
        "privacy_score": privacy,
        "scores": report.as_ref().map(|r| {
            r.summary.scores.iter().filter(|(k, _)| k.ends_with("Score")).map(|(k, v)| (k.clone(), *v))
                .collect::<std::collections::BTreeMap<_, _>>()
        }),
        "compliance": {
            "failed_rules": failed,
            "pipeline": report.as_ref().map(|r| r.pipeline.name.clone()),
            "pii_columns": report.as_ref().map(|r| &r.summary.pii_columns),
        },
    });
    Ok(Appraisal {
        quality,
        privacy,
        failed,
        preview,
    })
}

/// Schema and the first rows of a Parquet file.
fn preview_parquet(bytes: bytes::Bytes) -> Result<serde_json::Value, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let rows = builder.metadata().file_metadata().num_rows();
    let schema = std::sync::Arc::clone(builder.schema());
    let mut reader = builder
        .with_batch_size(PREVIEW_ROWS)
        .build()
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    if let Some(batch) = reader.next() {
        let batch = batch.map_err(|e| e.to_string())?;
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        w.write(&batch.slice(0, batch.num_rows().min(PREVIEW_ROWS)))
            .map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    let sample: serde_json::Value = if buf.is_empty() {
        serde_json::json!([])
    } else {
        serde_json::from_slice(&buf).map_err(|e| e.to_string())?
    };
    Ok(serde_json::json!({
        "rows_total": rows,
        "columns": schema.fields().iter().map(|f| serde_json::json!({
            "name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable(),
        })).collect::<Vec<_>>(),
        "rows": sample,
    }))
}

/// Where a buyer may be sent back after paying: a URL on the public origin
/// or on one the operator allows (`payments.return_origins`), never
/// elsewhere (an open redirect would lend our name to phishing).
pub fn check_return_url(state: &AppState, url: &str) -> Result<()> {
    let origin_of = |u: &str| {
        url::Url::parse(u)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .map(|u| u.origin().ascii_serialization())
    };
    let Some(origin) = origin_of(url) else {
        return Err(Error::invalid("return_url", "must be an absolute http(s) URL"));
    };
    let public = origin_of(&state.settings.public_url()).unwrap_or_default();
    let mut listed = state
        .settings
        .payments
        .return_origins
        .iter()
        .filter_map(|o| origin_of(o));
    if origin == public || listed.any(|o| o == origin) {
        Ok(())
    } else {
        Err(Error::invalid(
            "return_url",
            format!("must lead back to {public} or an origin the operator allows (payments.return_origins)"),
        ))
    }
}

/// Start a checkout of listing `listing_id` for the caller (who needs
/// `marketplace:buy`), returning to `return_url` (checked by
/// [`check_return_url`]).
pub async fn checkout(
    state: &AppState,
    meta: &RequestMeta,
    p: &Principal,
    listing_id: &str,
    return_url: &str,
) -> Result<doppel_market::Purchase> {
    require(p, Scope::MarketplaceBuy)?;
    check_return_url(state, return_url)?;
    state.market.checkout(meta, p, listing_id, return_url).await
}

/// The caller's completed purchase and the listing it bought: what a
/// download may stream. A pending, failed or refunded purchase downloads
/// nothing (a refund ends access at once).
pub async fn purchased(
    state: &AppState,
    p: &Principal,
    purchase_id: &str,
) -> Result<(doppel_market::Purchase, Listing)> {
    let purchase = state.market.own_purchase(p, purchase_id).await?;
    if purchase.status != doppel_market::PurchaseStatus::Completed {
        return Err(Error::NotReady {
            code: "not_paid",
            message: format!(
                "the purchase is {}; downloads need a completed purchase",
                purchase.status.as_str()
            ),
        });
    }
    let listing = state.market.listing(&purchase.listing_id).await?;
    Ok((purchase, listing))
}

/// The seller's dashboard: sales, refunds, revenue and downloads per listing
/// per day, and what the platform owes them (needs `marketplace:sell`).
pub async fn dashboard(
    state: &AppState,
    p: &Principal,
) -> Result<(Vec<doppel_market::ListingStats>, Vec<doppel_market::payments::Money>)> {
    require(p, Scope::MarketplaceSell)?;
    let listings = state.market.dashboard(&p.account_id).await?;
    let payable = state.market.payable(&p.account_id).await?;
    Ok((listings, payable))
}
