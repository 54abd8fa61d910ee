//! The ways this server can make a twin, for doors that let a person choose
//! one (the console's method picker): each method, whether this build has
//! it and why not, whether it is differentially private, and which shipped
//! pipeline runs it with which compliance checks. A job is still submitted
//! as a shipped pipeline with tuning overrides ([`crate::jobs::submit`]), so
//! choosing a method changes nothing about what a job may do.

use crate::AppState;

/// Which compliance checks a twin is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// HIPAA Safe Harbor and GDPR.
    Both,
    /// HIPAA Safe Harbor only.
    Hipaa,
    /// GDPR only.
    Gdpr,
}

impl Checks {
    /// From a form value (`both`, `hipaa`, `gdpr`).
    pub fn parse(s: &str) -> Option<Checks> {
        match s {
            "both" => Some(Checks::Both),
            "hipaa" => Some(Checks::Hipaa),
            "gdpr" => Some(Checks::Gdpr),
            _ => None,
        }
    }
}

/// One way to make a twin.
#[derive(Debug, Clone)]
pub struct Method {
    /// Form value (`cart`, `copula`, `privsyn`, `ctgan`, `tvae`).
    pub id: &'static str,
    /// For people.
    pub label: &'static str,
    /// What it does and when to choose it.
    pub summary: &'static str,
    /// Whether its guarantee is differential privacy (ε and δ apply, and
    /// the dataset's budget is charged).
    pub dp: bool,
    /// Whether the method may pick its compliance checks (otherwise both run).
    pub choose_checks: bool,
    /// Why this server cannot run it, if it cannot.
    pub unavailable: Option<String>,
}

/// The methods, in the order a person should consider them.
pub fn methods(state: &AppState) -> Vec<Method> {
    let has = |name: &str| state.catalog.builtin(name).is_some();
    let torch = |name: &str| {
        (!has(name)).then(|| {
            format!(
                "this server was built without `--features torch`, which {name} needs (libtorch); \
                 ask the operator for a torch build"
            )
        })
    };
    vec![
        Method {
            id: "cart",
            label: "High fidelity (sequential trees)",
            summary: "The default. Each column drawn from real rows in the leaf of a tree grown on the \
                      columns before it, so a classifier can hardly tell the twin from the real table, \
                      and no row is a copy. Personal data is replaced before it learns.",
            dp: false,
            choose_checks: false,
            unavailable: None,
        },
        Method {
            id: "copula",
            label: "Gaussian copula",
            summary: "A smooth model of each column's distribution and how columns move together: \
                      good column shapes and trends, rows farther from real ones, but easy for a \
                      classifier to tell apart. Can also generalise for HIPAA Safe Harbor.",
            dp: false,
            choose_checks: true,
            unavailable: None,
        },
        Method {
            id: "privsyn",
            label: "Differentially private (PrivSyn)",
            summary: "A mathematical privacy guarantee (ε, δ) covering everything released; spends \
                      the dataset's privacy budget. Less faithful at small ε.",
            dp: true,
            choose_checks: false,
            unavailable: None,
        },
        Method {
            id: "ctgan",
            label: "CTGAN (neural network)",
            summary: "A conditional GAN; captures complex, multi-modal columns at the cost of minutes \
                      of training.",
            dp: false,
            choose_checks: false,
            unavailable: torch("ctgan"),
        },
        Method {
            id: "tvae",
            label: "TVAE (neural network)",
            summary: "A variational autoencoder for tables; often steadier than CTGAN on small tables.",
            dp: false,
            choose_checks: false,
            unavailable: torch("tvae").or_else(|| {
                Some(
                    "no shipped server pipeline runs TVAE yet; use `doppel run` with a pipeline of \
                      your own"
                        .to_owned(),
                )
            }),
        },
    ]
}

/// The shipped pipeline that runs `method` with `checks`, and the id of its
/// generator stage; `None` for an unknown or unavailable method.
pub fn pipeline_for(state: &AppState, method: &str, checks: Checks) -> Option<(&'static str, &'static str)> {
    let m = methods(state).into_iter().find(|m| m.id == method)?;
    if m.unavailable.is_some() {
        return None;
    }
    Some(match (method, checks) {
        ("cart", _) => ("quickstart", "synth"),
        ("copula", Checks::Both) => ("copula", "synth"),
        ("copula", Checks::Hipaa) => ("hipaa", "synth"),
        ("copula", Checks::Gdpr) => ("gdpr", "synth"),
        ("privsyn", _) => ("dp", "synth"),
        ("ctgan", _) => ("ctgan", "synth"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::Checks;

    #[test]
    fn checks_parse_from_form_values() {
        assert_eq!(Checks::parse("both"), Some(Checks::Both));
        assert_eq!(Checks::parse("hipaa"), Some(Checks::Hipaa));
        assert_eq!(Checks::parse("gdpr"), Some(Checks::Gdpr));
        assert_eq!(Checks::parse("none"), None);
    }
}
