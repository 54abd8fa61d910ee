//! Stage settings: a stage's `with` table and the schema it is checked against.
//!
//! Plugins declare their schema in `describe` (WIT `config-field`); builtins and
//! generators declare theirs in Rust. Both are checked here, the same way,
//! before any data flows, and the stage receives the completed table (defaults
//! filled in).

use crate::spec::{Diagnostic, Located};

pub use crate::plugin::bindings::types::{ConfigField, ConfigValue, ValueType};

/// Settings after validation, in declaration order, defaults applied.
pub type Settings = Vec<(String, ConfigValue)>;

fn type_label(t: ValueType) -> &'static str {
    match t {
        ValueType::String => "a string",
        ValueType::Integer => "an integer",
        ValueType::Float => "a number",
        ValueType::Boolean => "a boolean",
        ValueType::Strings => "a list of strings",
    }
}

fn value_label(v: &ConfigValue) -> &'static str {
    match v {
        ConfigValue::String(_) => "a string",
        ConfigValue::Integer(_) => "an integer",
        ConfigValue::Float(_) => "a float",
        ConfigValue::Boolean(_) => "a boolean",
        ConfigValue::Strings(_) => "a list of strings",
    }
}

/// Coerce `value` to `field`'s type (integers widen to floats, a lone string
/// becomes a one-element list) and check its allowed values and bounds.
fn check_value(field: &ConfigField, value: &ConfigValue) -> Result<ConfigValue, String> {
    let coerced = match (field.type_, value) {
        (ValueType::String, ConfigValue::String(_))
        | (ValueType::Integer, ConfigValue::Integer(_))
        | (ValueType::Float, ConfigValue::Float(_))
        | (ValueType::Boolean, ConfigValue::Boolean(_))
        | (ValueType::Strings, ConfigValue::Strings(_)) => value.clone(),
        #[allow(clippy::cast_precision_loss, reason = "config integers are small")]
        (ValueType::Float, ConfigValue::Integer(i)) => ConfigValue::Float(*i as f64),
        (ValueType::Strings, ConfigValue::String(s)) => ConfigValue::Strings(vec![s.clone()]),
        (want, got) => {
            return Err(format!(
                "`{}` must be {}, found {}",
                field.name,
                type_label(want),
                value_label(got)
            ));
        }
    };
    if !field.allowed.is_empty() {
        let bad: Vec<&String> = match &coerced {
            ConfigValue::String(s) => vec![s].into_iter().filter(|s| !field.allowed.contains(s)).collect(),
            ConfigValue::Strings(list) => list.iter().filter(|s| !field.allowed.contains(s)).collect(),
            _ => Vec::new(),
        };
        if let Some(first) = bad.first() {
            return Err(format!(
                "`{}` does not accept `{first}`; allowed: {}",
                field.name,
                field.allowed.join(", ")
            ));
        }
    }
    #[allow(clippy::cast_precision_loss, reason = "config integers are small")]
    let number = match &coerced {
        ConfigValue::Integer(i) => Some(*i as f64),
        ConfigValue::Float(f) => Some(*f),
        _ => None,
    };
    if let Some(x) = number {
        if x.is_nan() {
            return Err(format!("`{}` must be a number, found NaN", field.name));
        }
        if let Some(min) = field.minimum
            && x < min
        {
            return Err(format!("`{}` must be at least {min}, found {x}", field.name));
        }
        if let Some(max) = field.maximum
            && x > max
        {
            return Err(format!("`{}` must be at most {max}, found {x}", field.name));
        }
    }
    Ok(coerced)
}

/// Check a stage's `with` against `fields`; on success return the completed
/// settings. `stage_span` locates errors about missing keys.
pub fn validate(
    stage: &str,
    fields: &[ConfigField],
    with: &[(Located<String>, Located<ConfigValue>)],
    stage_span: Option<std::ops::Range<usize>>,
) -> Result<Settings, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    for (key, _) in with {
        if !names.contains(&key.value.as_str()) {
            let mut d = Diagnostic::at(
                key.span.clone(),
                format!("stage `{stage}` does not accept `{}`", key.value),
            )
            .label("unknown key");
            d = d.suggest(&key.value, names.iter().copied());
            if d.help.is_empty() {
                d = d.help(if names.is_empty() {
                    "this stage takes no settings".to_owned()
                } else {
                    format!("accepted keys: {}", names.join(", "))
                });
            }
            diags.push(d);
        }
    }
    let mut settings = Vec::new();
    for field in fields {
        match with.iter().find(|(k, _)| k.value == field.name) {
            Some((key, value)) => match check_value(field, &value.value) {
                Ok(v) => settings.push((field.name.clone(), v)),
                Err(message) => {
                    let span = value.span.clone().or_else(|| key.span.clone());
                    let mut d = Diagnostic::at(span, format!("stage `{stage}`: {message}"));
                    if value.span.is_none() {
                        d = d.help("the value came from --set");
                    } else if !field.description.is_empty() {
                        d = d.help(format!("`{}`: {}", field.name, field.description));
                    }
                    diags.push(d);
                }
            },
            None => match &field.default {
                Some(default) => settings.push((field.name.clone(), default.clone())),
                None if field.required => diags.push(
                    Diagnostic::at(
                        stage_span.clone(),
                        format!("stage `{stage}` needs `{}` in `with`", field.name),
                    )
                    .help(field.description.clone()),
                ),
                None => {}
            },
        }
    }
    if diags.is_empty() { Ok(settings) } else { Err(diags) }
}

/// A setting's value as JSON, for reports.
pub fn to_json(value: &ConfigValue) -> serde_json::Value {
    match value {
        ConfigValue::String(s) => serde_json::Value::from(s.as_str()),
        ConfigValue::Integer(i) => serde_json::Value::from(*i),
        ConfigValue::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        ConfigValue::Boolean(b) => serde_json::Value::from(*b),
        ConfigValue::Strings(s) => serde_json::Value::from(s.clone()),
    }
}

/// Check one value against its field exactly as the planner checks a
/// stage's `with` (type, coercion, allowed values, bounds), for callers that
/// take settings in another wire format (a job's generator parameters).
pub fn check(field: &ConfigField, value: &ConfigValue) -> Result<ConfigValue, String> {
    check_value(field, value)
}

/// A JSON value as a setting, or `None` for what `with` cannot hold (null,
/// objects, lists of anything but strings, integers past 64 bits).
pub fn from_json(value: &serde_json::Value) -> Option<ConfigValue> {
    use serde_json::Value;
    Some(match value {
        Value::String(s) => ConfigValue::String(s.clone()),
        Value::Bool(b) => ConfigValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ConfigValue::Integer(i),
            // serde_json keeps integers it cannot hold in i64 as u64; a
            // setting that large would be refused by any bound anyway.
            None if n.is_u64() => return None,
            None => ConfigValue::Float(n.as_f64()?),
        },
        Value::Array(items) => ConfigValue::Strings(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?,
        ),
        Value::Null | Value::Object(_) => return None,
    })
}

/// A setting written as a TOML value, so that `stage.key=<this>` (a job's
/// override, `--set`) reads back as the same setting: strings quoted and
/// escaped, floats always with a point or exponent.
pub fn to_toml(value: &ConfigValue) -> String {
    let toml = match value {
        ConfigValue::String(s) => toml::Value::String(s.clone()),
        ConfigValue::Integer(i) => toml::Value::Integer(*i),
        ConfigValue::Float(f) => toml::Value::Float(*f),
        ConfigValue::Boolean(b) => toml::Value::Boolean(*b),
        ConfigValue::Strings(list) => toml::Value::Array(list.iter().cloned().map(toml::Value::String).collect()),
    };
    toml.to_string()
}

/// Look a key up in settings.
pub fn get<'a>(settings: &'a Settings, key: &str) -> Option<&'a ConfigValue> {
    settings.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Builders for the schemas of builtin stages.
pub(crate) fn field(name: &str, ty: ValueType, description: &str) -> ConfigField {
    ConfigField {
        name: name.to_owned(),
        description: description.to_owned(),
        type_: ty,
        required: false,
        default: None,
        allowed: Vec::new(),
        minimum: None,
        maximum: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc<T>(value: T, at: usize) -> Located<T> {
        Located {
            value,
            span: Some(at..at + 1),
        }
    }

    fn schema() -> Vec<ConfigField> {
        let mut rows = field("rows", ValueType::Integer, "rows to sample");
        rows.minimum = Some(1.0);
        let mut mode = field("mode", ValueType::String, "what to do");
        mode.allowed = vec!["fake".into(), "hash".into()];
        mode.default = Some(ConfigValue::String("fake".into()));
        let mut path = field("path", ValueType::String, "input file");
        path.required = true;
        vec![rows, mode, path, field("ratio", ValueType::Float, "share")]
    }

    #[test]
    fn defaults_and_coercions_apply() {
        let with = vec![
            (loc("path".to_owned(), 0), loc(ConfigValue::String("a.csv".into()), 1)),
            (loc("ratio".to_owned(), 2), loc(ConfigValue::Integer(1), 3)),
        ];
        let s = validate("s", &schema(), &with, None).unwrap();
        assert_eq!(get(&s, "mode"), Some(&ConfigValue::String("fake".into())));
        assert_eq!(get(&s, "ratio"), Some(&ConfigValue::Float(1.0)));
        assert_eq!(get(&s, "rows"), None);
    }

    fn setting() -> impl proptest::strategy::Strategy<Value = ConfigValue> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>().prop_map(ConfigValue::String),
            any::<i64>().prop_map(ConfigValue::Integer),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(ConfigValue::Float),
            any::<bool>().prop_map(ConfigValue::Boolean),
            proptest::collection::vec(any::<String>(), 0..4).prop_map(ConfigValue::Strings),
        ]
    }

    proptest::proptest! {
        /// What a job's generator parameters become: a `stage.key=value`
        /// override that `--set` parses back to the very same setting,
        /// whatever the text holds (quotes, backslashes, newlines, `=`).
        #[test]
        fn to_toml_reads_back_as_the_same_setting(value in setting()) {
            let text = "version = 1\nname = \"p\"\n[stages.s]\nuses = \"builtin:profile\"\n";
            let mut spec = crate::spec::PipelineSpec::parse(crate::spec::SourceFile::new("p.toml", text)).unwrap();
            spec.set(&format!("s.k={}", to_toml(&value))).unwrap();
            let stage = spec.stage("s").unwrap();
            let (_, got) = stage.with.iter().find(|(k, _)| k.value == "k").unwrap();
            match (&got.value, &value) {
                (ConfigValue::Float(a), ConfigValue::Float(b)) => proptest::prop_assert_eq!(a.to_bits(), b.to_bits()),
                (a, b) => proptest::prop_assert_eq!(a, b),
            }
        }

        /// JSON a client sends maps to the setting it means, and back.
        #[test]
        fn json_settings_round_trip(value in setting()) {
            let json = to_json(&value);
            proptest::prop_assert_eq!(from_json(&json), Some(value));
        }
    }

    #[test]
    fn json_that_with_cannot_hold_is_refused() {
        use serde_json::json;
        for v in [
            json!(null),
            json!({"a": 1}),
            json!([1, 2]),
            json!(["a", 1]),
            json!(u64::MAX),
        ] {
            assert_eq!(from_json(&v), None, "{v}");
        }
        assert_eq!(from_json(&json!(2)), Some(ConfigValue::Integer(2)));
        assert_eq!(from_json(&json!(2.5)), Some(ConfigValue::Float(2.5)));
        let mut epochs = field("epochs", ValueType::Integer, "passes");
        epochs.maximum = Some(10.0);
        assert_eq!(
            check(&epochs, &ConfigValue::Integer(11)).unwrap_err(),
            "`epochs` must be at most 10, found 11"
        );
        assert!(
            check(&epochs, &ConfigValue::Float(2.0)).is_err(),
            "no float for an integer"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let with = vec![
            (loc("rwos".to_owned(), 0), loc(ConfigValue::Integer(5), 1)),
            (loc("mode".to_owned(), 2), loc(ConfigValue::String("drop".into()), 3)),
            (loc("ratio".to_owned(), 4), loc(ConfigValue::String("x".into()), 5)),
        ];
        let diags = validate("s", &schema(), &with, Some(10..11)).unwrap_err();
        let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(diags.len(), 4, "{messages:?}");
        assert_eq!(diags[0].help, vec!["did you mean `rows`?".to_owned()]);
        assert!(messages.iter().any(|m| m.contains("does not accept `drop`")));
        assert!(messages.iter().any(|m| m.contains("`ratio` must be a number")));
        assert!(messages.iter().any(|m| m.contains("needs `path`")));
    }
}
