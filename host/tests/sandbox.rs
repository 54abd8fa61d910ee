//! The hostile-plugin suite: every misbehaviour is stopped within its limit,
//! the error names the stage and the plugin, and the process stays healthy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use doppel_host::Error;
use doppel_host::exec::{Output, RunOptions};
use doppel_host::plan::{Catalog, plan};
use doppel_host::plugin::{Failure, Grants, HostConfig, PluginError, PluginHost, PluginRegistry};
use doppel_host::spec::{PipelineSpec, SourceFile};

use crate::common::{self, catalog, data, lit, plan_text, run, run_with};

fn hostile_pipeline(mode: &str, limits: &str) -> String {
    format!(
        r#"
        version = 1
        [stages.source]
        uses = "builtin:source"
        with = {{ path = {} }}
        [stages.evil]
        uses = "test/hostile@^0.1"
        inputs = ["source"]
        with = {{ mode = "{mode}" }}
        limits = {{ {limits} }}
        "#,
        lit(&data("customers_pii.csv"))
    )
}

fn failure_of(err: Error) -> (String, Failure) {
    let text = err.to_string();
    match err {
        Error::Plugin(PluginError::Stage { stage, plugin, failure }) => {
            assert_eq!(stage, "evil", "{text}");
            assert_eq!(plugin, "test/hostile@0.1.0", "{text}");
            assert!(
                text.contains("`evil`") && text.contains("test/hostile@0.1.0"),
                "message names stage and plugin: {text}"
            );
            (text, failure)
        }
        other => panic!("expected a plugin stage failure, got {other:?}"),
    }
}

/// After any failure the same host must still run a healthy stage.
fn assert_still_healthy(catalog: &Catalog) {
    let healthy = plan_text(catalog, &hostile_pipeline("ok", "timeout_ms = 5000"));
    let out = run(&healthy).expect("a healthy run after a failure");
    let Output::Findings(f) = &out.stage("evil").unwrap().output else {
        panic!("findings")
    };
    assert_eq!(f.columns.len(), 16);
}

#[test]
fn infinite_loop_is_stopped_at_its_timeout() {
    let catalog = catalog();
    let p = plan_text(&catalog, &hostile_pipeline("spin", "timeout_ms = 300"));
    let started = Instant::now();
    let (text, failure) = failure_of(run(&p).unwrap_err());
    assert!(matches!(failure, Failure::Timeout { limit_ms: 300 }), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(text.contains("300 ms"), "{text}");
    assert_still_healthy(&catalog);
}

#[test]
fn memory_bomb_is_stopped_at_its_limit() {
    let catalog = catalog();
    let p = plan_text(&catalog, &hostile_pipeline("memory", "memory_mb = 32"));
    let (text, failure) = failure_of(run(&p).unwrap_err());
    match failure {
        Failure::Memory { limit_mb, wanted_mb } => {
            assert_eq!(limit_mb, 32);
            assert!(wanted_mb > 32.0, "{wanted_mb}");
        }
        other => panic!("expected a memory failure, got {other:?}: {text}"),
    }
    assert_still_healthy(&catalog);
}

#[test]
fn panic_is_a_trap_with_the_plugins_message() {
    let catalog = catalog();
    let p = plan_text(&catalog, &hostile_pipeline("panic", "timeout_ms = 5000"));
    let (text, failure) = failure_of(run(&p).unwrap_err());
    match failure {
        Failure::Trap { stderr, .. } => assert!(stderr.contains("panicked on purpose"), "{text}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_still_healthy(&catalog);
}

#[test]
fn huge_output_is_refused() {
    let catalog = catalog();
    let p = plan_text(&catalog, &hostile_pipeline("flood", "timeout_ms = 20000"));
    let (text, failure) = failure_of(run(&p).unwrap_err());
    assert!(matches!(failure, Failure::OutputCap(_)), "{text}");
    assert!(
        text.contains("200000 findings") && text.contains("cap 100000"),
        "{text}"
    );
    assert_still_healthy(&catalog);
}

#[test]
fn stdout_flood_hits_the_capture_cap() {
    let catalog = catalog();
    let p = plan_text(&catalog, &hostile_pipeline("stdout", "timeout_ms = 20000"));
    let (text, failure) = failure_of(run(&p).unwrap_err());
    assert!(matches!(failure, Failure::Trap { .. }), "{text}");
    assert_still_healthy(&catalog);
}

#[test]
fn log_flood_is_truncated_not_fatal() {
    let catalog = catalog();
    let p = plan_text(&catalog, &hostile_pipeline("log", "timeout_ms = 20000"));
    run(&p).expect("logging too much only loses log lines");
}

#[test]
fn typed_errors_reach_the_user() {
    let catalog = catalog();
    let p = plan_text(&catalog, &hostile_pipeline("fail", "timeout_ms = 5000"));
    let (text, failure) = failure_of(run(&p).unwrap_err());
    assert!(matches!(failure, Failure::Reported(_)), "{text}");
    assert!(text.contains("not to my liking"), "{text}");
}

fn env_seen(catalog: &Catalog) -> Vec<(String, String)> {
    let p = plan_text(catalog, &hostile_pipeline("env", "timeout_ms = 5000"));
    let out = run(&p).expect("env probe runs");
    let Output::Findings(f) = &out.stage("evil").unwrap().output else {
        panic!("findings")
    };
    f.columns.iter().map(|c| (c.column.clone(), c.entity.clone())).collect()
}

#[test]
fn environment_is_empty_by_default() {
    assert!(std::env::var("PATH").is_ok(), "the test process has a PATH to leak");
    assert_eq!(env_seen(&catalog()), vec![], "a plugin saw host environment variables");
}

#[test]
fn environment_holds_only_declared_and_granted_variables() {
    let guest = doppel_test_guests::guest("hostile");
    let manifest = format!("{}\n[capabilities]\nenv = [\"HOME\", \"PATH\"]\n", guest.manifest);
    // Declared: HOME and PATH; granted: HOME and USER. Visible: HOME only.
    let host = PluginHost::new(HostConfig {
        grants: Grants {
            env: vec!["HOME".into(), "USER".into()],
            ..Grants::default()
        },
        ..common::config()
    })
    .unwrap();
    let mut reg = PluginRegistry::new(host);
    reg.add_embedded(&manifest, guest.wasm, "hostile").unwrap();
    let seen = env_seen(&Catalog::new(reg));
    let names: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, vec!["HOME"]);
}

fn fs_pipeline(path: &str) -> String {
    format!(
        r#"
        version = 1
        [stages.source]
        uses = "builtin:source"
        with = {{ path = {} }}
        [stages.fs]
        uses = "test/hostile-fs@^0.1"
        inputs = ["source"]
        with = {{ path = "{path}" }}
        "#,
        lit(&data("customers_pii.csv"))
    )
}

fn plan_error(catalog: &Catalog, text: &str) -> String {
    let spec = PipelineSpec::parse(SourceFile::new("test.toml", text)).unwrap();
    plan(&spec, catalog).unwrap_err().to_string()
}

#[test]
fn file_access_is_refused_unless_declared_and_granted() {
    let err = plan_error(&catalog(), &fs_pipeline("/etc/passwd"));
    assert!(
        err.contains("test/hostile-fs@0.1.0") && err.contains("wasi:filesystem"),
        "{err}"
    );
    assert!(err.contains("does not declare"), "{err}");

    // Declared but not granted. (Rust's std::fs also reads clocks.)
    let guest = doppel_test_guests::guest("hostile-fs");
    let manifest = format!(
        "{}\n[capabilities]\nfiles = [\"/data\"]\nclock = true\n",
        guest.manifest
    );
    let mut reg = PluginRegistry::new(PluginHost::new(common::config()).unwrap());
    reg.add_embedded(&manifest, guest.wasm, "hostile-fs").unwrap();
    let err = plan_error(&Catalog::new(reg), &fs_pipeline("/etc/passwd"));
    assert!(err.contains("not granted"), "{err}");
}

#[test]
fn granted_mount_is_the_only_visible_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from the mount\n").unwrap();
    let guest = doppel_test_guests::guest("hostile-fs");
    let manifest = format!(
        "{}\n[capabilities]\nfiles = [\"/data\"]\nclock = true\n",
        guest.manifest
    );
    let host = PluginHost::new(HostConfig {
        grants: Grants {
            mounts: vec![("/data".into(), dir.path().to_path_buf())],
            clock: true,
            ..Grants::default()
        },
        ..common::config()
    })
    .unwrap();
    let mut reg = PluginRegistry::new(host);
    reg.add_embedded(&manifest, guest.wasm, "hostile-fs").unwrap();
    let catalog = Catalog::new(reg);
    let verdict = |path: &str| {
        let out = run(&plan_text(&catalog, &fs_pipeline(path))).unwrap();
        let Output::Findings(f) = &out.stage("fs").unwrap().output else {
            panic!("findings")
        };
        f.columns[0].entity.clone()
    };
    assert_eq!(verdict("/data/hello.txt"), "READ:hello from the mount");
    assert!(verdict("/etc/passwd").starts_with("DENIED:"));
    assert!(verdict("/data/../../etc/passwd").starts_with("DENIED:"));
}

#[test]
fn sockets_are_refused_whatever_is_granted() {
    let text = format!(
        r#"
        version = 1
        [stages.source]
        uses = "builtin:source"
        with = {{ path = {} }}
        [stages.net]
        uses = "test/hostile-net@^0.1"
        inputs = ["source"]
        "#,
        lit(&data("customers_pii.csv"))
    );
    let everything = Grants {
        env: vec!["PATH".into()],
        clock: true,
        mounts: vec![("/".into(), "/".into())],
    };
    let err = plan_error(&crate::common::catalog_granting(everything), &text);
    assert!(
        err.contains("test/hostile-net@0.1.0") && err.contains("wasi:sockets") && err.contains("network"),
        "{err}"
    );
}

#[test]
fn cancellation_stops_a_running_plugin() {
    let catalog = catalog();
    let p = plan_text(&catalog, &hostile_pipeline("spin", "timeout_ms = 60000"));
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::Relaxed);
    });
    let options = RunOptions {
        cancel,
        ..RunOptions::default()
    };
    let err = run_with(&p, &options).unwrap_err();
    stopper.join().unwrap();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert_still_healthy(&catalog);
}

#[test]
fn fuel_limits_cpu_deterministically() {
    let catalog = Catalog::new(common::registry_with(HostConfig {
        fuel: true,
        ..common::config()
    }));
    let p = plan_text(
        &catalog,
        &hostile_pipeline("spin", "fuel = 5000000, timeout_ms = 60000"),
    );
    let (text, failure) = failure_of(run(&p).unwrap_err());
    assert!(matches!(failure, Failure::Fuel { fuel: 5_000_000 }), "{text}");
    assert_still_healthy(&catalog);
}
