//! Fit any built-in generator on a CSV file and write the twin as CSV, with
//! timings as JSON on stdout (used by `benches/side_by_side.py`);
//! `doppel run` is the user's way (it adds the release rule and the report).
//!
//! ```text
//! cargo run --release -p doppel-generators --example fit_csv -- cart data/adult.csv out.csv [SEED] [key=value ...]
//! ```

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use arrow::csv::reader::Format;
use arrow::csv::{ReaderBuilder, WriterBuilder};
use doppel_generators::{NoProgress, ParamValue, Params, TrainingData, builtin, semantic};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: fit_csv GENERATOR INPUT.csv OUTPUT.csv [SEED] [key=value ...]".into());
    };
    let seed: u64 = rest.first().map_or(Ok(0), |s| s.parse())?;
    let generator = builtin()
        .into_iter()
        .find(|g| g.name() == name)
        .ok_or_else(|| format!("no generator `{name}` in this build"))?;
    let mut params = Params::new();
    for kv in rest.iter().skip(1) {
        let (k, v) = kv.split_once('=').ok_or("parameters are key=value")?;
        let value = if let Ok(i) = v.parse::<i64>() {
            ParamValue::Integer(i)
        } else if let Ok(f) = v.parse::<f64>() {
            ParamValue::Float(f)
        } else if let Ok(b) = v.parse::<bool>() {
            ParamValue::Boolean(b)
        } else if v.contains(',') {
            ParamValue::Strings(v.split(',').map(str::to_owned).collect())
        } else {
            ParamValue::String(v.to_owned())
        };
        params = params.set(k, value);
    }
    let mut file = File::open(input)?;
    let format = Format::default().with_header(true);
    let (schema, _) = format.infer_schema(&mut file, Some(1000))?;
    let reader = ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .build(File::open(input)?)?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
    let semantics: Vec<_> = semantic::infer_batch(&batch);
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
    let columns: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .zip(&semantics)
        .map(|(f, s)| format!("{{\"name\":{:?},\"semantic_type\":\"{s}\"}}", f.name()))
        .collect();
    // The JSON line is this tool's output.
    writeln!(
        std::io::stdout(),
        "{{\"fit_s\":{fit},\"sample_s\":{sample},\"rows\":{rows},\"columns\":[{}]}}",
        columns.join(",")
    )?;
    Ok(())
}
