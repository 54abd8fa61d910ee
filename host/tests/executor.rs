//! The executor: dependency order, concurrency, batching, progress events,
//! cancellation.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use doppel_host::Error;
use doppel_host::exec::{Event, RunOptions};

use crate::common::{catalog, data, lit, plan_text, run_with};

fn recorded(options: RunOptions) -> (RunOptions, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    (
        RunOptions {
            events: Some(Arc::new(move |e: &Event| sink.lock().unwrap().push(e.clone()))),
            ..options
        },
        events,
    )
}

fn position(events: &[Event], pred: impl Fn(&Event) -> bool) -> usize {
    events.iter().position(pred).expect("event present")
}

fn started(stage: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::StageStarted { stage: s, .. } if s == stage)
}
fn finished(stage: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::StageFinished { stage: s, .. } if s == stage)
}

#[test]
fn stages_start_after_their_inputs_and_report_progress() {
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            r#"
            version = 1
            [stages.source]
            uses = "builtin:source"
            with = {{ path = {} }}
            [stages.synth]
            uses = "builtin:copula"
            inputs = ["source"]
            [stages.pii]
            uses = "doppel/pii@^0.1"
            inputs = ["source"]
            with = {{ sample_rows = 100000, scan_all_text = false }}
            [stages.quality]
            uses = "doppel/quality@^0.1"
            inputs = ["source", "synth"]
            "#,
            lit(&data("adult.csv"))
        ),
    );
    let (options, events) = recorded(RunOptions {
        batch_rows: 100, // raised to the 8k minimum
        ..RunOptions::default()
    });
    let out = run_with(&p, &options).unwrap();
    let events = events.lock().unwrap().clone();
    for (stage, inputs) in [
        ("synth", vec!["source"]),
        ("pii", vec!["source"]),
        ("quality", vec!["source", "synth"]),
    ] {
        for input in inputs {
            assert!(
                position(&events, finished(input)) < position(&events, started(stage)),
                "{stage} started before {input} finished"
            );
        }
    }
    // The detector saw the table in 8,192-row batches.
    let pii_rows: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::StageProgress { stage, done, total, .. } if stage == "pii" => {
                assert_eq!(*total, 32_561);
                Some(*done)
            }
            _ => None,
        })
        .collect();
    assert_eq!(pii_rows, vec![8192, 16384, 24576, 32561]);
    // The generator's progress ends at 100 %.
    let last_synth = events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::StageProgress { stage, done, total, .. } if stage == "synth" => Some((*done, *total)),
            _ => None,
        })
        .unwrap();
    assert_eq!(last_synth, (1000, 1000));
    assert_eq!(
        out.stages.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec!["source", "synth", "pii", "quality"]
    );
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let catalog = catalog();
    let stage = |id: &str| {
        format!(
            "[stages.{id}]\nuses = \"test/hostile@^0.1\"\ninputs = [\"source\"]\nwith = {{ mode = \"spin\" }}\nlimits = {{ timeout_ms = 1500 }}\n"
        )
    };
    let p = plan_text(
        &catalog,
        &format!(
            "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = {{ path = {} }}\n{}{}",
            lit(&data("customers_pii.csv")),
            stage("a"),
            stage("b")
        ),
    );
    let (options, events) = recorded(RunOptions::default());
    assert!(run_with(&p, &options).is_err());
    let events = events.lock().unwrap().clone();
    let first_failure = position(&events, |e| matches!(e, Event::StageFailed { .. }));
    // Run one after the other, the second stage would start only after the
    // first failed (and the run stops at the first failure).
    assert!(
        position(&events, started("a")) < first_failure && position(&events, started("b")) < first_failure,
        "{events:#?}"
    );
}

/// Past `side_by_side_bytes` of input tables a stage waits for the running
/// ones: on a large table the scoring stages then hold their copies one
/// after the other, not all at once. Same results either way.
#[test]
fn stages_past_the_memory_limit_wait_for_each_other() {
    let catalog = catalog();
    let ids = ["a", "b", "c"];
    let twins: String = ids
        .iter()
        .zip(1..)
        .map(|(id, seed)| {
            format!("[stages.{id}]\nuses = \"builtin:copula\"\ninputs = [\"source\"]\nwith = {{ rows = 500, seed = {seed} }}\n")
        })
        .collect();
    let p = plan_text(
        &catalog,
        &format!(
            "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = {{ path = {} }}\n{twins}",
            lit(&data("adult.csv"))
        ),
    );
    // One byte: every stage reading the table runs alone.
    let (options, events) = recorded(RunOptions {
        side_by_side_bytes: 1,
        ..RunOptions::default()
    });
    let alone = run_with(&p, &options).unwrap();
    let events = events.lock().unwrap().clone();
    let mut spans: Vec<(usize, usize)> = ids
        .iter()
        .map(|s| (position(&events, started(s)), position(&events, finished(s))))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].1 < w[1].0, "overlapping stages: {events:#?}");
    }
    // No limit: the same twins.
    let together = run_with(
        &p,
        &RunOptions {
            side_by_side_bytes: 0,
            ..RunOptions::default()
        },
    )
    .unwrap();
    for id in ids {
        let rows = |r: &doppel_host::exec::RunResult| r.stage(id).unwrap().output.table().unwrap().batches.clone();
        assert_eq!(rows(&alone), rows(&together), "{id}");
    }
}

#[test]
fn a_cancelled_run_stops_before_work() {
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = {{ path = {} }}\n[stages.synth]\nuses = \"builtin:copula\"\ninputs = [\"source\"]\n",
            lit(&data("adult.csv"))
        ),
    );
    let options = RunOptions {
        cancel: Arc::new(AtomicBool::new(true)),
        ..RunOptions::default()
    };
    assert!(matches!(run_with(&p, &options), Err(Error::Cancelled)));
}

#[test]
fn a_failing_stage_names_itself_and_stops_the_run() {
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = { path = \"/definitely/missing.csv\" }\n[stages.synth]\nuses = \"builtin:copula\"\ninputs = [\"source\"]\n",
    );
    let (options, events) = recorded(RunOptions::default());
    let err = run_with(&p, &options).unwrap_err();
    assert!(err.to_string().contains("/definitely/missing.csv"), "{err}");
    let events = events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StageFailed { stage, .. } if stage == "source"))
    );
    assert!(!events.iter().any(started("synth")));
}

#[test]
fn a_failed_run_leaves_the_callers_options_reusable() {
    let catalog = catalog();
    let failing = plan_text(
        &catalog,
        &format!(
            "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = {{ path = {} }}\n[stages.evil]\nuses = \"test/hostile@^0.1\"\ninputs = [\"source\"]\nwith = {{ mode = \"panic\" }}\n[stages.slow]\nuses = \"test/hostile@^0.1\"\ninputs = [\"source\"]\nwith = {{ mode = \"spin\" }}\nlimits = {{ timeout_ms = 60000 }}\n",
            lit(&data("customers_pii.csv"))
        ),
    );
    let options = RunOptions::default();
    // The panicking stage fails the run and stops the spinning one long before
    // its 60 s limit.
    let err = run_with(&failing, &options).unwrap_err();
    assert!(err.to_string().contains("`evil`"), "{err}");
    assert!(
        !options.cancel.load(std::sync::atomic::Ordering::Relaxed),
        "the caller's flag was set"
    );
    let ok = plan_text(
        &catalog,
        &format!(
            "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = {{ path = {} }}\n",
            lit(&data("customers_pii.csv"))
        ),
    );
    run_with(&ok, &options).expect("the same options run again");
}

#[test]
fn tables_no_later_stage_reads_are_released_but_outputs_and_records_stay() {
    let catalog = catalog();
    let p = plan_text(
        &catalog,
        &format!(
            "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = {{ path = {} }}\n\
             [stages.synth]\nuses = \"builtin:copula\"\ninputs = [\"source\"]\nwith = {{ rows = 500 }}\n\
             [stages.quality]\nuses = \"doppel/quality@^0.1\"\ninputs = [\"source\", \"synth\"]\n\
             [outputs]\nsynthetic = \"synth\"\n",
            lit(&data("adult.csv"))
        ),
    );
    let columns = |out: &doppel_host::exec::RunResult, id: &str| {
        let t = out.stage(id).unwrap().output.table().unwrap();
        (
            t.rows(),
            t.schema.fields().len(),
            t.batches.iter().map(|b| b.num_columns()).max(),
        )
    };
    let kept = run_with(&p, &RunOptions::default()).unwrap();
    assert_eq!(columns(&kept, "source"), (32_561, 15, Some(15)));
    let released = run_with(
        &p,
        &RunOptions {
            release_tables: true,
            ..RunOptions::default()
        },
    )
    .unwrap();
    // The source's rows are gone once synth and quality have read them; its
    // record (rows, columns) is what the report still shows.
    assert_eq!(columns(&released, "source"), (32_561, 15, Some(0)));
    // The written output keeps its rows, and the scores are the same.
    assert_eq!(columns(&released, "synth"), (500, 15, Some(15)));
    let report = |out: &doppel_host::exec::RunResult| format!("{:?}", out.stage("quality").unwrap().output);
    assert_eq!(report(&kept), report(&released));
}
