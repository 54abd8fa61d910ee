//! Typed access to a stage's `with` table.

use crate::{ConfigValue, StageError};

/// A stage's `with` table as the host passed it: validated against the
/// plugin's declared fields and completed with their defaults.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, ConfigValue)>,
}

impl From<Vec<(String, ConfigValue)>> for Config {
    fn from(entries: Vec<(String, ConfigValue)>) -> Self {
        Config { entries }
    }
}

impl Config {
    /// An empty config (all defaults come from the host; natively, from tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a key (for native tests).
    pub fn with(mut self, key: &str, value: ConfigValue) -> Self {
        self.entries.retain(|(k, _)| k != key);
        self.entries.push((key.to_owned(), value));
        self
    }

    /// The raw value of a key.
    pub fn get(&self, key: &str) -> Option<&ConfigValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// All entries, in the order the host sent them.
    pub fn entries(&self) -> &[(String, ConfigValue)] {
        &self.entries
    }

    fn wrong(key: &str, want: &str, got: &ConfigValue) -> StageError {
        StageError::InvalidConfig(format!("`{key}` must be {want}, got {got:?}"))
    }

    /// A string value, `None` when absent.
    pub fn string(&self, key: &str) -> Result<Option<&str>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(ConfigValue::String(s)) => Ok(Some(s)),
            Some(other) => Err(Self::wrong(key, "a string", other)),
        }
    }

    /// An integer value, `None` when absent.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(ConfigValue::Integer(i)) => Ok(Some(*i)),
            Some(other) => Err(Self::wrong(key, "an integer", other)),
        }
    }

    /// A float value (integers widen), `None` when absent.
    pub fn float(&self, key: &str) -> Result<Option<f64>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(ConfigValue::Float(f)) => Ok(Some(*f)),
            #[allow(clippy::cast_precision_loss, reason = "config integers are small")]
            Some(ConfigValue::Integer(i)) => Ok(Some(*i as f64)),
            Some(other) => Err(Self::wrong(key, "a number", other)),
        }
    }

    /// A boolean value, `None` when absent.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(ConfigValue::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(Self::wrong(key, "a boolean", other)),
        }
    }

    /// A list of strings, `None` when absent.
    pub fn strings(&self, key: &str) -> Result<Option<&[String]>, StageError> {
        match self.get(key) {
            None => Ok(None),
            Some(ConfigValue::Strings(s)) => Ok(Some(s)),
            Some(other) => Err(Self::wrong(key, "a list of strings", other)),
        }
    }
}
