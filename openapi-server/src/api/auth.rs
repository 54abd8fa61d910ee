//! Sign-up, login, SSO, sessions and the second factor.

use super::*;

/// Sign-up, login, SSO, sessions and the second factor.
#[derive(Debug, Default)]
pub struct AuthApi;

#[OpenApi(prefix_path = "/v1")]
impl AuthApi {
    /// Create an account.
    #[oai(
        path = "/auth/signup",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "sign_up"
    )]
    async fn sign_up(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<SignUp>,
    ) -> ApiResult<CreatedAccount> {
        let a = state.accounts.sign_up(&meta(req), &body.email, &body.password).await?;
        Ok(CreatedAccount::Created(Json(a.into())))
    }

    /// Log in: returns a session token for `Authorization: Bearer`.
    /// Accounts with a second factor also send `totp_code` or `recovery_code`
    /// (401 `mfa_required` says so).
    #[oai(
        path = "/auth/login",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "log_in"
    )]
    async fn log_in(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: JsonBody<LogIn>,
    ) -> ApiResult<Json<SessionView>> {
        let s = state
            .accounts
            .log_in(
                &meta(req),
                &body.email,
                &body.password,
                body.totp_code.as_deref(),
                body.recovery_code.as_deref(),
            )
            .await?;
        Ok(Json(SessionView {
            token: s.token,
            expires_at: s.expires_at,
            account: s.account.into(),
        }))
    }

    /// Start single sign-on with a configured OpenID Connect provider: a
    /// redirect to it (authorization code flow with PKCE, state and nonce).
    #[oai(
        path = "/auth/oidc/:provider/start",
        method = "get",
        tag = "ApiTags::Auth",
        operation_id = "oidc_start"
    )]
    async fn oidc_start(&self, state: Data<&Arc<AppState>>, provider: Path<String>) -> ApiResult<Redirect> {
        Ok(Redirect::Found(state.oidc.start(&provider).await?))
    }

    /// Where the provider sends the browser back: verifies the sign-in and
    /// answers with a session, as login does. Accounts are linked by the
    /// provider's issuer and subject.
    #[oai(
        path = "/auth/oidc/:provider/callback",
        method = "get",
        tag = "ApiTags::Auth",
        operation_id = "oidc_callback"
    )]
    async fn oidc_callback(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        provider: Path<String>,
        code: Query<Option<String>>,
        #[oai(name = "state")] oidc_state: Query<Option<String>>,
        error: Query<Option<String>>,
    ) -> ApiResult<Json<SessionView>> {
        if let Some(e) = &error.0 {
            return Err(ApiError::Unauthorized(Json(ErrorBody::new(
                "unauthenticated",
                format!("single sign-on failed: the provider answered `{e}`"),
            ))));
        }
        let (Some(code), Some(st)) = (code.0.as_deref(), oidc_state.0.as_deref()) else {
            return Err(ApiError::invalid("code", "the callback needs `code` and `state`"));
        };
        let s = state.oidc.callback(&meta(req), &provider, code, st).await?;
        Ok(Json(SessionView {
            token: s.token,
            expires_at: s.expires_at,
            account: s.account.into(),
        }))
    }

    /// Log out: revokes the session token used.
    #[oai(
        path = "/auth/logout",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "log_out"
    )]
    async fn log_out(&self, state: Data<&Arc<AppState>>, req: &Request, auth: Auth) -> ApiResult<NoContent> {
        state.accounts.log_out(&meta(req), &auth.0).await?;
        Ok(NoContent::Done)
    }

    /// The calling account.
    #[oai(path = "/me", method = "get", tag = "ApiTags::Auth", operation_id = "get_me")]
    async fn me(&self, state: Data<&Arc<AppState>>, auth: Auth) -> ApiResult<Json<AccountView>> {
        Ok(Json(state.accounts.get(&auth.0.account_id).await?.into()))
    }

    /// Start TOTP enrolment (confirm with a code to turn it on). Turning a
    /// second factor on takes the password; replacing one takes a current
    /// code from it (or a recovery code).
    #[oai(
        path = "/me/totp",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "enrol_totp"
    )]
    async fn enrol_totp(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Auth,
        body: JsonBody<TotpEnrol>,
    ) -> ApiResult<Json<TotpEnrolmentView>> {
        session_only(&auth.0)?;
        let e = state
            .accounts
            .enrol_totp(&auth.0, body.password.as_deref(), body.code.as_deref())
            .await?;
        Ok(Json(TotpEnrolmentView {
            secret: e.secret,
            otpauth_url: e.otpauth_url,
        }))
    }

    /// Confirm TOTP enrolment; returns recovery codes, shown once.
    #[oai(
        path = "/me/totp/confirm",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "confirm_totp"
    )]
    async fn confirm_totp(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: Auth,
        body: JsonBody<TotpCode>,
    ) -> ApiResult<Json<RecoveryCodes>> {
        session_only(&auth.0)?;
        let codes = state.accounts.confirm_totp(&meta(req), &auth.0, &body.code).await?;
        Ok(Json(RecoveryCodes { recovery_codes: codes }))
    }
}
