//! Fit `builtin:ctgan` or `builtin:tvae` on a CSV file and write the twin as
//! CSV, with timings as JSON on stdout (used by `benches/compare_ctgan.py`).
//!
//! ```text
//! LIBTORCH_USE_PYTORCH=1 cargo run --release -p doppel-generators --features torch \
//!     --example neural_csv -- ctgan data/adult.csv out.csv EPOCHS [SEED] [DEVICE]
//! ```

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::csv::reader::Format;
use arrow::csv::{ReaderBuilder, WriterBuilder};
use doppel_generators::{Ctgan, Generator, ParamValue, Params, Progress, TrainingData, Tvae, semantic};

/// Records when the first and the last epoch ended.
struct Epochs {
    started: Instant,
    marks: Mutex<Vec<f64>>,
}

impl Progress for Epochs {
    fn advance(&self, _done: u64, _total: u64) {
        if let Ok(mut m) = self.marks.lock() {
            m.push(self.started.elapsed().as_secs_f64());
        }
    }
    fn is_cancelled(&self) -> bool {
        false
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, input, output, epochs, rest @ ..] = args.as_slice() else {
        return Err("usage: neural_csv ctgan|tvae INPUT.csv OUTPUT.csv EPOCHS [SEED] [DEVICE]".into());
    };
    let seed: u64 = rest.first().map_or(Ok(0), |s| s.parse())?;
    let device = rest.get(1).map_or("auto", String::as_str);
    let generator: &dyn Generator = match model.as_str() {
        "ctgan" => &Ctgan,
        "tvae" => &Tvae,
        other => return Err(format!("unknown model {other}").into()),
    };
    let mut file = File::open(input)?;
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(&mut file, Some(1000))?;
    let reader = ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(File::open(input)?)?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
    let semantics: Vec<_> = semantic::infer_batch(&batch);
    let params = Params::new()
        .set("epochs", ParamValue::Integer(epochs.parse()?))
        .set("device", ParamValue::String(device.to_owned()));
    let data = TrainingData {
        batch: &batch,
        semantics: &semantics,
    };
    let progress = Epochs {
        started: Instant::now(),
        marks: Mutex::new(Vec::new()),
    };
    let model = generator.fit(&data, &params, seed, &progress)?;
    let fit = progress.started.elapsed().as_secs_f64();
    let marks = progress.marks.lock().map_err(|_| "poisoned")?.clone();
    // Seconds per epoch after the first (which includes encoding the table).
    let per_epoch = match marks.as_slice() {
        [first, .., last] if marks.len() > 1 => (last - first) / (marks.len() - 1) as f64,
        [only] => *only,
        _ => fit,
    };
    let started = Instant::now();
    let twin = model.sample(batch.num_rows(), seed, &doppel_generators::NoProgress)?;
    let sample = started.elapsed().as_secs_f64();
    let mut writer = WriterBuilder::new().with_header(true).build(File::create(output)?);
    writer.write(&twin)?;
    writeln!(
        std::io::stdout(),
        "{{\"fit_s\":{fit},\"per_epoch_s\":{per_epoch},\"first_epoch_end_s\":{},\"sample_s\":{sample},\"notes\":{:?}}}",
        marks.first().copied().unwrap_or(fit),
        model.notes().join("; ")
    )?;
    Ok(())
}
