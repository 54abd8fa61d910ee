//! Loading plugins: the compiled-component cache, and the checks that bind a
//! component to its manifest.

use doppel_host::plugin::{HostConfig, PluginError, PluginHost, PluginRegistry};

fn pii() -> &'static doppel_plugins::EmbeddedPlugin {
    doppel_plugins::FIRST_PARTY.iter().find(|p| p.name == "pii").unwrap()
}

fn load(config: HostConfig, manifest: &str) -> Result<bool, std::sync::Arc<PluginError>> {
    let mut reg = PluginRegistry::new(PluginHost::new(config).unwrap());
    reg.add_embedded(manifest, pii().wasm, "pii").unwrap();
    let entry = reg.entries()[0].clone();
    reg.load(&entry).map(|p| p.from_cache)
}

#[test]
fn compiled_components_are_cached_and_a_bad_cache_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let config = || HostConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..HostConfig::default()
    };
    assert!(!load(config(), pii().manifest).unwrap(), "first load compiles");
    assert!(
        load(config(), pii().manifest).unwrap(),
        "second load comes from the cache"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".cwasm") && name.len() == 64 + 1 + 16 + 6, "{name}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("cache"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the cache directory is private: {mode:o}");
    }
    // A corrupt artifact is ignored and replaced.
    std::fs::write(&files[0], b"not a compiled component").unwrap();
    assert!(
        !load(config(), pii().manifest).unwrap(),
        "a corrupt cache entry is recompiled"
    );
    assert!(load(config(), pii().manifest).unwrap());
    // A different engine configuration (fuel) never reuses the artifact.
    let fuel = HostConfig { fuel: true, ..config() };
    assert!(!load(fuel, pii().manifest).unwrap());
}

#[test]
fn a_component_must_match_its_manifest() {
    let config = || HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    };
    let wrong_kind = pii().manifest.replace("kind = \"detector\"", "kind = \"metric\"");
    let err = load(config(), &wrong_kind).unwrap_err().to_string();
    assert!(
        err.contains("doppel/pii@0.1.0") && err.contains("kind = \"metric\"") && err.contains("is a detector"),
        "{err}"
    );
    let wrong_version = pii().manifest.replace("version = \"0.1.0\"", "version = \"0.2.0\"");
    let err = load(config(), &wrong_version).unwrap_err().to_string();
    assert!(err.contains("describe() says version `0.1.0`"), "{err}");
    let wrong_id = pii().manifest.replace("id = \"doppel/pii\"", "id = \"acme/pii\"");
    let err = load(config(), &wrong_id).unwrap_err().to_string();
    assert!(err.contains("describe() names it `doppel/pii`"), "{err}");
}

#[test]
fn bytes_that_are_not_a_component_are_refused_by_name() {
    let mut reg = PluginRegistry::new(
        PluginHost::new(HostConfig {
            cache_dir: None,
            ..HostConfig::default()
        })
        .unwrap(),
    );
    reg.add_embedded(pii().manifest, b"\0asm\x01\0\0\0", "pii").unwrap();
    let entry = reg.entries()[0].clone();
    let err = reg.load(&entry).unwrap_err().to_string();
    assert!(
        err.contains("doppel/pii@0.1.0") && err.contains("not a valid WASM component"),
        "{err}"
    );
}
