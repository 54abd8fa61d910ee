//! `tracing` setup: human or JSON lines on stderr, printed above progress bars.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::progress::Bars;
use crate::{Global, LogFormat};

/// Writes whole lines through the progress bars so they never tear a bar.
#[derive(Clone)]
struct BarWriter(Bars);

/// One log record in flight.
struct LineWriter {
    bars: Bars,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = std::mem::take(&mut self.buf);
        self.bars.suspend(|| {
            let _ = std::io::stderr().write_all(&text);
        });
    }
}

impl<'a> MakeWriter<'a> for BarWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            bars: self.0.clone(),
            buf: Vec::new(),
        }
    }
}

/// Install the global subscriber.
pub(crate) fn init(global: &Global, bars: &Bars) -> anyhow::Result<()> {
    let default = match global.verbose {
        0 => "warn,doppel_host=info,doppel=info",
        1 => "info,doppel_host=debug,doppel=debug",
        _ => "debug,doppel_host=trace,doppel=trace,cranelift_codegen=info,wasmtime_cranelift=info",
    };
    let filter = EnvFilter::try_new(global.log_filter.as_deref().unwrap_or(default))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BarWriter(bars.clone()))
        .with_target(false);
    match global.log_format {
        LogFormat::Text => builder.with_ansi(bars.is_tty()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}
