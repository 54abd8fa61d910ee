//! Fit a differentially private generator (`privsyn`, or `dp-tvae` in a
//! `--features torch` build) on a CSV file and write the twin as CSV, with
//! the privacy spent and timings as JSON on stdout. Used by
//! `benches/compare_dp.py`; `doppel run pipelines/dp.toml` (or
//! `dp-tvae.toml`) is the user's way.
//!
//! ```text
//! cargo run --release -p doppel-generators --example dp_csv -- privsyn data/adult.csv out.csv 1.0 [seed] [public_categories,...|-] [epochs]
//! ```

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use arrow::csv::reader::Format;
use arrow::csv::{ReaderBuilder, WriterBuilder};
use doppel_generators::{Generator, NoProgress, ParamValue, Params, PrivSyn, TrainingData, semantic};

/// The generator named on the command line.
fn generator(name: &str) -> Result<Box<dyn Generator>, String> {
    match name {
        "privsyn" => Ok(Box::new(PrivSyn)),
        #[cfg(feature = "torch")]
        "dp-tvae" => Ok(Box::new(doppel_generators::DpTvae)),
        other => Err(format!(
            "unknown generator `{other}` (privsyn; dp-tvae with --features torch)"
        )),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, input, output, epsilon, rest @ ..] = args.as_slice() else {
        return Err("usage: dp_csv GENERATOR INPUT.csv OUTPUT.csv EPSILON [SEED] [PUBLIC,COLUMNS|-] [EPOCHS]".into());
    };
    let generator = generator(name)?;
    let seed: u64 = rest.first().map_or(Ok(0), |s| s.parse())?;
    let mut file = File::open(input)?;
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(&mut file, Some(1000))?;
    let reader = ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(File::open(input)?)?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
    let semantics: Vec<_> = semantic::infer_batch(&batch);
    let mut params = Params::new().set("epsilon", ParamValue::Float(epsilon.parse()?));
    if let Some(public) = rest.get(1).filter(|p| p.as_str() != "-") {
        params = params.set(
            "public_categories",
            ParamValue::Strings(public.split(',').map(str::to_owned).collect()),
        );
    }
    if let Some(epochs) = rest.get(2) {
        params = params.set("epochs", ParamValue::Integer(epochs.parse()?));
    }
    let data = TrainingData {
        batch: &batch,
        semantics: &semantics,
    };
    let started = Instant::now();
    let model = generator.fit(&data, &params, seed, &NoProgress)?;
    let fit = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let rows = model.suggested_rows().unwrap_or(batch.num_rows());
    let twin = model.sample(rows, seed, &NoProgress)?;
    let sample = started.elapsed().as_secs_f64();
    let mut writer = WriterBuilder::new().with_header(true).build(File::create(output)?);
    writer.write(&twin)?;
    let spend = model.privacy().ok_or("no privacy spend")?;
    let columns: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .zip(&semantics)
        .map(|(f, s)| format!("{{\"name\":{:?},\"semantic_type\":\"{s}\"}}", f.name()))
        .collect();
    let sgd = spend.sgd.map_or_else(
        || "null".to_owned(),
        |s| {
            format!(
                "{{\"steps\":{},\"sampling_rate\":{},\"noise_multiplier\":{},\"clip\":{}}}",
                s.steps, s.sampling_rate, s.noise_multiplier, s.clip
            )
        },
    );
    // The JSON line is this tool's output (read by compare_dp.py).
    writeln!(
        std::io::stdout(),
        "{{\"fit_s\":{fit},\"sample_s\":{sample},\"rows\":{rows},\"epsilon\":{},\"delta\":{},\"sgd\":{sgd},\"columns\":[{}]}}",
        spend.epsilon,
        spend.delta,
        columns.join(",")
    )?;
    Ok(())
}
