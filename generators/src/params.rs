//! Generator parameters: what a generator accepts in its stage's `with` table.

use crate::{Error, Result};

/// A parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// Text.
    String(String),
    /// Whole number.
    Integer(i64),
    /// Real number.
    Float(f64),
    /// Flag.
    Boolean(bool),
    /// List of strings.
    Strings(Vec<String>),
}

/// The type a parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// [`ParamValue::String`].
    String,
    /// [`ParamValue::Integer`].
    Integer,
    /// [`ParamValue::Float`] (integers accepted).
    Float,
    /// [`ParamValue::Boolean`].
    Boolean,
    /// [`ParamValue::Strings`].
    Strings,
}

/// Declaration of one parameter.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// Key in `with`.
    pub name: &'static str,
    /// One-line help.
    pub description: &'static str,
    /// Accepted type.
    pub ty: ParamType,
    /// Value when absent.
    pub default: Option<ParamValue>,
    /// Allowed values for string(s) parameters; empty means any.
    pub allowed: &'static [&'static str],
    /// Inclusive numeric bounds.
    pub minimum: Option<f64>,
    /// Inclusive numeric bounds.
    pub maximum: Option<f64>,
    /// Whether a remote caller (a server job's `generator` parameters or
    /// overrides) may set it: tuning within the bounds above, yes; what
    /// weakens a privacy guarantee or names the operator's hardware, no.
    pub user_settable: bool,
}

impl ParamSpec {
    /// A bounded integer parameter with a default.
    pub fn integer(name: &'static str, description: &'static str, default: i64, min: f64, max: f64) -> Self {
        ParamSpec {
            name,
            description,
            ty: ParamType::Integer,
            default: Some(ParamValue::Integer(default)),
            allowed: &[],
            minimum: Some(min),
            maximum: Some(max),
            user_settable: true,
        }
    }

    /// A bounded real parameter with a default.
    pub fn float(name: &'static str, description: &'static str, default: f64, min: f64, max: f64) -> Self {
        ParamSpec {
            name,
            description,
            ty: ParamType::Float,
            default: Some(ParamValue::Float(default)),
            allowed: &[],
            minimum: Some(min),
            maximum: Some(max),
            user_settable: true,
        }
    }
}

/// Parameter values handed to [`crate::Generator::fit`], already validated
/// against the generator's [`ParamSpec`]s by the caller.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: Vec<(String, ParamValue)>,
}

impl Params {
    /// Empty parameters (every default applies).
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a value.
    pub fn set(mut self, name: &str, value: ParamValue) -> Self {
        self.values.retain(|(k, _)| k != name);
        self.values.push((name.to_owned(), value));
        self
    }

    fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn wrong(name: &str, want: &str) -> Error {
        Error::InvalidParam {
            name: name.to_owned(),
            message: format!("expected {want}"),
        }
    }

    /// A float (or integer) parameter, or `default`.
    pub fn float(&self, name: &str, default: f64) -> Result<f64> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::Float(f)) => Ok(*f),
            #[allow(clippy::cast_precision_loss, reason = "parameters are small numbers")]
            Some(ParamValue::Integer(i)) => Ok(*i as f64),
            Some(_) => Err(Self::wrong(name, "a number")),
        }
    }

    /// An integer parameter, or `default`.
    pub fn integer(&self, name: &str, default: i64) -> Result<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::Integer(i)) => Ok(*i),
            Some(_) => Err(Self::wrong(name, "an integer")),
        }
    }

    /// A boolean parameter, or `default`.
    pub fn boolean(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::Boolean(b)) => Ok(*b),
            Some(_) => Err(Self::wrong(name, "true or false")),
        }
    }

    /// A string parameter, or `None`.
    pub fn string(&self, name: &str) -> Result<Option<&str>> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::String(s)) => Ok(Some(s)),
            Some(_) => Err(Self::wrong(name, "a string")),
        }
    }

    /// A list-of-strings parameter, or `None`.
    pub fn strings(&self, name: &str) -> Result<Option<&[String]>> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Strings(s)) => Ok(Some(s)),
            Some(_) => Err(Self::wrong(name, "a list of strings")),
        }
    }
}
