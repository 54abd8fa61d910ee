//! Operator endpoints: users, jobs, the audit log.

use super::*;

/// Operator endpoints: users, jobs, the audit log.
#[derive(Debug, Default)]
pub struct AdminApi;

#[OpenApi(prefix_path = "/v1")]
impl AdminApi {
    /// All accounts (admin).
    #[oai(
        path = "/admin/users",
        method = "get",
        tag = "ApiTags::Admin",
        operation_id = "admin_list_users"
    )]
    async fn admin_users(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<AccountPage>> {
        let n = page_limit(limit.0)?;
        let rows = doppel_app::admin::users(&state, &auth.0, starting_after.0.as_deref(), n + 1).await?;
        let (rows, has_more, next_cursor) = paginate(rows, n, |a| a.id.clone());
        Ok(Json(AccountPage {
            data: rows.into_iter().map(Into::into).collect(),
            has_more,
            next_cursor,
        }))
    }

    /// Disable an account (admin): its sessions end and its keys stop working.
    #[oai(
        path = "/admin/users/:id/disable",
        method = "post",
        tag = "ApiTags::Admin",
        operation_id = "admin_disable_user"
    )]
    async fn admin_disable(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<AccountView>> {
        Ok(Json(
            doppel_app::admin::set_disabled(&state, &meta(req), &auth.0, &id, true)
                .await?
                .into(),
        ))
    }

    /// Re-enable an account (admin).
    #[oai(
        path = "/admin/users/:id/enable",
        method = "post",
        tag = "ApiTags::Admin",
        operation_id = "admin_enable_user"
    )]
    async fn admin_enable(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        id: Path<String>,
    ) -> ApiResult<Json<AccountView>> {
        Ok(Json(
            doppel_app::admin::set_disabled(&state, &meta(req), &auth.0, &id, false)
                .await?
                .into(),
        ))
    }

    /// Every account's jobs, newest first (admin).
    #[oai(
        path = "/admin/jobs",
        method = "get",
        tag = "ApiTags::Admin",
        operation_id = "admin_list_jobs"
    )]
    async fn admin_jobs(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        starting_after: Query<Option<String>>,
    ) -> ApiResult<Json<JobPage>> {
        let n = page_limit(limit.0)?;
        let rows = doppel_app::admin::jobs(&state, &auth.0, starting_after.0.as_deref(), n + 1).await?;
        let (rows, has_more, next_cursor) = paginate(rows, n, |j| j.id.clone());
        Ok(Json(JobPage {
            data: rows.iter().map(job_view).collect(),
            has_more,
            next_cursor,
        }))
    }

    /// The audit log, newest first (admin).
    #[oai(
        path = "/admin/audit",
        method = "get",
        tag = "ApiTags::Admin",
        operation_id = "admin_audit_log"
    )]
    async fn admin_audit(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        before: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<AuditEventView>>> {
        let n = page_limit(limit.0)?;
        let events = doppel_app::admin::audit(&state, &auth.0, before.0, n).await?;
        Ok(Json(events.into_iter().map(audit_view).collect()))
    }
}

fn audit_view(e: doppel_platform::audit::StoredEvent) -> AuditEventView {
    AuditEventView {
        seq: e.seq,
        at: e.at,
        actor: e.actor,
        api_key_id: e.api_key_id,
        action: e.action,
        target: e.target,
        outcome: e.outcome,
        request_id: e.request_id,
        ip: e.ip,
    }
}
