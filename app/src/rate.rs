//! Request budgets. Every door spends the same budget per caller
//! ([`AppState::check_rate`](crate::AppState::check_rate)), keyed by
//! [`limit_key`].

/// The budget a request spends: its account's when its credential resolved,
/// else its client address's. So an account has one budget whichever door
/// and whichever of its credentials it uses, and junk or re-spaced tokens buy
/// no fresh budget: they resolve to nothing and count against their address.
pub fn limit_key(account: Option<&str>, ip: Option<&str>) -> String {
    match account {
        Some(account) => format!("acct:{account}"),
        None => format!("ip:{}", ip.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::limit_key;

    #[test]
    fn accounts_and_addresses_have_separate_budgets() {
        assert_eq!(limit_key(Some("acct_1"), Some("10.0.0.1")), "acct:acct_1");
        assert_eq!(limit_key(None, Some("10.0.0.1")), "ip:10.0.0.1");
        // An address can never spend an account's budget.
        assert_ne!(limit_key(None, Some("acct_1")), limit_key(Some("acct_1"), None));
    }
}
