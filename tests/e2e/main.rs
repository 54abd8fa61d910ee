//! The `doppel` binary, driven as users drive it.

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

mod dp;
mod flight;
mod market;
mod neural;
mod server;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn doppel() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_doppel"));
    cmd.current_dir(repo())
        .env_remove("DOPPEL_PLUGIN_PATH")
        .env(
            "DOPPEL_CACHE_DIR",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
        )
        .env("DOPPEL_PROGRESS", "never");
    cmd
}

fn output_of(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report.json a run wrote into `out`.
fn read_report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// One stage's entry of a report.
fn report_stage<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no stage `{id}` in the report"))
}

fn parquet_schema_and_rows(path: &Path) -> (Vec<(String, DataType)>, usize) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let rows = builder.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    (schema, rows)
}

#[test]
fn quickstart_on_adult_writes_a_faithful_twin_and_a_report() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output_of(
        doppel()
            .args(["run", "pipelines/quickstart.toml", "--input", "data/adult.csv", "--out"])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Quality Score"), "{stdout}");
    let (schema, rows) = parquet_schema_and_rows(&out.path().join("synthetic.parquet"));
    // The twin is learned from the training part (20% of the rows are held
    // out) but stands in for the whole table: as many rows as Adult has.
    assert_eq!(rows, 32_561);
    let header = std::fs::read_to_string(repo().join("data/adult.csv")).unwrap();
    let names: Vec<&str> = header.lines().next().unwrap().split(',').collect();
    assert_eq!(schema.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), names);
    // Types as read: integers stay integers, text stays text.
    for (name, ty) in &schema {
        let want = if [
            "age",
            "fnlwgt",
            "education_num",
            "capital_gain",
            "capital_loss",
            "hours_per_week",
        ]
        .contains(&name.as_str())
        {
            DataType::Int64
        } else {
            DataType::Utf8
        };
        assert_eq!(ty, &want, "{name}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let score = report["summary"]["scores"]["quality.Quality Score"].as_f64().unwrap();
    assert!(score > 0.81, "quality {score}");
    let stages = report["stages"].as_array().unwrap();
    let pii = stages.iter().find(|s| s["id"] == "pii").unwrap();
    assert_eq!(pii["plugin"]["id"], "doppel/pii");
    assert_eq!(pii["plugin"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(pii["result"]["columns"].as_array().unwrap().len(), 15);
    assert!(stages.iter().all(|s| s["elapsed_ms"].as_f64().is_some()));
    // The compliance story: a PDF next to the report, and the verdicts in it.
    assert_eq!(report["documents"], serde_json::json!(["report.pdf"]));
    let pdf = std::fs::read(out.path().join("report.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF-") && pdf.len() > 10_000, "{} bytes", pdf.len());
    assert!(stdout.contains("report.pdf"), "{stdout}");
    // Adult's ages stop at 90, which Safe Harbor accepts only as "90 or older":
    // quickstart does not declare that, so the check warns.
    let hipaa = stages.iter().find(|s| s["id"] == "hipaa").unwrap();
    let ages = hipaa["result"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["rule_id"] == "HIPAA-SH-C")
        .unwrap();
    assert_eq!(ages["status"], "Warn", "{ages}");
    assert!(
        report["summary"]["failed_rules"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let privacy = report["summary"]["scores"]["privacy.Privacy Score"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&privacy), "{privacy}");
    // The fidelity protocol beside the SDMetrics scores, in the summary and on stdout.
    for key in ["C2ST", "TSTR AUC", "AlphaPrecision", "BetaRecall", "DCRShare"] {
        let v = report["summary"]["scores"][format!("fidelity.{key}")].as_f64();
        assert!(v.is_some_and(|v| (0.0..=1.0).contains(&v)), "{key}: {v:?}");
    }
    assert!(stdout.contains("C2ST"), "{stdout}");
    // The default twin (sequential CART) on the bar issue 18 set, on the
    // holdout the pipeline keeps from it (seeded: these are one run's numbers,
    // C2ST 0.951, DCR share 0.518, privacy 94.7, quality 0.993, α 0.989).
    let s = |key: &str| report["summary"]["scores"][key].as_f64().unwrap();
    assert!(s("quality.Quality Score") >= 0.985, "{stdout}");
    assert!(s("fidelity.C2ST") >= 0.87, "{stdout}");
    assert!(s("fidelity.AlphaPrecision") >= 0.8, "{stdout}");
    assert!(s("fidelity.DCRShare") <= 0.53, "{stdout}");
    assert!(privacy >= 70.0, "{stdout}");
}

/// `compare.toml`: three generators on one table, scored alike. On Adult the
/// trees' twin is far harder to detect than the copula's (C2ST about 0.97
/// against 0.2) and does not memorise its training rows more than unseen
/// real rows would be, by much (DCR share near one half).
#[test]
fn compare_scores_generators_side_by_side() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output_of(
        doppel()
            .args([
                "run",
                "pipelines/compare.toml",
                "--input",
                "data/adult.csv",
                "--format",
                "csv",
            ])
            .args([
                "--set",
                "fid_cart.target=\"income\"",
                "--set",
                "fid_copula.target=\"income\"",
                "--out",
            ])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let score = |key: &str| {
        report["summary"]["scores"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key}: {stdout}"))
    };
    assert!(score("fid_cart.C2ST") > 0.85, "{stdout}");
    assert!(score("fid_cart.C2ST") > score("fid_copula.C2ST") + 0.3, "{stdout}");
    assert!(
        score("quality_cart.Quality Score") > score("quality_copula.Quality Score"),
        "{stdout}"
    );
    assert!(score("fid_cart.TSTR AUC") > 0.88, "{stdout}");
    assert!(score("fid_cart.DCRShare") < 0.6, "{stdout}");
    assert!(score("fid_privsyn.C2ST") >= 0.0, "{stdout}");
    for name in ["cart.csv", "copula.csv", "privsyn.csv"] {
        assert!(out.path().join(name).exists(), "{name}");
    }
}

#[test]
fn runs_on_a_table_it_has_never_seen_and_reports_its_pii() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output_of(
        doppel()
            .args([
                "run",
                "pipelines/quickstart.toml",
                "--input",
                "data/customers_pii.csv",
                "--format",
                "csv",
                "--out",
            ])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("personal data in"), "{stdout}");
    let csv = std::fs::read_to_string(out.path().join("synthetic.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        5001,
        "trained on 80% of 5,000 rows, as large as all of them, and a header"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let flagged: Vec<&str> = report["summary"]["pii_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    for column in ["email", "ssn", "credit_card", "iban", "phone", "notes"] {
        assert!(flagged.contains(&column), "{column} not flagged: {flagged:?}");
    }
    for column in ["customer_id", "plan", "monthly_spend", "signup_channel"] {
        assert!(!flagged.contains(&column), "{column} wrongly flagged");
    }
    // Nothing personal is copied through: no real identifier reaches the output.
    let real = read_csv(&repo().join("data/customers_pii.csv"));
    let synthetic = read_csv(&out.path().join("synthetic.csv"));
    // Fresh surrogate keys are drawn in the real keys' format, avoiding the
    // keys the generator saw; the 1,000 held-out customers' keys it never saw
    // may coincide by chance (about 4 expected in a space of 900,000).
    let real_ids: std::collections::HashSet<&String> = real["customer_id"].iter().collect();
    let same = synthetic["customer_id"].iter().filter(|v| real_ids.contains(v)).count();
    assert!(same <= 20, "{same} synthetic customer ids are real ones");
    for column in [
        "full_name",
        "email",
        "phone",
        "ssn",
        "credit_card",
        "iban",
        "ip_address",
        "street_address",
        "website",
    ] {
        let real_values: std::collections::HashSet<&String> = real[column].iter().collect();
        let copied: Vec<&String> = synthetic[column]
            .iter()
            .filter(|v| real_values.contains(v))
            .take(3)
            .collect();
        assert!(copied.is_empty(), "{column}: real values in the output: {copied:?}");
    }
    // Whole words only: a fake like `maya.zimmermann38@example.com` ends in a
    // real `ann38@example.com` without being one.
    let real_emails: std::collections::HashSet<&str> = real["email"].iter().map(String::as_str).collect();
    let real_notes: Vec<&String> = real["notes"].iter().collect();
    for note in &synthetic["notes"] {
        let copied = note
            .split_whitespace()
            .find(|w| real_emails.contains(w.trim_end_matches('.')));
        assert!(copied.is_none(), "a real e-mail in notes: {note}");
        assert!(!note.contains("Natalie Mendoza"), "a real name in notes: {note}");
    }
    // Notes that held PII are rewritten, not resampled verbatim.
    let personal: Vec<&&String> = real_notes.iter().filter(|n| n.contains('@')).collect();
    assert!(
        !synthetic["notes"]
            .iter()
            .any(|n| personal.iter().any(|p| p.as_str() == n)),
        "a real note with an e-mail was copied"
    );
}

/// Columns of a CSV file by name (simple split: the files written here quote
/// only fields with commas, which these columns never hold).
fn read_csv(path: &Path) -> std::collections::HashMap<String, Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_owned).collect();
    let mut columns: std::collections::HashMap<String, Vec<String>> =
        header.iter().map(|h| (h.clone(), Vec::new())).collect();
    for line in lines {
        for (h, v) in header.iter().zip(line.split(',')) {
            columns.get_mut(h).unwrap().push(v.trim_matches('"').to_owned());
        }
    }
    columns
}

#[test]
fn settings_can_be_overridden_from_the_command_line() {
    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output_of(
        doppel()
            .args([
                "run",
                "pipelines/quickstart.toml",
                "--set",
                "synth.rows=250",
                "--set",
                "synth.seed=9",
                "--out",
            ])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(parquet_schema_and_rows(&out.path().join("synthetic.parquet")).1, 250);
}

#[test]
fn invalid_pipelines_exit_2_with_every_problem_located() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n[stages.source]\nuses = \"builtin:source\"\nwith = { path = \"x.csv\" }\n[stages.pii]\nusse = \"doppel/pii@^0.1\"\n[stages.q]\nuses = \"doppel/quality@^9\"\ninputs = [\"sourc\"]\n",
    )
    .unwrap();
    let (code, stdout, stderr) = output_of(doppel().arg("validate").arg(&bad));
    assert_eq!(code, 2, "{stdout}{stderr}");
    let shown = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{shown}:6:1")) && stderr.contains("unknown field `usse`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `uses`?"), "{stderr}");
    assert!(
        stderr.contains(&format!("{shown}:5:9")) && stderr.contains("has no `uses`"),
        "{stderr}"
    );
    let (code, _, stderr) = output_of(doppel().args(["run"]).arg(&bad));
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = output_of(doppel().args(["validate", "pipelines/no-such-pipeline.toml"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no-such-pipeline.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn validate_accepts_the_shipped_pipelines() {
    let (_, builtins, _) = output_of(doppel().args(["plugins", "list", "--json"]));
    let with_torch = builtins.contains("builtin:ctgan");
    for entry in std::fs::read_dir(repo().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let (code, stdout, stderr) = output_of(doppel().arg("validate").arg(&path));
        let needs_torch = ["builtin:ctgan", "builtin:tvae", "builtin:dp-tvae"]
            .iter()
            .any(|b| text.contains(&format!("\"{b}\"")));
        if !with_torch && needs_torch {
            // This binary was built without `torch`: the error says how to get it.
            assert_eq!(code, 2, "{}: {stdout}", path.display());
            assert!(stderr.contains("--features torch"), "{stderr}");
            continue;
        }
        assert_eq!(code, 0, "{}: {stderr}", path.display());
        assert!(stdout.starts_with("ok:"), "{stdout}");
    }
}

#[test]
fn plugins_list_shows_builtins_and_first_party_plugins() {
    let (code, stdout, _) = output_of(doppel().args(["plugins", "list", "--json"]));
    assert_eq!(code, 0);
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = list.iter().map(|p| p["id"].as_str().unwrap()).collect();
    for id in [
        "builtin:source",
        "builtin:profile",
        "builtin:copula",
        "doppel/pii",
        "doppel/quality",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
}

#[test]
fn third_party_plugins_load_from_a_plugin_dir() {
    let dir = tempfile::tempdir().unwrap();
    let guest = doppel_test_guests::guest("hostile");
    let plugin_dir = dir.path().join("plugins").join("hostile");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::fs::write(plugin_dir.join("hostile.wasm"), guest.wasm).unwrap();
    std::fs::write(
        plugin_dir.join("plugin.toml"),
        guest
            .manifest
            .replace("[limits]", "wasm = \"hostile.wasm\"\n\n[limits]"),
    )
    .unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        "version = 1\n[stages.source]\nuses = \"builtin:source\"\n[stages.third]\nuses = \"test/hostile@0.1\"\ninputs = [\"source\"]\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) = output_of(
        doppel()
            .arg("run")
            .arg(&pipeline)
            .args(["--input", "data/customers_pii.csv", "--plugin-dir"])
            .arg(dir.path().join("plugins"))
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("test/hostile@0.1.0"), "{stdout}");
    // The same plugin can come from DOPPEL_PLUGIN_PATH.
    let (code, _, stderr) = output_of(
        doppel()
            .arg("validate")
            .arg(&pipeline)
            .env("DOPPEL_INPUT", "data/customers_pii.csv")
            .env("DOPPEL_PLUGIN_PATH", dir.path().join("plugins")),
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output_of(
        doppel()
            .args([
                "--log-format",
                "json",
                "run",
                "pipelines/quickstart.toml",
                "--set",
                "synth.rows=100",
                "--out",
            ])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
}

#[test]
fn a_failing_run_exits_1_and_names_the_problem() {
    let (code, _, stderr) = output_of(doppel().args([
        "run",
        "pipelines/quickstart.toml",
        "--input",
        "data/does-not-exist.csv",
        "--out",
        "/tmp/doppel-never",
    ]));
    assert_eq!(code, 1);
    assert!(stderr.contains("does-not-exist.csv"), "{stderr}");
}

/// Where nested cargo builds may put their output: not the target directory
/// this test runs from (cargo holds its lock), but the one the plugin build
/// scripts use, whose compiled dependencies a new plugin shares.
fn nested_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .join("wasm-plugins")
}

fn cargo_in(dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir).env("CARGO_TARGET_DIR", nested_target_dir());
    cmd
}

/// The author guide's path, end to end: `plugin new` → `cargo test` →
/// `plugin build` → `plugin test` → a pipeline that uses the plugin's findings.
#[test]
fn a_new_plugin_goes_from_template_to_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("member-ids");
    let (code, stdout, stderr) = output_of(
        doppel()
            .args(["plugin", "new", "--kind", "detector", "--id", "acme/member-ids"])
            .arg(&project),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("doppel plugin build"), "{stdout}");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "plugin.toml",
        "src/lib.rs",
        "README.md",
        "doppel-sdk/src/lib.rs",
        "doppel-vocab/src/lib.rs",
        "wit/plugin.wit",
    ] {
        assert!(project.join(file).is_file(), "{file} missing");
    }
    // A second `new` into the same place refuses rather than overwrite.
    let (code, _, stderr) = output_of(doppel().args(["plugin", "new", "--kind", "rule"]).arg(&project));
    assert_eq!(code, 1);
    assert!(stderr.contains("not empty"), "{stderr}");

    // The template's own unit tests pass natively.
    let out = cargo_in(&project).args(["test", "--quiet"]).output().unwrap();
    assert!(
        out.status.success(),
        "cargo test:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, stdout, stderr) = output_of(
        doppel()
            .args(["plugin", "build"])
            .arg(&project)
            .env("CARGO_TARGET_DIR", nested_target_dir()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("built acme/member-ids@0.1.0 (detector"), "{stdout}");
    let dist = std::fs::read_to_string(project.join("dist/plugin.toml")).unwrap();
    assert!(
        dist.contains("wasm = \"member_ids.wasm\"") && dist.contains("name = \"min_share\""),
        "{dist}"
    );

    let (code, stdout, stderr) = output_of(
        doppel()
            .args(["plugin", "test"])
            .arg(&project)
            .arg("--input")
            .arg(project.join("testdata/sample.csv")),
    );
    assert_eq!(code, 0, "{stderr}");
    let verdict = |column: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(column))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no line for {column} in:\n{stdout}"))
            .to_owned()
    };
    assert_eq!(verdict("member_id"), "MEMBER_ID");
    assert_eq!(verdict("referred_by"), "MEMBER_ID");
    assert_eq!(verdict("plan"), "NONE");
    // Settings reach the plugin, and bad ones are refused before it runs.
    let (code, stdout, _) = output_of(
        doppel()
            .args(["plugin", "test"])
            .arg(&project)
            .args(["--set", "prefix=XYZ-", "--input"])
            .arg(project.join("testdata/sample.csv")),
    );
    assert_eq!(code, 0);
    assert!(!stdout.contains("MEMBER_ID"), "{stdout}");
    let (code, _, stderr) = output_of(
        doppel()
            .args(["plugin", "test"])
            .arg(&project)
            .args(["--set", "min_share=2", "--input"])
            .arg(project.join("testdata/sample.csv")),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("`min_share` must be at most 1"), "{stderr}");

    // In a pipeline, the third-party findings drive protection: no real
    // member number reaches the synthetic table.
    let pipeline = tmp.path().join("members.toml");
    std::fs::write(
        &pipeline,
        format!(
            "version = 1\nname = \"members\"\n\
             [stages.source]\nuses = \"builtin:source\"\nwith = {{ path = \"{}\" }}\n\
             [stages.members]\nuses = \"acme/member-ids@^0.1\"\ninputs = [\"source\"]\n\
             [stages.protect]\nuses = \"builtin:protect\"\ninputs = [\"source\", \"members\"]\n\
             [stages.synth]\nuses = \"builtin:copula\"\ninputs = [\"protect\"]\nwith = {{ seed = 1 }}\n\
             [outputs]\nsynthetic = \"synth\"\n",
            project.join("testdata/sample.csv").display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (code, stdout, stderr) = output_of(
        doppel()
            .arg("run")
            .arg(&pipeline)
            .arg("--plugin-dir")
            .arg(project.join("dist"))
            .args(["--format", "csv", "--out"])
            .arg(&out),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("acme/member-ids@0.1.0"), "{stdout}");
    let real = read_csv(&project.join("testdata/sample.csv"));
    let synthetic = read_csv(&out.join("synthetic.csv"));
    assert_eq!(synthetic["member_id"].len(), 12);
    for id in &synthetic["member_id"] {
        assert!(!real["member_id"].contains(id), "real member number {id} in the output");
        assert!(id.starts_with("ACM-") && id.len() == 11, "{id} lost its shape");
    }
}
