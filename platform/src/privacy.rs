//! Differential-privacy budgets per dataset: how much (ε, δ) an owner allows
//! DP jobs to spend on a dataset, what each job was charged, and what is left.
//!
//! Charges compose by addition (basic composition), which holds for any mix
//! of mechanisms. A budget covers every version uploaded under one dataset
//! name, because a new version is usually the same people. The check and the
//! charge happen in one transaction that first locks the budget row, so two
//! jobs submitted at once cannot both squeeze under the limit.

use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Event, RequestMeta};
use crate::authz::Principal;
use crate::datasets::Dataset;
use crate::settings::PrivacySettings;
use crate::util::{new_id, now_ms};
use crate::{Db, Error, Result};

/// Slack for floating-point sums: ten charges of 0.1 fill a budget of 1.
const TOLERANCE: f64 = 1e-9;

/// An (ε, δ) amount.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Amount {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

/// One job stage's charge.
#[derive(Debug, Clone, Serialize)]
pub struct Charge {
    /// Id (`pc_…`).
    pub id: String,
    /// The dataset version the job read.
    pub dataset_id: String,
    /// The job, once queued.
    pub job_id: Option<String>,
    /// Pipeline stage that spends it.
    pub stage: String,
    /// Mechanism (`privsyn`, …).
    pub mechanism: String,
    /// ε charged.
    pub epsilon: f64,
    /// δ charged.
    pub delta: f64,
    /// When, ms.
    pub created_at: i64,
}

/// A dataset's budget, what was spent and what is left.
#[derive(Debug, Clone, Serialize)]
pub struct Ledger {
    /// Dataset name (all its versions share the budget).
    pub dataset_name: String,
    /// The total allowed.
    pub budget: Amount,
    /// Sum of all charges.
    pub spent: Amount,
    /// Budget minus spent, floored at zero.
    pub remaining: Amount,
    /// Every charge, oldest first.
    pub charges: Vec<Charge>,
}

/// A charge to make: one DP stage of a job.
#[derive(Debug, Clone)]
pub struct Spend<'a> {
    /// Stage id.
    pub stage: &'a str,
    /// Mechanism name.
    pub mechanism: &'a str,
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

async fn budget_of(
    conn: &mut sqlx::AnyConnection,
    defaults: PrivacySettings,
    owner: &str,
    name: &str,
) -> Result<Amount> {
    let row = sqlx::query("SELECT epsilon, delta FROM privacy_budgets WHERE owner_id = $1 AND dataset_name = $2")
        .bind(owner)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Amount {
            epsilon: r.try_get("epsilon")?,
            delta: r.try_get("delta")?,
        },
        None => Amount {
            epsilon: defaults.dataset_epsilon,
            delta: defaults.dataset_delta,
        },
    })
}

async fn charges_of(conn: &mut sqlx::AnyConnection, owner: &str, name: &str) -> Result<Vec<Charge>> {
    let rows = sqlx::query(
        "SELECT id, dataset_id, job_id, stage, mechanism, epsilon, delta, created_at FROM privacy_charges \
         WHERE owner_id = $1 AND dataset_name = $2 ORDER BY id",
    )
    .bind(owner)
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Charge {
                id: r.try_get("id")?,
                dataset_id: r.try_get("dataset_id")?,
                job_id: r.try_get("job_id")?,
                stage: r.try_get("stage")?,
                mechanism: r.try_get("mechanism")?,
                epsilon: r.try_get("epsilon")?,
                delta: r.try_get("delta")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

fn ledger_from(name: &str, budget: Amount, charges: Vec<Charge>) -> Ledger {
    let spent = Amount {
        epsilon: charges.iter().map(|c| c.epsilon).sum(),
        delta: charges.iter().map(|c| c.delta).sum(),
    };
    Ledger {
        dataset_name: name.to_owned(),
        budget,
        spent,
        remaining: Amount {
            epsilon: (budget.epsilon - spent.epsilon).max(0.0),
            delta: (budget.delta - spent.delta).max(0.0),
        },
        charges,
    }
}

/// The ledger of `owner`'s dataset `name`.
pub async fn ledger(db: &Db, defaults: PrivacySettings, owner: &str, name: &str) -> Result<Ledger> {
    let mut conn = db.pool.acquire().await?;
    let budget = budget_of(&mut conn, defaults, owner, name).await?;
    let charges = charges_of(&mut conn, owner, name).await?;
    Ok(ledger_from(name, budget, charges))
}

/// Validate an amount a person typed.
fn check_amount(a: Amount) -> Result<()> {
    if !(a.epsilon.is_finite() && a.epsilon >= 0.0) {
        return Err(Error::invalid("epsilon", "must be a non-negative number"));
    }
    if !(a.delta.is_finite() && (0.0..1.0).contains(&a.delta)) {
        return Err(Error::invalid("delta", "must be in [0, 1)"));
    }
    Ok(())
}

/// Set the total budget of `owner`'s dataset `name` (the caller is
/// authorized already). Lowering it below what was spent is allowed: no
/// further DP job will run.
pub async fn set_budget(
    db: &Db,
    meta: &RequestMeta,
    p: &Principal,
    defaults: PrivacySettings,
    owner: &str,
    name: &str,
    budget: Amount,
) -> Result<Ledger> {
    check_amount(budget)?;
    let mut tx = db.pool.begin().await?;
    let before = budget_of(&mut tx, defaults, owner, name).await?;
    sqlx::query(
        "INSERT INTO privacy_budgets (owner_id, dataset_name, epsilon, delta, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (owner_id, dataset_name) DO UPDATE SET epsilon = excluded.epsilon, delta = excluded.delta, \
         updated_at = excluded.updated_at",
    )
    .bind(owner)
    .bind(name)
    .bind(budget.epsilon)
    .bind(budget.delta)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        meta,
        &Event::by(p, "privacy_budget_set", Some(name)).with(serde_json::json!({
            "before": before, "after": budget,
        })),
    )
    .await?;
    let charges = charges_of(&mut tx, owner, name).await?;
    tx.commit().await?;
    Ok(ledger_from(name, budget, charges))
}

/// Charge `spends` against the budget of `dataset`'s name, all or nothing.
/// Refused with [`Error::BudgetExceeded`] (saying what is left) when the sum
/// would exceed the budget in ε or δ. Returns the charge ids, for
/// [`attach_job`].
pub async fn charge(
    db: &Db,
    meta: &RequestMeta,
    p: &Principal,
    defaults: PrivacySettings,
    dataset: &Dataset,
    spends: &[Spend<'_>],
) -> Result<Vec<String>> {
    if spends.is_empty() {
        return Ok(Vec::new());
    }
    for s in spends {
        check_amount(Amount {
            epsilon: s.epsilon,
            delta: s.delta,
        })?;
    }
    let (owner, name) = (dataset.owner_id.as_str(), dataset.name.as_str());
    let mut tx = db.pool.begin().await?;
    // Take the budget row's lock first (a write: SQLite's database lock, a
    // PostgreSQL row lock), so concurrent charges for this dataset queue here.
    sqlx::query(
        "INSERT INTO privacy_budgets (owner_id, dataset_name, epsilon, delta, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (owner_id, dataset_name) DO UPDATE SET updated_at = privacy_budgets.updated_at",
    )
    .bind(owner)
    .bind(name)
    .bind(defaults.dataset_epsilon)
    .bind(defaults.dataset_delta)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let budget = budget_of(&mut tx, defaults, owner, name).await?;
    let current = ledger_from(name, budget, charges_of(&mut tx, owner, name).await?);
    let want = Amount {
        epsilon: spends.iter().map(|s| s.epsilon).sum(),
        delta: spends.iter().map(|s| s.delta).sum(),
    };
    if current.spent.epsilon + want.epsilon > budget.epsilon + TOLERANCE
        || current.spent.delta + want.delta > budget.delta * (1.0 + TOLERANCE)
    {
        return Err(Error::BudgetExceeded(format!(
            "dataset `{name}`: this job needs ε = {}, δ = {:.1e}, but only ε = {}, δ = {:.1e} of the budget \
             (ε = {}, δ = {:.1e}) is left; lower the stage's epsilon/delta or raise the budget",
            round(want.epsilon),
            want.delta,
            round(current.remaining.epsilon),
            current.remaining.delta,
            round(budget.epsilon),
            budget.delta,
        )));
    }
    let mut ids = Vec::with_capacity(spends.len());
    let now = now_ms();
    for s in spends {
        let id = new_id("pc");
        sqlx::query(
            "INSERT INTO privacy_charges (id, owner_id, dataset_name, dataset_id, job_id, stage, mechanism, epsilon, \
             delta, created_at) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(owner)
        .bind(name)
        .bind(&dataset.id)
        .bind(s.stage)
        .bind(s.mechanism)
        .bind(s.epsilon)
        .bind(s.delta)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        ids.push(id);
    }
    audit::record(
        &mut tx,
        meta,
        &Event::by(p, "privacy_budget_charged", Some(&dataset.id)).with(serde_json::json!({
            "epsilon": want.epsilon, "delta": want.delta, "charges": ids,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(ids)
}

/// Record which job the charges paid for.
pub async fn attach_job(db: &Db, charge_ids: &[String], job_id: &str) -> Result<()> {
    for id in charge_ids {
        sqlx::query("UPDATE privacy_charges SET job_id = $1 WHERE id = $2")
            .bind(job_id)
            .bind(id)
            .execute(&db.pool)
            .await?;
    }
    Ok(())
}

/// Undo charges for a job that was never queued (it cannot have read a row).
pub async fn cancel_unqueued(db: &Db, charge_ids: &[String]) -> Result<()> {
    for id in charge_ids {
        sqlx::query("DELETE FROM privacy_charges WHERE id = $1 AND job_id IS NULL")
            .bind(id)
            .execute(&db.pool)
            .await?;
    }
    Ok(())
}

/// Six significant decimals, for messages.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
