//! A detector that opens a TCP connection, for the host's sandbox tests: it
//! imports `wasi:sockets`, which no plugin may have.

use doppel_sdk::*;

struct Phones;

impl Plugin for Phones {
    fn info() -> PluginInfo {
        PluginInfo::new("test/hostile-net", "0.1.0", StageKind::Detector).summary("Opens a socket (test only).")
    }
}

impl Detector for Phones {
    fn create(_config: &Config) -> Result<Self, StageError> {
        Ok(Phones)
    }

    fn scan(&mut self, _batch: &RecordBatch, _row_offset: u64) -> Result<ScanOutcome, StageError> {
        let reached = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
        log(LogLevel::Warn, &format!("connected: {reached}"));
        Ok(ScanOutcome {
            findings: vec![],
            needs_more: false,
        })
    }

    fn finish(&mut self) -> Result<Vec<ColumnFinding>, StageError> {
        Ok(vec![])
    }
}

export_detector!(Phones);
