//! A detector that misbehaves on purpose, for the host's sandbox tests.
//!
//! `with.mode`:
//! - `ok`: behaves, one verdict per column;
//! - `spin`: loops forever in `scan`;
//! - `memory`: allocates until stopped;
//! - `panic`: panics in `scan`;
//! - `flood`: returns `with.count` findings from one `scan`;
//! - `stdout`: prints without end;
//! - `log`: logs a megabyte through the host, then behaves;
//! - `env`: reports every environment variable it can see as a column verdict;
//! - `fail`: returns a typed `stage-error`.

use doppel_sdk::*;

struct Hostile {
    mode: String,
    count: i64,
    columns: Vec<String>,
}

impl Plugin for Hostile {
    fn info() -> PluginInfo {
        PluginInfo::new("test/hostile", "0.1.0", StageKind::Detector)
            .summary("Misbehaves on purpose (test only).")
            .field(
                ConfigField::string("mode", "What to do wrong.")
                    .allowed(&["ok", "spin", "memory", "panic", "flood", "stdout", "log", "env", "fail"])
                    .default(ConfigValue::String("ok".into())),
            )
            .field(
                ConfigField::integer("count", "Findings returned by `flood`.").default(ConfigValue::Integer(200_000)),
            )
    }
}

impl Detector for Hostile {
    fn create(config: &Config) -> Result<Self, StageError> {
        Ok(Hostile {
            mode: config.string("mode")?.unwrap_or("ok").to_owned(),
            count: config.integer("count")?.unwrap_or(200_000),
            columns: Vec::new(),
        })
    }

    fn scan(&mut self, batch: &RecordBatch, row_offset: u64) -> Result<ScanOutcome, StageError> {
        for f in batch.schema().fields() {
            if !self.columns.contains(f.name()) {
                self.columns.push(f.name().clone());
            }
        }
        let first = self.columns.first().cloned().unwrap_or_default();
        match self.mode.as_str() {
            "spin" => {
                let mut x: u64 = row_offset;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "flood" => {
                let findings = (0..self.count)
                    .map(|i| Finding {
                        row: u64::try_from(i).unwrap_or(0),
                        column: first.clone(),
                        start: 0,
                        end: 1,
                        entity: "FLOOD".into(),
                        score: 1.0,
                    })
                    .collect();
                return Ok(ScanOutcome {
                    findings,
                    needs_more: true,
                });
            }
            "stdout" => loop {
                #[allow(clippy::print_stdout, reason = "flooding stdout is the point")]
                {
                    println!("flooding the host's stdout buffer with line after line after line");
                }
            },
            "log" => {
                for i in 0..20_000 {
                    log(LogLevel::Info, &format!("log line {i} of a plugin that talks too much"));
                }
            }
            "fail" => return Err(StageError::InvalidInput("this batch is not to my liking".into())),
            _ => {}
        }
        Ok(ScanOutcome {
            findings: vec![],
            needs_more: true,
        })
    }

    fn finish(&mut self) -> Result<Vec<ColumnFinding>, StageError> {
        if self.mode == "env" {
            return Ok(std::env::vars().map(|(k, v)| ColumnFinding::new(&k, &v, 1.0)).collect());
        }
        Ok(self
            .columns
            .iter()
            .map(|c| ColumnFinding::new(c, "NONE", 1.0))
            .collect())
    }
}

export_detector!(Hostile);
