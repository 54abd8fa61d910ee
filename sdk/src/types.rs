//! The contract's data types, with constructors that keep plugin code short.

pub use crate::shared::doppel::plugin::types::{
    Batch, ColumnFact, ColumnFinding, ColumnType, ConfigField, ConfigValue, EntityCount, Facts, Finding, MetricValue,
    PluginInfo, Severity, StageError, StageKind, TableFacts, TableRole, ValueType, Verdict, VerdictStatus,
};

/// Every column family, the default of [`PluginInfo::reads`].
pub const ALL_COLUMN_TYPES: [ColumnType; 6] = [
    ColumnType::Text,
    ColumnType::Integer,
    ColumnType::Float,
    ColumnType::Boolean,
    ColumnType::Temporal,
    ColumnType::Binary,
];

impl PluginInfo {
    /// A plugin that reads every column family, takes no config and is deterministic.
    ///
    /// Metric plugins default to reading `[real, synthetic]`, detectors one table.
    pub fn new(name: &str, version: &str, kind: StageKind) -> Self {
        let tables = match kind {
            StageKind::Detector => vec![TableRole::Real],
            StageKind::Metric => vec![TableRole::Real, TableRole::Synthetic],
            StageKind::Rule => vec![],
        };
        PluginInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            kind,
            summary: String::new(),
            reads: ALL_COLUMN_TYPES.to_vec(),
            tables,
            config: Vec::new(),
            deterministic: true,
        }
    }

    /// One-line description shown by `doppel plugins list`.
    pub fn summary(mut self, summary: &str) -> Self {
        self.summary = summary.to_owned();
        self
    }

    /// Column families the stage reads; the host sends only those columns.
    pub fn reads(mut self, reads: &[ColumnType]) -> Self {
        self.reads = reads.to_vec();
        self
    }

    /// Tables a metric stage takes, in the order of the stage's `inputs`.
    pub fn tables(mut self, tables: &[TableRole]) -> Self {
        self.tables = tables.to_vec();
        self
    }

    /// Declare one accepted `with` key.
    pub fn field(mut self, field: ConfigField) -> Self {
        self.config.push(field);
        self
    }

    /// Mark the output as depending on something besides input and config.
    pub fn nondeterministic(mut self) -> Self {
        self.deterministic = false;
        self
    }
}

impl ConfigField {
    fn of(name: &str, ty: ValueType, description: &str) -> Self {
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

    /// A string field.
    pub fn string(name: &str, description: &str) -> Self {
        Self::of(name, ValueType::String, description)
    }
    /// An integer field.
    pub fn integer(name: &str, description: &str) -> Self {
        Self::of(name, ValueType::Integer, description)
    }
    /// A float field (integers are accepted too).
    pub fn float(name: &str, description: &str) -> Self {
        Self::of(name, ValueType::Float, description)
    }
    /// A boolean field.
    pub fn boolean(name: &str, description: &str) -> Self {
        Self::of(name, ValueType::Boolean, description)
    }
    /// A list-of-strings field.
    pub fn strings(name: &str, description: &str) -> Self {
        Self::of(name, ValueType::Strings, description)
    }
    /// The stage must set this key.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Value used when the stage leaves the key out.
    pub fn default(mut self, value: ConfigValue) -> Self {
        self.default = Some(value);
        self
    }
    /// Allowed values of a string (or strings) field.
    pub fn allowed(mut self, values: &[&str]) -> Self {
        self.allowed = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }
    /// Inclusive bounds of a numeric field.
    pub fn range(mut self, minimum: Option<f64>, maximum: Option<f64>) -> Self {
        self.minimum = minimum;
        self.maximum = maximum;
        self
    }
}

impl ColumnFinding {
    /// A column verdict with no cell counts.
    pub fn new(column: &str, entity: &str, confidence: f32) -> Self {
        ColumnFinding {
            column: column.to_owned(),
            entity: entity.to_owned(),
            confidence,
            scanned: 0,
            matched: 0,
            free_text: false,
            entities: Vec::new(),
        }
    }
}

impl MetricValue {
    /// A score about the given columns (none: the whole table).
    pub fn new(name: &str, columns: &[&str], value: f64) -> Self {
        MetricValue {
            name: name.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            value,
            note: None,
            extra: Vec::new(),
        }
    }
    /// Explain why the value is NaN or excluded from an average.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
    /// Attach a supporting number.
    pub fn extra(mut self, name: &str, value: f64) -> Self {
        self.extra.push((name.to_owned(), value));
        self
    }
}

impl StageError {
    /// The message, whatever the variant.
    pub fn message(&self) -> &str {
        match self {
            StageError::InvalidConfig(m)
            | StageError::InvalidInput(m)
            | StageError::UnsupportedSchema(m)
            | StageError::Internal(m) => m,
        }
    }
}
