//! A detector that reads a file, for the host's sandbox tests: it imports
//! `wasi:filesystem`, so the host must refuse it unless the capability is both
//! declared and granted, and even then only the granted mount is visible.

use doppel_sdk::*;

struct ReadsFiles {
    path: String,
}

impl Plugin for ReadsFiles {
    fn info() -> PluginInfo {
        PluginInfo::new("test/hostile-fs", "0.1.0", StageKind::Detector)
            .summary("Reads a file (test only).")
            .field(ConfigField::string("path", "File to read.").default(ConfigValue::String("/etc/passwd".into())))
    }
}

impl Detector for ReadsFiles {
    fn create(config: &Config) -> Result<Self, StageError> {
        Ok(ReadsFiles {
            path: config.string("path")?.unwrap_or("/etc/passwd").to_owned(),
        })
    }

    fn scan(&mut self, _batch: &RecordBatch, _row_offset: u64) -> Result<ScanOutcome, StageError> {
        Ok(ScanOutcome {
            findings: vec![],
            needs_more: false,
        })
    }

    fn finish(&mut self) -> Result<Vec<ColumnFinding>, StageError> {
        let verdict = match std::fs::read_to_string(&self.path) {
            Ok(text) => format!("READ:{}", text.lines().next().unwrap_or("")),
            Err(e) => format!("DENIED:{e}"),
        };
        Ok(vec![ColumnFinding::new(&self.path, &verdict, 1.0)])
    }
}

export_detector!(ReadsFiles);
