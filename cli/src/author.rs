//! `doppel plugin new | build | test`: from an empty directory to a plugin
//! running in a pipeline.
//!
//! - `new` writes a crate that builds and tests out of the box: a working
//!   example of the chosen kind, its manifest, a sample table, and the SDK and
//!   contract vendored from this doppel (so no doppel checkout is needed) with
//!   the lockfile doppel itself is tested with.
//! - `build` compiles it for `wasm32-wasip2`, loads the component the way a
//!   pipeline would (contract version, kind, imports against the declared
//!   capabilities, `describe()` against the manifest) and writes `dist/`: the
//!   component and a manifest that also states the config schema.
//! - `test` runs a built plugin on a table inside a small pipeline, in the
//!   real host with the plugin's production limits, and prints its results.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use doppel_host::exec::{self, Output, RunOptions};
use doppel_host::plan::{Catalog, plan};
use doppel_host::plugin::bindings::types::{TableRole, ValueType, VerdictStatus};
use doppel_host::plugin::{Grants, HostConfig, Manifest, PluginHost, PluginKind, PluginRegistry, config_entry};
use doppel_host::spec::{PipelineSpec, SourceFile};
use sha2::{Digest, Sha256};

use crate::{BuildArgs, Global, NewArgs, PluginKindArg, TestArgs};

mod files {
    include!(concat!(env!("OUT_DIR"), "/scaffold_files.rs"));
}

const DETECTOR: &str = include_str!("../templates/detector.rs");
const METRIC: &str = include_str!("../templates/metric.rs");
const RULE: &str = include_str!("../templates/rule.rs");
const CARGO_TOML: &str = include_str!("../templates/Cargo.toml.in");
const PLUGIN_TOML: &str = include_str!("../templates/plugin.toml.in");
const README: &str = include_str!("../templates/README.md.in");
const SDK_CARGO_TOML: &str = include_str!("../templates/sdk-Cargo.toml");
const VOCAB_CARGO_TOML: &str = include_str!("../templates/vocab-Cargo.toml");
const GITIGNORE: &str = include_str!("../templates/gitignore");
const SAMPLE: &str = include_str!("../templates/sample.csv");

/// The profile `doppel plugin build` compiles with when the project defines it.
const PROFILE: &str = "wasm-plugin";
const TARGET: &str = "wasm32-wasip2";

fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_owned(), |text, (k, v)| {
        text.replace(&format!("{{{{{k}}}}}"), v)
    })
}

/// `emp-ids` → `EmpIds`.
fn type_name(crate_name: &str) -> String {
    crate_name
        .split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn kind_of(arg: PluginKindArg) -> PluginKind {
    match arg {
        PluginKindArg::Detector => PluginKind::Detector,
        PluginKindArg::Metric => PluginKind::Metric,
        PluginKindArg::Rule => PluginKind::Rule,
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// `doppel plugin new`.
pub(crate) fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.path;
    let crate_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the plugin path needs a final directory name")?;
    let valid = crate_name.starts_with(|c: char| c.is_ascii_lowercase())
        && crate_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{crate_name}`: a plugin's directory name is its crate name: lowercase letters, digits, `-`, `_`, starting with a letter"
        );
    }
    let id = args.id.clone().unwrap_or_else(|| format!("local/{crate_name}"));
    let kind = kind_of(args.kind);
    let (summary, trait_name, example, test_story, pipeline) = match kind {
        PluginKind::Detector => (
            "flags columns of member numbers (prefix, six digits, check digit).",
            "Detector",
            DETECTOR,
            "it reads the table and prints its verdict on every column.",
            "[stages.source]\nuses = \"builtin:source\"\nwith = { path = \"members.csv\" }\n\n\
             [stages.members]\nuses = \"{{id}}@^0.1\"\ninputs = [\"source\"]\nwith = { prefix = \"ACM-\" }",
        ),
        PluginKind::Metric => (
            "RangeCoverage, how much of each numeric column's real range the synthetic table covers.",
            "Metric",
            METRIC,
            "the table is the real one; a second `--input` is the synthetic one (default: a Gaussian-copula twin of the first).",
            "[stages.source]\nuses = \"builtin:source\"\nwith = { path = \"real.csv\" }\n\n\
             [stages.synth]\nuses = \"builtin:copula\"\ninputs = [\"source\"]\n\n\
             [stages.coverage]\nuses = \"{{id}}@^0.1\"\ninputs = [\"source\", \"synth\"]",
        ),
        PluginKind::Rule => (
            "a release gate on privacy and quality scores and personal data left in the release.",
            "Rule",
            RULE,
            "the table goes through PII detection (`pii`), protection (`protect`), a copula twin (`synth`), quality and \
             privacy scoring (`quality`, `privacy`) and a scan of the twin (`pii_output`), and the rule judges those facts.",
            "[stages.gate]\nuses = \"{{id}}@^0.1\"\ninputs = [\"synth\", \"pii_output\", \"quality\", \"privacy\"]\n\
             with = { min_privacy = 60.0, min_quality = 0.8 }",
        ),
    };
    let mut chars = summary.chars();
    let manifest_summary: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect();
    if Manifest::parse(
        &fill(
            PLUGIN_TOML,
            &[("id", &id), ("kind", &kind.to_string()), ("summary", &manifest_summary)],
        ),
        "--id",
    )
    .is_err()
    {
        bail!("--id `{id}` must be `namespace/name` in lowercase letters, digits, `-` and `_`");
    }
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) && !args.force {
        bail!(
            "{} exists and is not empty (use --force to write into it)",
            dir.display()
        );
    }
    let sdk_path = match &args.sdk {
        Some(p) => {
            let p = std::path::absolute(p).with_context(|| format!("--sdk {}", p.display()))?;
            if !p.join("Cargo.toml").is_file() {
                bail!(
                    "--sdk {}: no Cargo.toml there (give the doppel checkout's sdk/ folder)",
                    p.display()
                );
            }
            p.display().to_string()
        }
        None => "doppel-sdk".to_owned(),
    };
    let version = env!("CARGO_PKG_VERSION");
    let lib = crate_name.replace('-', "_");
    let ty = type_name(&crate_name);
    let kind_name = kind.to_string();
    let pipeline = fill(pipeline, &[("id", &id)]);
    let vars: Vec<(&str, &str)> = vec![
        ("crate", &crate_name),
        ("lib", &lib),
        ("type", &ty),
        ("id", &id),
        ("kind", &kind_name),
        ("summary", summary),
        ("trait", trait_name),
        ("sdk_path", &sdk_path),
        ("doppel_version", version),
        ("test_story", test_story),
        ("pipeline", &pipeline),
    ];
    write(&dir.join("Cargo.toml"), &fill(CARGO_TOML, &vars))?;
    let mut manifest_vars = vars.clone();
    manifest_vars.retain(|(k, _)| *k != "summary");
    manifest_vars.push(("summary", &manifest_summary));
    write(&dir.join("plugin.toml"), &fill(PLUGIN_TOML, &manifest_vars))?;
    write(&dir.join("src/lib.rs"), &fill(example, &vars))?;
    write(&dir.join("README.md"), &fill(README, &vars))?;
    write(&dir.join(".gitignore"), GITIGNORE)?;
    write(&dir.join("testdata/sample.csv"), SAMPLE)?;
    write(&dir.join("rust-toolchain.toml"), files::TOOLCHAIN)?;
    // doppel's own lockfile: cargo keeps the entries this crate uses, so it
    // builds against the exact versions doppel is tested with.
    write(&dir.join("Cargo.lock"), files::LOCKFILE)?;
    if args.sdk.is_none() {
        write(&dir.join("doppel-sdk/Cargo.toml"), &fill(SDK_CARGO_TOML, &vars))?;
        for (name, text) in files::SDK_SOURCES {
            write(&dir.join("doppel-sdk/src").join(name), text)?;
        }
        write(&dir.join("doppel-vocab/Cargo.toml"), &fill(VOCAB_CARGO_TOML, &vars))?;
        write(&dir.join("doppel-vocab/src/lib.rs"), files::VOCAB_LIB)?;
        write(&dir.join("wit/plugin.wit"), files::WIT)?;
    }
    println!("created {kind_name} plugin {id} in {}", dir.display());
    println!("  cd {}", dir.display());
    println!("  cargo test                                        # unit tests, natively");
    println!("  doppel plugin build                               # dist/plugin.toml + dist/{lib}.wasm");
    println!("  doppel plugin test . --input testdata/sample.csv  # run it in the sandbox");
    Ok(ExitCode::SUCCESS)
}

/// What `cargo metadata` says about the project.
struct Project {
    name: String,
    version: String,
    lib: String,
    target_dir: PathBuf,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn metadata(manifest_path: &Path) -> anyhow::Result<Project> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(manifest_path)
        .output()
        .context("run cargo metadata (is cargo installed?)")?;
    if !out.status.success() {
        bail!("cargo metadata: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parse cargo metadata")?;
    let package = v["packages"]
        .as_array()
        .and_then(|p| {
            p.iter()
                .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest_path))
        })
        .or_else(|| v["packages"].get(0))
        .context("cargo metadata lists no package")?;
    let lib = package["targets"]
        .as_array()
        .and_then(|t| {
            t.iter()
                .find(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")))
        })
        .and_then(|t| t["name"].as_str())
        .map(|n| n.replace('-', "_"))
        .context("the crate has no cdylib target: add `[lib] crate-type = [\"cdylib\", \"rlib\"]`")?;
    Ok(Project {
        name: package["name"].as_str().unwrap_or_default().to_owned(),
        version: package["version"].as_str().unwrap_or_default().to_owned(),
        lib,
        target_dir: PathBuf::from(v["target_directory"].as_str().context("no target_directory")?),
    })
}

/// `doppel plugin build`.
pub(crate) fn build(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let project = std::path::absolute(&args.project).with_context(|| args.project.display().to_string())?;
    let manifest_path = project.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("{}: a plugin project has a plugin.toml", manifest_path.display()))?;
    let mut manifest = Manifest::parse(&text, &manifest_path.display().to_string()).map_err(anyhow::Error::msg)?;
    let cargo_toml = project.join("Cargo.toml");
    let meta = metadata(&cargo_toml)?;
    if meta.version != manifest.version.to_string() {
        bail!(
            "Cargo.toml says version {} but plugin.toml {}; keep them equal (describe() reports the crate version)",
            meta.version,
            manifest.version
        );
    }
    let has_profile = std::fs::read_to_string(&cargo_toml)
        .unwrap_or_default()
        .contains(&format!("[profile.{PROFILE}]"));
    let profile = if has_profile { PROFILE } else { "release" };
    eprintln!(
        "building {} ({}) for {TARGET} with profile {profile}",
        meta.name,
        manifest.label()
    );
    let status = cargo()
        .args(["build", "--target", TARGET, "--profile", profile, "--manifest-path"])
        .arg(&cargo_toml)
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build failed (see above)");
    }
    let wasm = meta
        .target_dir
        .join(TARGET)
        .join(profile)
        .join(format!("{}.wasm", meta.lib));
    let bytes = std::fs::read(&wasm).with_context(|| format!("read {}", wasm.display()))?;

    // Load it as a pipeline would, granting exactly what it declares, so a
    // refusal here is about the component, not about this machine.
    let mounts = manifest
        .capabilities
        .files
        .iter()
        .map(|g| (g.clone(), std::env::temp_dir()))
        .collect();
    let host = PluginHost::new(HostConfig {
        cache_dir: None,
        grants: Grants {
            env: manifest.capabilities.env.clone(),
            clock: manifest.capabilities.clock,
            mounts,
        },
        ..HostConfig::default()
    })?;
    let loaded = host
        .load(manifest.clone(), &bytes, &wasm.display().to_string())
        .with_context(|| format!("{} does not pass the host's checks", wasm.display()))?;
    let info = loaded.info();

    let out = args.out.clone().unwrap_or_else(|| project.join("dist"));
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let file = format!("{}.wasm", meta.lib);
    std::fs::write(out.join(&file), &bytes).with_context(|| format!("write {}", out.join(&file).display()))?;
    manifest.wasm = Some(file.clone());
    manifest.config = Some(info.config.iter().map(config_entry).collect());
    let sha = hex(&Sha256::digest(&bytes));
    let header = format!(
        "# Written by `doppel plugin build` from {}; the component's SHA-256 is\n# {sha}\n",
        manifest_path.display()
    );
    std::fs::write(out.join("plugin.toml"), header + &manifest.to_toml())
        .with_context(|| format!("write {}", out.join("plugin.toml").display()))?;

    println!(
        "built {} ({}, contract doppel:plugin@{}.{}, {:.1} KiB)",
        manifest.label(),
        manifest.kind,
        loaded.contract.major,
        loaded.contract.minor,
        bytes.len() as f64 / 1024.0
    );
    println!("  sha256 {sha}");
    for f in &info.config {
        let default = f
            .default
            .as_ref()
            .map(|d| format!(" (default {})", doppel_host::config::to_json(d)))
            .unwrap_or_default();
        let ty = match f.type_ {
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Float => "float",
            ValueType::Boolean => "boolean",
            ValueType::Strings => "list of strings",
        };
        println!("  with.{}: {ty}{default} — {}", f.name, f.description);
    }
    println!(
        "wrote {} and {}",
        out.join(&file).display(),
        out.join("plugin.toml").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The built manifest a `doppel plugin test` argument points at.
fn built_manifest(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    for candidate in [path.join("plugin.toml"), path.join("dist/plugin.toml")] {
        if let Ok(text) = std::fs::read_to_string(&candidate)
            && Manifest::parse(&text, "").is_ok_and(|m| m.wasm.is_some())
        {
            return Ok(candidate);
        }
    }
    bail!(
        "no built plugin in {}: run `doppel plugin build {}` first (or give a plugin.toml that names its .wasm)",
        path.display(),
        path.display()
    )
}

fn toml_path(path: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(path).with_context(|| path.display().to_string())?;
    if !abs.is_file() {
        bail!("--input {}: no such file", path.display());
    }
    let s = abs.display().to_string();
    Ok(format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// `doppel plugin test`.
pub(crate) fn test(global: &Global, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let manifest_path = built_manifest(&args.plugin)?;
    let text = std::fs::read_to_string(&manifest_path)?;
    let manifest = Manifest::parse(&text, &manifest_path.display().to_string()).map_err(anyhow::Error::msg)?;
    let host = PluginHost::new(crate::commands::host_config(global, false)?)?;
    let mut registry = PluginRegistry::new(host);
    for p in doppel_plugins::FIRST_PARTY {
        // The plugin under test replaces a first-party one of the same id.
        if !p.manifest.contains(&format!("id = \"{}\"", manifest.id)) {
            registry.add_embedded(p.manifest, p.wasm, p.name)?;
        }
    }
    registry.add_manifest(&manifest_path)?;
    let req = semver::VersionReq::parse(&format!("={}", manifest.version))?;
    let loaded = registry
        .resolve(&manifest.id, &req)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let uses = format!("{}@={}", manifest.id, manifest.version);

    let paths: Vec<String> = args.input.iter().map(|p| toml_path(p)).collect::<anyhow::Result<_>>()?;
    let source =
        |id: &str, path: &str| format!("[stages.{id}]\nuses = \"builtin:source\"\nwith = {{ path = {path} }}\n\n");
    let mut toml = format!(
        "version = 1\nname = \"plugin-test\"\ndescription = \"doppel plugin test {}\"\n\n",
        manifest.label()
    );
    toml += &source("source", &paths[0]);
    let inputs: Vec<&str> = match manifest.kind {
        PluginKind::Detector => {
            if paths.len() > 1 {
                bail!("a detector reads one table; give one --input");
            }
            vec!["source"]
        }
        PluginKind::Metric => {
            let roles = &loaded.info().tables;
            let holdout = roles.contains(&TableRole::Holdout);
            let real = if holdout && paths.len() < 3 {
                toml += "[stages.train]\nuses = \"builtin:split\"\ninputs = [\"source\"]\nwith = { part = \"train\" }\n\n\
                         [stages.holdout]\nuses = \"builtin:split\"\ninputs = [\"source\"]\nwith = { part = \"holdout\" }\n\n";
                "train"
            } else {
                if let Some(p) = paths.get(2) {
                    toml += &source("holdout", p);
                }
                "source"
            };
            match paths.get(1) {
                Some(p) => toml += &source("synthetic", p),
                None => toml += &format!("[stages.synthetic]\nuses = \"builtin:copula\"\ninputs = [\"{real}\"]\n\n"),
            }
            roles
                .iter()
                .map(|r| match r {
                    TableRole::Real => real,
                    TableRole::Synthetic => "synthetic",
                    TableRole::Holdout => "holdout",
                })
                .collect()
        }
        PluginKind::Rule => {
            if paths.len() > 1 {
                bail!("a rule judges the facts of a run on one table; give one --input");
            }
            toml += "[stages.pii]\nuses = \"doppel/pii@^0.1\"\ninputs = [\"source\"]\n\n\
                     [stages.protect]\nuses = \"builtin:protect\"\ninputs = [\"source\", \"pii\"]\n\n\
                     [stages.synth]\nuses = \"builtin:copula\"\ninputs = [\"protect\"]\n\n\
                     [stages.quality]\nuses = \"doppel/quality@^0.1\"\ninputs = [\"protect\", \"synth\"]\n\n\
                     [stages.privacy]\nuses = \"builtin:privacy\"\ninputs = [\"source\", \"synth\", \"pii\"]\n\n\
                     [stages.pii_output]\nuses = \"doppel/pii@^0.1\"\ninputs = [\"synth\"]\n\n";
            vec!["source", "synth", "pii", "pii_output", "quality", "privacy"]
        }
    };
    let quoted: Vec<String> = inputs.iter().map(|i| format!("\"{i}\"")).collect();
    toml += &format!("[stages.plugin]\nuses = \"{uses}\"\ninputs = [{}]\n", quoted.join(", "));

    let mut spec =
        PipelineSpec::parse(SourceFile::new("plugin-test.toml", toml.clone())).map_err(|d| anyhow::anyhow!("{d}"))?;
    for kv in &args.set {
        if let Err(d) = spec.set(&format!("plugin.{kv}")) {
            eprintln!(
                "{}",
                doppel_host::spec::Diagnostics {
                    file: std::sync::Arc::clone(&spec.file),
                    items: vec![d]
                }
            );
            return Ok(ExitCode::from(2));
        }
    }
    if args.show_pipeline {
        eprintln!("{toml}");
    }
    let catalog = Catalog::new(registry);
    let plan = match plan(&spec, &catalog) {
        Ok(p) => p,
        Err(d) => {
            eprintln!("{d}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let run = runtime.block_on(exec::run(&plan, &RunOptions::default()))?;
    let stage = run.stage("plugin").context("the plugin stage did not run")?;
    let planned = &plan.stages[plan.index("plugin").context("no plugin stage")?];

    if args.json {
        let report = doppel_host::report::report(&plan, &run, &[], std::time::SystemTime::now())?;
        let result = report
            .stages
            .into_iter()
            .find(|s| s["id"] == "plugin")
            .unwrap_or_default();
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    let limits = planned.limits.unwrap_or_else(|| loaded.limits(None, None, None));
    println!(
        "{} ({}, sha256 {}…) ran in {:.1} ms within {} MiB and {} ms per call",
        manifest.label(),
        manifest.kind,
        &loaded.sha256[..16],
        stage.elapsed.as_secs_f64() * 1e3,
        limits.memory_mb,
        limits.timeout_ms
    );
    let inputs_rows: Vec<String> = planned
        .inputs
        .iter()
        .filter_map(|&i| {
            run.stages[i]
                .output
                .table()
                .map(|t| format!("{} ({} rows)", run.stages[i].id, t.rows()))
        })
        .collect();
    if !inputs_rows.is_empty() {
        println!("inputs: {}", inputs_rows.join(", "));
    }
    print_output(&stage.output);
    Ok(ExitCode::SUCCESS)
}

fn print_output(output: &Output) {
    match output {
        Output::Findings(d) => {
            let w = d.columns.iter().map(|c| c.column.len()).max().unwrap_or(6).max(6);
            println!(
                "{:w$}  {:<16}  {:>10}  {:>9}",
                "column", "entity", "confidence", "validated"
            );
            for c in &d.columns {
                let share = if c.scanned == 0 {
                    String::new()
                } else {
                    format!("{}/{}", c.matched, c.scanned)
                };
                println!(
                    "{:w$}  {:<16}  {:>10.2}  {:>9}",
                    c.column, c.entity, c.confidence, share
                );
            }
            if d.total_findings > 0 {
                println!("{} cell findings; first ones:", d.total_findings);
                for f in d.findings.iter().take(10) {
                    println!(
                        "  row {} `{}` [{}..{}] {} ({:.2})",
                        f.row, f.column, f.start, f.end, f.entity, f.score
                    );
                }
            }
        }
        Output::Metrics(m) => {
            for v in m.iter() {
                let cols = if v.columns.is_empty() {
                    "(table)".to_owned()
                } else {
                    v.columns.join(", ")
                };
                let note = v.note.as_deref().map(|n| format!("  — {n}")).unwrap_or_default();
                println!("{:<28} {:<28} {:>10.4}{note}", v.name, cols, v.value);
            }
        }
        Output::Verdicts(v) => {
            for x in v.iter() {
                let status = match x.status {
                    VerdictStatus::Pass => "PASS",
                    VerdictStatus::Warn => "WARN",
                    VerdictStatus::Fail => "FAIL",
                    VerdictStatus::NotApplicable => "N/A",
                };
                println!("{status:<5} {:<16} {}", x.rule_id, x.title);
                if !x.evidence.is_empty() {
                    println!("      evidence: {}", x.evidence);
                }
                if !x.remediation.is_empty() {
                    println!("      remediation: {}", x.remediation);
                }
            }
        }
        other => println!("{}", exec::summarize(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types() {
        assert_eq!(type_name("emp-ids"), "EmpIds");
        assert_eq!(type_name("release_gate2"), "ReleaseGate2");
    }

    #[test]
    fn templates_fill_every_placeholder() {
        let vars = [
            ("crate", "x"),
            ("lib", "x"),
            ("type", "X"),
            ("id", "a/x"),
            ("kind", "detector"),
            ("summary", "s"),
            ("trait", "Detector"),
            ("sdk_path", "doppel-sdk"),
            ("doppel_version", "0.1.0"),
            ("test_story", "t"),
            ("pipeline", "p"),
        ];
        for t in [
            DETECTOR,
            METRIC,
            RULE,
            CARGO_TOML,
            PLUGIN_TOML,
            README,
            SDK_CARGO_TOML,
            VOCAB_CARGO_TOML,
        ] {
            let filled = fill(t, &vars);
            assert!(!filled.contains("{{"), "unfilled placeholder in:\n{filled}");
        }
    }

    /// The vendored SDK manifest pins what the workspace builds the SDK with.
    #[test]
    fn vendored_sdk_uses_the_workspace_versions() {
        let root = include_str!("../../Cargo.toml");
        for dep in [
            "arrow-array",
            "arrow-buffer",
            "arrow-ipc",
            "arrow-schema",
            "wit-bindgen",
        ] {
            let version = |text: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("{dep} = ")))
                    .and_then(|l| l.split("version = \"").nth(1))
                    .and_then(|v| v.split('"').next())
                    .map(str::to_owned)
            };
            assert_eq!(version(SDK_CARGO_TOML), version(root), "{dep}");
            assert!(version(root).is_some(), "{dep} not in the workspace");
        }
        let sdk = include_str!("../../sdk/Cargo.toml");
        assert!(sdk.contains("\"macros\", \"realloc\", \"std\", \"bitflags\""));
        assert!(SDK_CARGO_TOML.contains("\"macros\", \"realloc\", \"std\", \"bitflags\""));
    }
}
