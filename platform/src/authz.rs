//! Who is calling and what they may do: [`Principal`], [`Scope`] and the one
//! authorization function, [`authorize`], that every REST endpoint and every
//! Flight call goes through.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An account's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A regular account: sees only its own resources.
    User,
    /// An operator: may read and act on every account's resources.
    Admin,
}

impl Role {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
    /// From the stored string.
    pub fn parse(s: &str) -> Role {
        if s == "admin" { Role::Admin } else { Role::User }
    }
}

/// What a credential may be used for. Sessions carry every scope their role
/// allows; API keys carry the scopes chosen when they were created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read datasets, jobs, reports and outputs.
    DatasetsRead,
    /// Upload and delete datasets.
    DatasetsWrite,
    /// Submit and cancel jobs.
    JobsRun,
    /// Create and manage marketplace listings.
    MarketplaceSell,
    /// Buy on the marketplace (start checkouts).
    MarketplaceBuy,
    /// Operator endpoints (needs the admin role as well).
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 6] = [
        Scope::DatasetsRead,
        Scope::DatasetsWrite,
        Scope::JobsRun,
        Scope::MarketplaceSell,
        Scope::MarketplaceBuy,
        Scope::Admin,
    ];

    /// Wire name (`datasets:read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::DatasetsRead => "datasets:read",
            Scope::DatasetsWrite => "datasets:write",
            Scope::JobsRun => "jobs:run",
            Scope::MarketplaceSell => "marketplace:sell",
            Scope::MarketplaceBuy => "marketplace:buy",
            Scope::Admin => "admin",
        }
    }

    /// From the wire name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Scope::ALL.iter().map(|x| x.as_str()).collect();
            Error::invalid(
                "scopes",
                format!("unknown scope `{s}`; expected one of {}", names.join(", ")),
            )
        })
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A session token from sign-in.
    Session {
        /// Session id (not the token).
        session_id: String,
    },
    /// An API key.
    ApiKey {
        /// Key id (not the secret).
        key_id: String,
        /// Its scopes.
        scopes: Vec<Scope>,
        /// When it stops working (ms), if ever.
        expires_at: Option<i64>,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Account id.
    pub account_id: String,
    /// Account e-mail.
    pub email: String,
    /// Account role.
    pub role: Role,
    /// The credential used.
    pub credential: Credential,
}

impl Principal {
    /// Whether the credential carries `scope` (admin also needs the role).
    pub fn has_scope(&self, scope: Scope) -> bool {
        if scope == Scope::Admin && self.role != Role::Admin {
            return false;
        }
        match &self.credential {
            Credential::Session { .. } => true,
            Credential::ApiKey { scopes, .. } => scopes.contains(&scope),
        }
    }

    /// Whether this caller acts as an operator (admin role, admin scope).
    pub fn is_admin(&self) -> bool {
        self.has_scope(Scope::Admin)
    }

    /// Whether this credential may hand out (or take away) a key with
    /// `scopes` that lasts until `expires_at`: a session may (within the
    /// role); an API key only within its own scopes and its own lifetime, so
    /// a narrow or short-lived key can never mint or revoke a stronger one.
    pub fn covers_key(&self, scopes: &[Scope], expires_at: Option<i64>) -> bool {
        if !scopes.iter().all(|s| self.has_scope(*s)) {
            return false;
        }
        match &self.credential {
            Credential::Session { .. } => true,
            Credential::ApiKey { expires_at: own, .. } => match (own, expires_at) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(own), Some(other)) => other <= *own,
            },
        }
    }

    /// The API key id, if one was used (for the audit log).
    pub fn api_key_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::ApiKey { key_id, .. } => Some(key_id),
            Credential::Session { .. } => None,
        }
    }
}

/// Who may touch a resource besides its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Only the owner (and admins).
    OwnerOnly,
    /// The caller holds a read grant (e.g. bought it): reading is allowed.
    ReadGranted,
}

/// The one authorization decision. `need` must be on the credential
/// ([`Error::Forbidden`] otherwise); the resource must belong to the caller,
/// or the caller must be an admin, or — for read scopes only — hold a grant.
/// Someone else's resource answers [`Error::NotFound`], exactly like a
/// missing one, so ids cannot be probed.
pub fn authorize(p: &Principal, need: Scope, owner_id: &str, what: &str, grant: Grant) -> Result<()> {
    if !p.has_scope(need) {
        return Err(Error::Forbidden(format!(
            "this credential lacks the `{}` scope",
            need.as_str()
        )));
    }
    if p.account_id == owner_id || p.is_admin() {
        return Ok(());
    }
    if grant == Grant::ReadGranted && need == Scope::DatasetsRead {
        return Ok(());
    }
    Err(Error::NotFound(what.to_owned()))
}

/// [`authorize`] for actions with no resource yet (create, list own).
pub fn require(p: &Principal, need: Scope) -> Result<()> {
    if p.has_scope(need) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "this credential lacks the `{}` scope",
            need.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: &str, role: Role, scopes: &[Scope]) -> Principal {
        Principal {
            account_id: account.into(),
            email: format!("{account}@example.com"),
            role,
            credential: Credential::ApiKey {
                key_id: "k".into(),
                scopes: scopes.to_vec(),
                expires_at: Some(1000),
            },
        }
    }

    #[test]
    fn owner_scope_and_admin_rules() {
        let a = key("a", Role::User, &[Scope::DatasetsRead]);
        assert!(authorize(&a, Scope::DatasetsRead, "a", "dataset", Grant::OwnerOnly).is_ok());
        assert!(matches!(
            authorize(&a, Scope::DatasetsWrite, "a", "dataset", Grant::OwnerOnly),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            authorize(&a, Scope::DatasetsRead, "b", "dataset", Grant::OwnerOnly),
            Err(Error::NotFound(_))
        ));
        assert!(authorize(&a, Scope::DatasetsRead, "b", "dataset", Grant::ReadGranted).is_ok());
        let sneaky = key("a", Role::User, &[Scope::Admin, Scope::DatasetsRead]);
        assert!(!sneaky.is_admin(), "the admin scope needs the admin role");
        assert!(authorize(&sneaky, Scope::DatasetsRead, "b", "dataset", Grant::OwnerOnly).is_err());
        let admin = key("root", Role::Admin, &[Scope::Admin, Scope::DatasetsRead]);
        assert!(authorize(&admin, Scope::DatasetsRead, "b", "dataset", Grant::OwnerOnly).is_ok());
        let admin_narrow = key("root", Role::Admin, &[Scope::DatasetsRead]);
        assert!(
            authorize(&admin_narrow, Scope::DatasetsRead, "b", "dataset", Grant::OwnerOnly).is_err(),
            "an admin's key without the admin scope acts as a user"
        );
    }

    #[test]
    fn a_key_covers_only_narrower_shorter_keys() {
        let k = key("a", Role::User, &[Scope::DatasetsRead, Scope::JobsRun]);
        assert!(k.covers_key(&[Scope::DatasetsRead], Some(1000)));
        assert!(k.covers_key(&[Scope::DatasetsRead, Scope::JobsRun], Some(10)));
        assert!(!k.covers_key(&[Scope::DatasetsWrite], Some(10)), "a wider scope");
        assert!(!k.covers_key(&[Scope::DatasetsRead], Some(1001)), "a later expiry");
        assert!(!k.covers_key(&[Scope::DatasetsRead], None), "no expiry at all");
        let session = Principal {
            credential: Credential::Session { session_id: "s".into() },
            ..k
        };
        assert!(session.covers_key(&[Scope::DatasetsWrite, Scope::MarketplaceBuy], None));
        assert!(!session.covers_key(&[Scope::Admin], None), "admin needs the role");
    }

    #[test]
    fn scopes_parse_by_wire_name() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()).unwrap(), s);
        }
        assert!(
            Scope::parse("datasets:delete")
                .unwrap_err()
                .to_string()
                .contains("datasets:read")
        );
    }
}
