//! A DP pipeline whose PrivSyn counts on an Apache Ballista cluster (a
//! scheduler and two executors started here on loopback) releases the same
//! twin and states the same spend as the run that counts in memory; the
//! privacy charge is decided by the plan, before either runs.

use doppel_engine::LocalCluster;
use doppel_host::exec::{EngineOptions, Output, Provenance, RunOptions};

use crate::common::{catalog, data, lit, plan_text, run, run_with};

#[test]
fn privsyn_on_a_ballista_cluster_releases_and_spends_what_the_local_run_does() {
    let text = format!(
        r#"
version = 1
name = "dp-engine"

[stages.source]
uses = "builtin:source"
with = {{ path = {} }}

[stages.train]
uses = "builtin:split"
inputs = ["source"]
with = {{ part = "train", holdout = 0.2, seed = 7 }}

[stages.synth]
uses = "builtin:privsyn"
inputs = ["train"]
with = {{ epsilon = 1.0, delta = 1e-9, seed = 42, reproducible_noise = true }}

[outputs]
synthetic = "synth"
"#,
        lit(&data("adult.csv"))
    );
    let plan = plan_text(&catalog(), &text);
    // What the ledger is charged is decided by the plan, before either run.
    let charges = doppel_host::exec::privacy_charges(&plan).unwrap();
    assert_eq!(charges.len(), 1, "one DP stage charges the ledger");
    assert_eq!((charges[0].cost.epsilon, charges[0].cost.delta), (1.0, 1e-9));

    let cluster = LocalCluster::start(2, 1).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let on_cluster = run_with(
        &plan,
        &RunOptions {
            engine: EngineOptions {
                engine: cluster.engine().clone(),
                scratch: scratch.path().to_owned(),
                part_rows: 5_000,
            },
            ..RunOptions::default()
        },
    )
    .unwrap();
    let in_memory = run(&plan).unwrap();

    let synth = |run: &doppel_host::exec::RunResult| {
        let stage = run.stages.iter().find(|s| s.id == "synth").unwrap();
        match &stage.output {
            Output::Table(t, Provenance::Generated(m)) => (t.concat().unwrap(), std::sync::Arc::clone(m)),
            other => panic!("not a generated table: {other:?}"),
        }
    };
    let (twin_cluster, model_cluster) = synth(&on_cluster);
    let (twin_memory, model_memory) = synth(&in_memory);
    assert_eq!(twin_cluster, twin_memory, "the same twin from either engine");
    assert_eq!(
        model_cluster.privacy, model_memory.privacy,
        "the same (ε, δ, ρ) and steps"
    );
    assert!(model_cluster.privacy.as_ref().unwrap().epsilon <= 1.0 + 1e-9);
    let counted = model_cluster
        .notes
        .iter()
        .find(|n| n.starts_with("counted on ballista://localhost:"))
        .unwrap_or_else(|| panic!("{:?}", model_cluster.notes));
    // The exact row count is private: the note does not state it.
    assert!(!counted.contains("26049") && !counted.contains("26,049"), "{counted}");
    assert!(!model_memory.notes.iter().any(|n| n.contains("counted on")));
    // The staged copy of the training rows is gone.
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[test]
fn a_generator_that_needs_rows_learns_here_and_says_so() {
    let text = format!(
        r#"
version = 1
name = "copula-engine"

[stages.source]
uses = "builtin:source"
with = {{ path = {} }}

[stages.synth]
uses = "builtin:copula"
inputs = ["source"]
with = {{ rows = 500, seed = 3 }}
"#,
        lit(&data("adult.csv"))
    );
    let plan = plan_text(&catalog(), &text);
    // No cluster is needed: the engine is not contacted.
    let out = run_with(
        &plan,
        &RunOptions {
            engine: EngineOptions {
                engine: "ballista://127.0.0.1:9".parse().unwrap(),
                ..EngineOptions::default()
            },
            ..RunOptions::default()
        },
    )
    .unwrap();
    let stage = out.stages.iter().find(|s| s.id == "synth").unwrap();
    let Output::Table(t, Provenance::Generated(m)) = &stage.output else {
        panic!("not a generated table")
    };
    assert_eq!(t.rows(), 500);
    assert!(
        m.notes
            .iter()
            .any(|n| n.contains("learned on this machine: builtin:copula")),
        "{:?}",
        m.notes
    );
}
