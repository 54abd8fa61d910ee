//! `builtin:split`: reserve real rows before training. Two stages with the same
//! `holdout` and `seed` and opposite `part`s get complementary rows: the
//! training table for the generator, the holdout for DCROverfittingProtection.

use std::sync::Arc;

use arrow::array::UInt32Array;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::config::{ConfigField, ConfigValue, Settings, ValueType, field, get};
use crate::table::Table;

/// The `with` schema of `builtin:split`.
pub fn schema() -> Vec<ConfigField> {
    let mut part = field("part", ValueType::String, "Which rows this stage passes on.");
    part.allowed = ["train", "holdout"].map(str::to_owned).to_vec();
    part.required = true;
    let mut holdout = field("holdout", ValueType::Float, "Share of rows set aside as holdout.");
    holdout.default = Some(ConfigValue::Float(0.2));
    holdout.minimum = Some(0.0);
    holdout.maximum = Some(1.0);
    let mut seed = field(
        "seed",
        ValueType::Integer,
        "Seed of the shuffle (use the same one in both stages).",
    );
    seed.default = Some(ConfigValue::Integer(0));
    seed.minimum = Some(0.0);
    vec![part, holdout, seed]
}

/// Rows of `table` in the requested part, in their original order.
pub fn split(table: &Table, settings: &Settings) -> Result<Table> {
    let holdout = match get(settings, "holdout") {
        Some(ConfigValue::Float(f)) => *f,
        _ => 0.2,
    };
    let seed = match get(settings, "seed") {
        Some(ConfigValue::Integer(i)) => u64::try_from(*i).unwrap_or(0),
        _ => 0,
    };
    let want_holdout = matches!(get(settings, "part"), Some(ConfigValue::String(p)) if p == "holdout");
    let all = table.concat()?;
    let n = all.num_rows();
    // A seeded Fisher–Yates shuffle; the first `k` shuffled rows are the holdout.
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7370_6c69_7400_0000);
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a share of a row count"
    )]
    let k = ((n as f64) * holdout).round() as usize;
    let mut chosen: Vec<usize> = if want_holdout {
        order[..k].to_vec()
    } else {
        order[k..].to_vec()
    };
    chosen.sort_unstable();
    let indices =
        UInt32Array::from_iter_values(chosen.iter().map(|&i| u32::try_from(i).expect("fewer than 2^32 rows")));
    let batch = arrow::compute::take_record_batch(&all, &indices)?;
    Ok(Table {
        schema: Arc::clone(&table.schema),
        batches: vec![batch],
        semantics: Arc::clone(&table.semantics),
        population_rows: Some(table.population_rows.unwrap_or(n)),
    })
}

/// `builtin:split`.
#[derive(Debug, Clone, Copy)]
pub struct Split;

impl super::Builtin for Split {
    fn name(&self) -> &str {
        "split"
    }

    fn summary(&self) -> &str {
        "Set real rows aside (train / holdout parts), deterministically."
    }

    fn kind(&self) -> super::Kind {
        super::Kind::Split
    }

    fn schema(&self) -> Vec<ConfigField> {
        schema()
    }

    fn user_settable(&self) -> Vec<&'static str> {
        vec!["holdout", "seed"]
    }

    fn run(&self, ctx: &crate::stage::StageContext) -> Result<crate::model::Output> {
        let table = ctx.table(0)?;
        split(&table, ctx.settings()).map(|t| crate::model::Output::Table(Arc::new(t), crate::model::Provenance::Read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn parts_are_complementary_and_deterministic() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..1000))],
        )
        .unwrap();
        let t = Table::infer(schema, vec![batch]).unwrap();
        let part = |p: &str| {
            let s = vec![
                ("part".to_owned(), ConfigValue::String(p.into())),
                ("seed".to_owned(), ConfigValue::Integer(3)),
            ];
            let b = split(&t, &s).unwrap().concat().unwrap();
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        let (train, holdout) = (part("train"), part("holdout"));
        assert_eq!((train.len(), holdout.len()), (800, 200));
        let mut all: Vec<i64> = train.iter().chain(&holdout).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(part("holdout"), holdout);
        let s = vec![("part".to_owned(), ConfigValue::String("train".into()))];
        assert_eq!(split(&t, &s).unwrap().population_rows, Some(1000));
    }
}
