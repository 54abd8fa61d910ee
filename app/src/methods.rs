//! The ways this server can make a twin — its generators — for every door
//! that lets a person or a program choose one: REST's `GET /v1/generators`,
//! Flight's `generators.list`, the console's method picker. Each with
//! whether this build has it and why not, whether it is differentially
//! private, the shipped pipeline that runs it, and the parameters a job may
//! set, read from the generator's own schema.
//!
//! A job that names a generator ([`crate::jobs::GeneratorRequest`]) runs
//! that shipped pipeline; [`resolve`] checks its parameters against the
//! schema (type, allowed values, bounds — the planner's own check) and
//! turns them into overrides of the pipeline's generator stage, so choosing
//! a generator allows nothing an override could not already do.

use std::sync::LazyLock;

use doppel_host::config::{self, ConfigField, ValueType};
use doppel_platform::Error;

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
    /// Form value (`cart`, `copula`, `privsyn`, `ctgan`, `tvae`, `dp-tvae`).
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
    /// The shipped pipeline a job that names this generator runs.
    pub pipeline: &'static str,
    /// What a job may set, in schema order (empty when unavailable: the
    /// schema is the generator's, and this build lacks it).
    pub params: Vec<Param>,
}

/// One parameter a job may set on a generator.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Key (`epochs`, `epsilon`, `rows`, …).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// `string`, `integer`, `number`, `boolean` or `strings`.
    pub kind: &'static str,
    /// Value when not set.
    pub default: Option<serde_json::Value>,
    /// The values a string parameter accepts; empty means any.
    pub allowed: Vec<String>,
    /// Inclusive lower bound.
    pub minimum: Option<f64>,
    /// Inclusive upper bound.
    pub maximum: Option<f64>,
}

/// The generators a shipped pipeline may use, by `builtin:<name>`: the
/// method ids.
pub const GENERATORS: &[&str] = &["cart", "copula", "privsyn", "ctgan", "tvae", "dp-tvae"];

/// The fields of `builtin:<name>`'s schema a job may set (its
/// user-settable keys); none when this build lacks it.
fn settable_fields(state: &AppState, name: &str) -> Vec<ConfigField> {
    let Some(builtin) = state.catalog.builtin(name) else {
        return Vec::new();
    };
    let settable = builtin.user_settable();
    builtin
        .schema()
        .into_iter()
        .filter(|f| settable.contains(&f.name.as_str()))
        .collect()
}

/// [`settable_fields`] as the doors show them.
fn params(state: &AppState, name: &str) -> Vec<Param> {
    settable_fields(state, name)
        .into_iter()
        .map(|f| Param {
            kind: match f.type_ {
                ValueType::String => "string",
                ValueType::Integer => "integer",
                ValueType::Float => "number",
                ValueType::Boolean => "boolean",
                ValueType::Strings => "strings",
            },
            default: f.default.as_ref().map(config::to_json),
            name: f.name,
            description: f.description,
            allowed: f.allowed,
            minimum: f.minimum,
            maximum: f.maximum,
        })
        .collect()
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
    let all = vec![
        Method {
            id: "cart",
            label: "High fidelity (sequential trees)",
            summary: "The default. Each column drawn from real rows in the leaf of a tree grown on the \
                      columns before it, so a classifier can hardly tell the twin from the real table, \
                      and no row is a copy. Personal data is replaced before it learns.",
            dp: false,
            choose_checks: false,
            unavailable: None,
            pipeline: "quickstart",
            params: Vec::new(),
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
            pipeline: "copula",
            params: Vec::new(),
        },
        Method {
            id: "privsyn",
            label: "Differentially private (PrivSyn)",
            summary: "A mathematical privacy guarantee (ε, δ) covering everything released; spends \
                      the dataset's privacy budget. Less faithful at small ε.",
            dp: true,
            choose_checks: false,
            unavailable: None,
            pipeline: "dp",
            params: Vec::new(),
        },
        Method {
            id: "ctgan",
            label: "CTGAN (neural network)",
            summary: "A conditional GAN; captures complex, multi-modal columns at the cost of minutes \
                      of training.",
            dp: false,
            choose_checks: false,
            unavailable: torch("ctgan"),
            pipeline: "ctgan",
            params: Vec::new(),
        },
        Method {
            id: "tvae",
            label: "TVAE (neural network)",
            summary: "A variational autoencoder for tables; often steadier than CTGAN on small tables.",
            dp: false,
            choose_checks: false,
            unavailable: torch("tvae"),
            pipeline: "tvae",
            params: Vec::new(),
        },
        Method {
            id: "dp-tvae",
            label: "Differentially private TVAE (DP-SGD)",
            summary: "TVAE trained with DP-SGD on a private domain: the (ε, δ) guarantee covers the whole \
                      twin, and the dataset's privacy budget is charged. Learns cross-column structure a \
                      marginal method may miss; needs a larger ε than PrivSyn for the same fidelity.",
            dp: true,
            choose_checks: false,
            unavailable: torch("dp-tvae"),
            pipeline: "dp-tvae",
            params: Vec::new(),
        },
    ];
    all.into_iter()
        .map(|m| Method {
            params: params(state, m.id),
            ..m
        })
        .collect()
}

/// The shipped pipeline that runs `method` with `checks`, and the id of its
/// generator stage; `None` for an unknown or unavailable method.
pub fn pipeline_for(state: &AppState, method: &str, checks: Checks) -> Option<(&'static str, &'static str)> {
    let m = methods(state).into_iter().find(|m| m.id == method)?;
    if m.unavailable.is_some() {
        return None;
    }
    let pipeline = match (method, checks) {
        ("copula", Checks::Hipaa) => "hipaa",
        ("copula", Checks::Gdpr) => "gdpr",
        _ => m.pipeline,
    };
    let (stage, _) = generator_stage(pipeline)?;
    Some((pipeline, stage))
}

/// Shipped pipelines by name, each with its generator stage's id and the
/// generator it uses, if it has one.
type GeneratorStages = Vec<(&'static str, Option<(String, &'static str)>)>;

/// Each shipped pipeline's generator stage (its id and the generator it
/// uses), read once from the pipeline texts: `None` for pipelines without
/// one (`sample`, `pii-scan`).
static GENERATOR_STAGES: LazyLock<GeneratorStages> = LazyLock::new(|| {
    use doppel_host::spec::{PipelineSpec, SourceFile};
    doppel_host::shipped::PIPELINES
        .iter()
        .map(|p| {
            let found = PipelineSpec::parse(SourceFile::new(format!("{}.toml", p.name), p.text))
                .ok()
                .and_then(|spec| {
                    spec.stages.iter().find_map(|stage| {
                        let uses = stage.uses.as_ref()?.value.strip_prefix("builtin:")?;
                        let generator = GENERATORS.iter().find(|g| **g == uses)?;
                        Some((stage.id.value.clone(), *generator))
                    })
                });
            (p.name, found)
        })
        .collect()
});

/// The generator stage of the shipped pipeline `pipeline`: its id and the
/// generator (`builtin:<name>`) it uses.
pub fn generator_stage(pipeline: &str) -> Option<(&'static str, &'static str)> {
    GENERATOR_STAGES
        .iter()
        .find(|(name, _)| *name == pipeline)
        .and_then(|(_, found)| found.as_ref())
        .map(|(stage, generator)| (stage.as_str(), *generator))
}

/// The shipped pipelines whose generator stage runs `generator`.
pub fn pipelines_running(generator: &str) -> Vec<String> {
    GENERATOR_STAGES
        .iter()
        .filter(|(_, found)| found.as_ref().is_some_and(|(_, used)| *used == generator))
        .map(|(n, _)| (*n).to_owned())
        .collect()
}

/// The most parameters one job may set on its generator.
pub const MAX_PARAMS: usize = 32;
/// The longest parameter name a job may send (every real one is shorter).
const MAX_PARAM_NAME: usize = 64;

/// A job's generator choice made concrete: the shipped pipeline it runs
/// (`pipeline`, or the generator's own when `None`) and its parameters as
/// overrides of that pipeline's generator stage. Every parameter must be
/// one the generator declares settable by a job, of its type, within its
/// bounds; errors name the field (`generator`, `pipeline`,
/// `generator.params.<key>`).
pub fn resolve(
    state: &AppState,
    generator: &str,
    params: &[(String, serde_json::Value)],
    pipeline: Option<&str>,
) -> Result<(&'static str, Vec<String>), Error> {
    let all = methods(state);
    let Some(method) = all.iter().find(|m| m.id == generator) else {
        let ids: Vec<&str> = all.iter().map(|m| m.id).collect();
        // Echo a name only when it looks like one: a client's text is not
        // repeated back at any length or with any characters.
        let named = if generator.len() <= 32 && generator.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            format!(" `{generator}`")
        } else {
            String::new()
        };
        return Err(Error::invalid(
            "generator",
            format!(
                "no generator{named}; this server has {} (GET /v1/generators)",
                ids.join(", ")
            ),
        ));
    };
    if let Some(why) = &method.unavailable {
        return Err(Error::invalid(
            "generator",
            format!("{generator} is not available: {why}"),
        ));
    }
    let pipeline = match pipeline {
        None => method.pipeline,
        Some(name) => {
            match GENERATOR_STAGES.iter().find(|(n, _)| *n == name) {
                Some((n, Some((_, used)))) if *used == generator => *n,
                Some((n, found)) => {
                    let what = found
                        .as_ref()
                        .map_or("no generator".to_owned(), |(_, used)| format!("the {used} generator"));
                    return Err(Error::invalid(
                        "pipeline",
                        format!(
                            "pipeline `{n}` runs {what}, not {generator}; pipelines that run {generator}: {} \
                             (or leave `pipeline` out)",
                            pipelines_running(generator).join(", ")
                        ),
                    ));
                }
                // Unknown pipelines are the job's own error to report.
                None => return Err(Error::invalid("pipeline", format!("no shipped pipeline `{name}`"))),
            }
        }
    };
    let (stage, _) = generator_stage(pipeline)
        .ok_or_else(|| Error::Internal(format!("shipped pipeline {pipeline} lost its generator stage")))?;
    if params.len() > MAX_PARAMS {
        return Err(Error::invalid(
            "generator.params",
            format!("at most {MAX_PARAMS} parameters"),
        ));
    }
    let schema = settable_fields(state, generator);
    let mut overrides = Vec::with_capacity(params.len());
    for (key, value) in params {
        if key.len() > MAX_PARAM_NAME {
            return Err(Error::invalid(
                "generator.params",
                format!("a parameter name is at most {MAX_PARAM_NAME} bytes"),
            ));
        }
        let field_name = format!("generator.params.{key}");
        let Some(field) = schema.iter().find(|f| &f.name == key) else {
            let names: Vec<&str> = schema.iter().map(|f| f.name.as_str()).collect();
            return Err(Error::invalid(
                field_name,
                format!(
                    "{generator} has no parameter `{key}` a job may set; it takes {}",
                    names.join(", ")
                ),
            ));
        };
        let setting = config::from_json(value).ok_or_else(|| {
            Error::invalid(
                field_name.clone(),
                "expected a string, number, boolean or list of strings",
            )
        })?;
        let setting = config::check(field, &setting).map_err(|m| Error::invalid(field_name.clone(), m))?;
        let literal = config::to_toml(&setting);
        if literal.len() > crate::jobs::MAX_OVERRIDE_BYTES {
            return Err(Error::invalid(
                field_name,
                format!("at most {} bytes", crate::jobs::MAX_OVERRIDE_BYTES),
            ));
        }
        overrides.push(format!("{stage}.{key}={literal}"));
    }
    Ok((pipeline, overrides))
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
