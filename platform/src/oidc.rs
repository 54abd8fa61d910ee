//! Single sign-on with OpenID Connect: the authorization-code flow with PKCE
//! (S256), `state` and `nonce`. Pending requests live in the database, so any
//! server instance can finish a sign-in another one started, and each `state`
//! works once. The ID token's signature is checked against the provider's
//! JWKS (asymmetric algorithms only), as are its issuer, audience, expiry and
//! nonce. Accounts are linked by (issuer, subject) — never by e-mail alone: a
//! first SSO sign-in whose e-mail already belongs to a password account is
//! refused rather than silently merged.
//!
//! GitHub is a provider of its own kind (`[auth.github]`, named `github`):
//! it speaks OAuth 2 without OpenID Connect, so after the code exchange
//! (with `state` and PKCE as well) the account is read from its user API and
//! its verified primary e-mail, and linked by GitHub's numeric user id.
//!
//! A flow remembers which [`Door`] started it (REST or the web console): each
//! has its own callback URL, and the code is exchanged with the one the flow
//! started with.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::accounts::{Account, Accounts, NewSession, insert_account};
use crate::audit::RequestMeta;
use crate::authz::Role;
use crate::settings::{GithubSettings, OidcProviderSettings};
use crate::util::{base62, ct_eq, now_ms, random_bytes, sha256_hex};
use crate::{Db, Error, Result};

/// How long a started sign-in may take.
const STATE_TTL_MS: i64 = 10 * 60 * 1000;

/// The most bytes read from any answer of an identity provider (discovery,
/// token, JWKS, UserInfo documents are a few KiB).
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Read at most [`MAX_ANSWER_BYTES`] of `resp`, refusing larger answers
/// (whatever their `Content-Length` says) before they are held.
async fn read_capped(mut resp: reqwest::Response) -> std::result::Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
        return Err(format!("the answer is larger than {} KiB", MAX_ANSWER_BYTES / 1024));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("the answer is larger than {} KiB", MAX_ANSWER_BYTES / 1024));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `scheme://host[:port]` of a URL, or `None` if it is not an absolute
/// http(s) URL.
fn origin_of(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .map(|u| u.origin().ascii_serialization())
}

/// Where a sign-in started, and so where the provider sends the browser back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The REST API: `/v1/auth/oidc/{provider}/callback` answers with a session token.
    Api,
    /// The web console: `/login/sso/{provider}/callback` sets the session cookie.
    Console,
}

impl Door {
    fn as_str(self) -> &'static str {
        match self {
            Door::Api => "api",
            Door::Console => "console",
        }
    }

    fn parse(s: &str) -> Door {
        if s == "console" { Door::Console } else { Door::Api }
    }
}

/// The name GitHub sign-in has in URLs.
pub const GITHUB: &str = "github";

/// OpenID Connect sign-in.
#[derive(Clone)]
pub struct Oidc {
    db: Db,
    accounts: Accounts,
    providers: Vec<OidcProviderSettings>,
    github: Option<GithubSettings>,
    public_url: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
        f.debug_struct("Oidc")
            .field("providers", &names)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
    /// GitHub answers a refused exchange with 200 and an `error`.
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GithubUser {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

/// Who a provider says signed in.
struct Identity {
    /// The issuer accounts are linked under (the OIDC issuer, GitHub's web URL).
    issuer: String,
    /// The provider's name, recorded on accounts it creates.
    provider: String,
    /// The provider's stable id of the person.
    subject: String,
    email: Option<String>,
    email_verified: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    email: Option<String>,
    email_verified: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    nonce: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
}

impl Oidc {
    /// SSO over the configured providers.
    pub fn new(
        db: Db,
        accounts: Accounts,
        providers: Vec<OidcProviderSettings>,
        github: Option<GithubSettings>,
        public_url: String,
    ) -> Result<Self> {
        if github.is_some() && providers.iter().any(|p| p.name == GITHUB) {
            return Err(Error::Settings(
                "auth.oidc: the name `github` belongs to [auth.github]; call this provider something else".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            // The provider's answers are read as they are; a redirect there is a misconfiguration.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        Ok(Oidc {
            db,
            accounts,
            providers,
            github,
            public_url,
            http,
        })
    }

    /// The configured provider names (`github` last, when configured).
    pub fn provider_names(&self) -> Vec<String> {
        self.providers
            .iter()
            .map(|p| p.name.clone())
            .chain(self.github.as_ref().map(|_| GITHUB.to_owned()))
            .collect()
    }

    fn provider(&self, name: &str) -> Result<&OidcProviderSettings> {
        self.providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::NotFound(format!("sign-in provider `{name}`")))
    }

    /// Where the provider sends the browser back to (REST's callback).
    pub fn redirect_uri(&self, provider: &str) -> String {
        self.redirect_uri_for(provider, Door::Api)
    }

    /// Where the provider sends the browser back to, for flows started at `door`.
    pub fn redirect_uri_for(&self, provider: &str, door: Door) -> String {
        match door {
            Door::Api => format!("{}/v1/auth/oidc/{provider}/callback", self.public_url),
            Door::Console => format!("{}/login/sso/{provider}/callback", self.public_url),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, what: &str) -> Result<T> {
        let unavailable =
            |e: String| Error::Unavailable(format!("the identity provider's {what} could not be read: {e}"));
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        let body = read_capped(resp).await.map_err(unavailable)?;
        serde_json::from_slice(&body).map_err(|e| unavailable(e.to_string()))
    }

    async fn discover(&self, p: &OidcProviderSettings) -> Result<Discovery> {
        let url = format!("{}/.well-known/openid-configuration", p.issuer.trim_end_matches('/'));
        let d: Discovery = self.get_json(&url, "discovery document").await?;
        // OpenID Connect Discovery §4.3: the issuer must be exactly the one configured.
        if d.issuer.trim_end_matches('/') != p.issuer.trim_end_matches('/') {
            return Err(Error::Unavailable(format!(
                "the identity provider calls itself `{}`, not `{}`",
                d.issuer, p.issuer
            )));
        }
        // The server will POST the client secret to the token endpoint and
        // trust keys from the JWKS URL: a discovery document (or whoever can
        // alter it) must not point those at another host. Only the issuer's
        // origin and those the operator listed are followed.
        let allowed: Vec<String> = std::iter::once(p.issuer.as_str())
            .chain(p.endpoint_origins.iter().map(String::as_str))
            .filter_map(origin_of)
            .collect();
        let endpoints = [
            ("token_endpoint", Some(&d.token_endpoint)),
            ("jwks_uri", Some(&d.jwks_uri)),
            ("userinfo_endpoint", d.userinfo_endpoint.as_ref()),
        ];
        for (name, url) in endpoints {
            let Some(url) = url else { continue };
            if !origin_of(url).is_some_and(|o| allowed.contains(&o)) {
                return Err(Error::Unavailable(format!(
                    "the identity provider's {name} is not on its own origin or one allowed in \
                     auth.oidc.endpoint_origins"
                )));
            }
        }
        Ok(d)
    }

    /// Begin a sign-in from the REST API: returns the provider URL to send
    /// the browser to.
    pub async fn start(&self, provider: &str) -> Result<String> {
        self.start_for(provider, Door::Api).await
    }

    /// Record a pending sign-in (single use, expiring) and return its
    /// `state`, `nonce` and the PKCE challenge.
    async fn pending(&self, provider: &str, door: Door) -> Result<(String, String, String)> {
        let state = base62(&random_bytes::<24>(), 32);
        let nonce = base62(&random_bytes::<24>(), 32);
        // RFC 7636: 43+ characters from the unreserved set; base62 is a subset.
        let verifier = base62(&random_bytes::<32>(), 43);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let now = now_ms();
        sqlx::query("DELETE FROM oidc_states WHERE expires_at < $1")
            .bind(now)
            .execute(&self.db.pool)
            .await?;
        sqlx::query(
            "INSERT INTO oidc_states (state_hash, provider, nonce, pkce_verifier, created_at, expires_at, door) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(sha256_hex(state.as_bytes()))
        .bind(provider)
        .bind(&nonce)
        .bind(&verifier)
        .bind(now)
        .bind(now + STATE_TTL_MS)
        .bind(door.as_str())
        .execute(&self.db.pool)
        .await?;
        Ok((state, nonce, challenge))
    }

    /// Begin a sign-in from `door`: returns the provider URL to send the
    /// browser to.
    pub async fn start_for(&self, provider: &str, door: Door) -> Result<String> {
        if provider == GITHUB
            && let Some(g) = &self.github
        {
            let (state, _nonce, challenge) = self.pending(provider, door).await?;
            let mut url = url::Url::parse(&format!("{}/login/oauth/authorize", g.web_url.trim_end_matches('/')))
                .map_err(|e| Error::Settings(format!("auth.github.web_url: {e}")))?;
            url.query_pairs_mut()
                .append_pair("client_id", &g.client_id)
                .append_pair("redirect_uri", &self.redirect_uri_for(provider, door))
                .append_pair("scope", "read:user user:email")
                .append_pair("state", &state)
                .append_pair("allow_signup", "false")
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            return Ok(url.to_string());
        }
        let p = self.provider(provider)?;
        let d = self.discover(p).await?;
        let (state, nonce, challenge) = self.pending(provider, door).await?;
        let mut url = url::Url::parse(&d.authorization_endpoint)
            .map_err(|e| Error::Unavailable(format!("the provider's authorization endpoint is not a URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &p.client_id)
            .append_pair("redirect_uri", &self.redirect_uri_for(provider, door))
            .append_pair("scope", "openid email")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.to_string())
    }

    /// Finish a sign-in: exchange the code, verify the ID token, find or
    /// create the linked account, open a session.
    pub async fn callback(&self, meta: &RequestMeta, provider: &str, code: &str, state: &str) -> Result<NewSession> {
        let refused = |m: &str| Error::Unauthenticated(format!("single sign-on failed: {m}"));
        if provider != GITHUB || self.github.is_none() {
            // An unknown provider is "not found" before any state is spent.
            self.provider(provider)?;
        }
        // Single use: the row is deleted as it is read.
        let row = sqlx::query(
            "DELETE FROM oidc_states WHERE state_hash = $1 AND provider = $2 \
             RETURNING nonce, pkce_verifier, expires_at, door",
        )
        .bind(sha256_hex(state.as_bytes()))
        .bind(provider)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| refused("unknown or already used `state`"))?;
        let nonce: String = row.try_get("nonce")?;
        let verifier: String = row.try_get("pkce_verifier")?;
        let door = Door::parse(&row.try_get::<String, _>("door")?);
        if row.try_get::<i64, _>("expires_at")? < now_ms() {
            return Err(refused("the sign-in took too long; start again"));
        }
        let redirect_uri = self.redirect_uri_for(provider, door);
        if provider == GITHUB
            && let Some(g) = &self.github
        {
            let identity = self.github_identity(g, code, &verifier, &redirect_uri).await?;
            let account = self.link(meta, &identity).await?;
            return self
                .accounts
                .open_session(meta, account, "authn_login_success_sso")
                .await;
        }
        let p = self.provider(provider)?;
        let d = self.discover(p).await?;
        let resp = self
            .http
            .post(&d.token_endpoint)
            .basic_auth(&p.client_id, Some(p.client_secret.expose()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("the identity provider could not be reached: {e}")))?;
        if !resp.status().is_success() {
            tracing::warn!(provider, status = %resp.status(), "Token exchange refused.");
            return Err(refused("the identity provider refused the authorization code"));
        }
        let body = read_capped(resp)
            .await
            .map_err(|e| Error::Unavailable(format!("the identity provider's token answer: {e}")))?;
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| refused("the identity provider's token answer is not JSON"))?;
        let id_token = token
            .id_token
            .ok_or_else(|| refused("no ID token in the provider's answer"))?;
        let mut claims = self.verify(p, &d, &id_token, &nonce).await?;
        if claims.email.is_none() || claims.email_verified != Some(true) {
            // Many providers return scope claims only from UserInfo (OIDC Core §5.4).
            if let (Some(endpoint), Some(access)) = (&d.userinfo_endpoint, &token.access_token) {
                let info = self.userinfo(endpoint, access).await?;
                // §5.3.2: the UserInfo `sub` must be the ID token's, or the answer is not about this user.
                if info.sub != claims.sub {
                    return Err(refused("UserInfo describes a different subject than the ID token"));
                }
                claims.email = info.email;
                claims.email_verified = info.email_verified;
            }
        }
        let identity = Identity {
            issuer: p.issuer.clone(),
            provider: p.name.clone(),
            subject: claims.sub,
            email: claims.email,
            email_verified: claims.email_verified,
        };
        let account = self.link(meta, &identity).await?;
        self.accounts
            .open_session(meta, account, "authn_login_success_sso")
            .await
    }

    /// GitHub's side of a sign-in: exchange the code (with the PKCE
    /// verifier), then read the user and their verified primary e-mail.
    async fn github_identity(
        &self,
        g: &GithubSettings,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Identity> {
        let refused = |m: &str| Error::Unauthenticated(format!("single sign-on failed: {m}"));
        let unavailable = |m: String| Error::Unavailable(format!("GitHub could not be reached: {m}"));
        let resp = self
            .http
            .post(format!("{}/login/oauth/access_token", g.web_url.trim_end_matches('/')))
            .header("accept", "application/json")
            .form(&[
                ("client_id", g.client_id.as_str()),
                ("client_secret", g.client_secret.expose()),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            tracing::warn!(status = %resp.status(), "GitHub refused the token exchange.");
            return Err(refused("GitHub refused the authorization code"));
        }
        let body = read_capped(resp).await.map_err(unavailable)?;
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| refused("GitHub's token answer is not JSON"))?;
        if let Some(e) = token.error {
            tracing::warn!(error = %e, "GitHub refused the token exchange.");
            return Err(refused("GitHub refused the authorization code"));
        }
        let access = token
            .access_token
            .ok_or_else(|| refused("no access token in GitHub's answer"))?;
        let api = g.api_url.trim_end_matches('/');
        let user: GithubUser = self.github_get(&format!("{api}/user"), &access).await?;
        let emails: Vec<GithubEmail> = self.github_get(&format!("{api}/user/emails"), &access).await?;
        let primary = emails.into_iter().find(|e| e.primary && e.verified);
        Ok(Identity {
            issuer: g.web_url.trim_end_matches('/').to_owned(),
            provider: GITHUB.to_owned(),
            subject: user.id.to_string(),
            email_verified: primary.as_ref().map(|_| true),
            email: primary.map(|e| e.email),
        })
    }

    async fn github_get<T: serde::de::DeserializeOwned>(&self, url: &str, access: &str) -> Result<T> {
        let unavailable = |m: String| Error::Unavailable(format!("GitHub's user API could not be read: {m}"));
        let resp = self
            .http
            .get(url)
            .bearer_auth(access)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("user-agent", "doppel")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        let body = read_capped(resp).await.map_err(unavailable)?;
        serde_json::from_slice(&body).map_err(|e| unavailable(e.to_string()))
    }

    async fn userinfo(&self, endpoint: &str, access_token: &str) -> Result<UserInfo> {
        let unavailable =
            |e: String| Error::Unavailable(format!("the identity provider's UserInfo could not be read: {e}"));
        let resp = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        let body = read_capped(resp).await.map_err(unavailable)?;
        serde_json::from_slice(&body).map_err(|e| unavailable(e.to_string()))
    }

    async fn verify(&self, p: &OidcProviderSettings, d: &Discovery, id_token: &str, nonce: &str) -> Result<IdClaims> {
        let refused = |m: String| Error::Unauthenticated(format!("single sign-on failed: {m}"));
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| refused(format!("malformed ID token: {e}")))?;
        // Asymmetric algorithms only: `none` and HMAC (keyed with the public client secret) are refused.
        let allowed = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        if !allowed.contains(&header.alg) {
            return Err(refused(format!(
                "ID token signed with {:?}, which is not accepted",
                header.alg
            )));
        }
        let jwks: jsonwebtoken::jwk::JwkSet = self.get_json(&d.jwks_uri, "signing keys").await?;
        let jwk = match &header.kid {
            Some(kid) => jwks.find(kid),
            None if jwks.keys.len() == 1 => jwks.keys.first(),
            None => None,
        }
        .ok_or_else(|| refused("the ID token's signing key is not among the provider's keys".into()))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| refused(format!("unusable signing key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[d.issuer.as_str()]);
        validation.set_audience(&[p.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        let data = jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation)
            .map_err(|e| refused(format!("the ID token does not verify: {e}")))?;
        let claims = data.claims;
        if !claims
            .nonce
            .as_deref()
            .is_some_and(|n| ct_eq(n.as_bytes(), nonce.as_bytes()))
        {
            return Err(refused("the ID token's nonce does not match this sign-in".into()));
        }
        Ok(claims)
    }

    async fn link(&self, meta: &RequestMeta, who: &Identity) -> Result<Account> {
        let linked: Option<String> =
            sqlx::query_scalar("SELECT account_id FROM oidc_links WHERE issuer = $1 AND subject = $2")
                .bind(&who.issuer)
                .bind(&who.subject)
                .fetch_optional(&self.db.pool)
                .await?;
        if let Some(id) = linked {
            let account = self.accounts.get(&id).await?;
            if account.disabled_at.is_some() {
                return Err(Error::Unauthenticated("this account is disabled".into()));
            }
            return Ok(account);
        }
        let email = match (&who.email, who.email_verified) {
            (Some(e), Some(true)) => e.trim().to_ascii_lowercase(),
            _ => {
                return Err(Error::Unauthenticated(
                    "single sign-on failed: the provider did not share a verified e-mail".into(),
                ));
            }
        };
        let taken: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1")
            .bind(&email)
            .fetch_optional(&self.db.pool)
            .await?;
        if taken.is_some() {
            return Err(Error::Conflict(
                "an account with this e-mail already exists; sign in with its password (accounts are never merged by e-mail)".into(),
            ));
        }
        let mut tx = self.db.pool.begin().await?;
        let (id, now) = insert_account(
            &mut tx,
            meta,
            &email,
            None,
            Role::User,
            serde_json::json!({"sso": who.provider}),
        )
        .await?;
        sqlx::query("INSERT INTO oidc_links (issuer, subject, account_id, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&who.issuer)
            .bind(&who.subject)
            .bind(&id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.accounts.get(&id).await
    }
}
