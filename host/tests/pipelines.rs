//! Every shipped pipeline validates and runs on the bundled table.

use doppel_host::exec::Output;
use doppel_host::plan::plan;
use doppel_host::spec::PipelineSpec;

use crate::common::{catalog, data, repo, run};

#[test]
fn every_shipped_pipeline_validates_and_runs() {
    let catalog = catalog();
    let mut files: Vec<_> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let mut spec = PipelineSpec::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let sources: Vec<String> = spec
            .stages
            .iter()
            .filter(|s| s.uses.as_ref().is_some_and(|u| u.value == "builtin:source"))
            .map(|s| s.id.value.clone())
            .collect();
        for s in sources {
            spec.set(&format!("{s}.path={}", data("adult.csv").display())).unwrap();
        }
        // DP noise comes from the OS unless a test asks for it from the seed.
        let dp: Vec<String> = spec
            .stages
            .iter()
            .filter(|s| s.uses.as_ref().is_some_and(|u| u.value == "builtin:privsyn"))
            .map(|s| s.id.value.clone())
            .collect();
        for s in &dp {
            spec.set(&format!("{s}.reproducible_noise=true")).unwrap();
        }
        let needs_torch = spec.stages.iter().any(|s| {
            s.uses.as_ref().is_some_and(|u| {
                u.value
                    .strip_prefix("builtin:")
                    .is_some_and(|b| doppel_host::plan::NEEDS_TORCH.contains(&b))
            })
        });
        if spec.input_stages().iter().any(|(_, key)| *key == "model") {
            // A missing model file is an error that names it.
            let plan_missing = plan(&spec, &catalog).unwrap_or_else(|d| panic!("{d}"));
            let err = run(&plan_missing).expect_err("no saved model here").to_string();
            assert!(err.contains("model-synth.safetensors"), "{err}");
            // Fit once (the quickstart's CART twin, saved), sample many.
            let mut fit = PipelineSpec::load(&repo().join("pipelines/quickstart.toml")).unwrap();
            for set in [
                format!("source.path={}", data("adult.csv").display()),
                "synth.save_model=true".to_owned(),
                "synth.allow_copies=true".to_owned(),
            ] {
                fit.set(&set).unwrap();
            }
            let fit_plan = plan(&fit, &catalog).unwrap_or_else(|d| panic!("{d}"));
            let fitted = run(&fit_plan).unwrap();
            let dir = tempfile::tempdir().unwrap();
            doppel_host::report::write_all(&fit_plan, &fitted, dir.path(), Default::default()).unwrap();
            let model = dir.path().join("model-synth.safetensors");
            assert!(model.is_file());
            spec.set(&format!("synth.model={}", model.display())).unwrap();
            let plan = plan(&spec, &catalog).unwrap_or_else(|d| panic!("{d}"));
            let out = run(&plan).unwrap();
            let twin = out.stages[plan.outputs[0].1].output.table().unwrap();
            // As many rows as the model learned from (the quickstart's 80 % split).
            assert_eq!(twin.rows(), 26_049);
            let real = fitted
                .stages
                .iter()
                .find(|s| s.id == "synth")
                .unwrap()
                .output
                .table()
                .unwrap();
            assert_eq!(twin.schema, real.schema);
            assert_eq!(
                run(&plan).unwrap().stages[plan.outputs[0].1]
                    .output
                    .table()
                    .unwrap()
                    .concat()
                    .unwrap(),
                twin.concat().unwrap(),
                "same seed, same rows"
            );
            continue;
        }
        if needs_torch && catalog.builtin("ctgan").is_none() {
            // Built without `torch`: the plan must say how to get it.
            let d = plan(&spec, &catalog).expect_err("CTGAN without torch").to_string();
            assert!(d.contains("--features torch"), "{d}");
            continue;
        }
        let plan = plan(&spec, &catalog).unwrap_or_else(|d| panic!("{d}"));
        let out = run(&plan).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let dir = tempfile::tempdir().unwrap();
        let (written, report) = doppel_host::report::write_all(&plan, &out, dir.path(), Default::default()).unwrap();
        assert!(report.is_file());
        // Generators sample as many rows as the real table they stand in
        // for: the whole source, also when they learned from a split part.
        // A DP generator's count is the noisy size of what it learned from
        // (the 26,049 training rows).
        for (w, (_, index)) in written.iter().zip(&plan.outputs) {
            if dp.contains(&plan.stages[*index].id) {
                assert!(w.rows.abs_diff(26_049) < 1_000, "{}: {} rows", file.display(), w.rows);
                continue;
            }
            let learned = plan.stages[*index].inputs[0];
            let table = out.stages[learned].output.table().unwrap();
            assert_eq!(
                w.rows,
                table.population_rows.unwrap_or(table.rows()),
                "{}",
                file.display()
            );
            assert_eq!(w.rows, 32_561, "{}", file.display());
        }
        // The run is reproducible: the same pipeline and seed give the same
        // tables, scores and verdicts.
        let again = run(&plan).unwrap();
        for (a, b) in out.stages.iter().zip(&again.stages) {
            let what = format!("{}: stage {}", file.display(), a.id);
            match (&a.output, &b.output) {
                (Output::Table(x, _), Output::Table(y, _)) => {
                    assert_eq!(x.concat().unwrap(), y.concat().unwrap(), "{what}");
                }
                // Through JSON, where an unmeasured (NaN) score is `null` on both sides.
                (Output::Metrics(x), Output::Metrics(y)) => {
                    assert_eq!(x.len(), y.len(), "{what}");
                    for (m, n) in x.iter().zip(y.iter()) {
                        assert_eq!(
                            serde_json::to_string(m).unwrap(),
                            serde_json::to_string(n).unwrap(),
                            "{what}"
                        );
                    }
                }
                (Output::Verdicts(x), Output::Verdicts(y)) => assert_eq!(x, y, "{what}"),
                (Output::Document(x), Output::Document(y)) => assert_eq!(x.pages, y.pages, "{what}"),
                _ => {}
            }
        }
    }
}

/// What a remote caller may override on the shipped pipelines: tuning keys
/// only. Every key that names a file, a format, a model, a plugin setting or
/// weakens protection is refused with its place in the request, whichever
/// shipped pipeline it is tried on.
#[test]
fn server_overrides_are_limited_to_tuning_keys() {
    use doppel_host::plan::check_user_overrides;
    use doppel_host::shipped;
    let catalog = catalog();
    let refused = [
        "source.path=\"/etc/passwd\"",
        "source.format=\"csv\"",
        "source.has_header=false",
        "synth.save_model_path=\"/tmp/x\"",
        "synth.device=\"cuda\"",
        "synth.reproducible_noise=true",
        "synth.allow_copies=true",
        "synth.smoothing=false",
        "protect.keep=[\"email\"]",
        "protect.min_confidence=0.99",
        "privacy.subsample=10",
        "report.file=\"../../x.pdf\"",
        "pii.anything=1",
        "synth.uses=\"builtin:source\"",
        "nosuch.seed=1",
        "no equals sign",
    ];
    for p in shipped::PIPELINES {
        let spec = doppel_host::spec::PipelineSpec::parse(doppel_host::spec::SourceFile::new(
            format!("{}.toml", p.name),
            p.text,
        ))
        .unwrap();
        // A settable key first (where the pipeline has a split stage), then
        // the bad one: refused, and named by its place in the request.
        let mut overrides: Vec<String> = Vec::new();
        if spec.stage("train").is_some() {
            overrides.push("train.seed=1".into());
        }
        for bad in refused {
            let mut these = overrides.clone();
            these.push(bad.into());
            match check_user_overrides(&spec, &catalog, &these) {
                Err(e) => assert_eq!(
                    e.field,
                    format!("overrides[{}]", these.len() - 1),
                    "{}: {bad}: {e}",
                    p.name
                ),
                Ok(()) => panic!("{}: `{bad}` was accepted", p.name),
            }
        }
    }
    let quickstart = shipped::find("quickstart").unwrap();
    let spec =
        doppel_host::spec::PipelineSpec::parse(doppel_host::spec::SourceFile::new("quickstart.toml", quickstart.text))
            .unwrap();
    let ok: Vec<String> = [
        "synth.rows=100",
        "synth.seed=7",
        "train.holdout=0.3",
        "protect.action=\"drop\"",
        "report.title=\"Q3\"",
    ]
    .map(str::to_owned)
    .to_vec();
    check_user_overrides(&spec, &catalog, &ok).unwrap();
    let e = check_user_overrides(&spec, &catalog, &["source.path=\"/x\"".into()]).unwrap_err();
    assert!(e.message.contains("`source.path` cannot be set"), "{e}");
    assert!(!e.message.contains("/x"), "the refusal does not echo a path: {e}");
}
