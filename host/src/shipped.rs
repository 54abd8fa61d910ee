//! The pipelines shipped in `pipelines/`, embedded so a server or worker runs
//! them wherever the binary is installed.

/// A shipped pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Shipped {
    /// Name (file stem): what REST and Flight clients ask for.
    pub name: &'static str,
    /// The TOML text.
    pub text: &'static str,
}

/// Every shipped pipeline, by name.
pub const PIPELINES: &[Shipped] = &[
    Shipped {
        name: "copula",
        text: include_str!("../../pipelines/copula.toml"),
    },
    Shipped {
        name: "ctgan",
        text: include_str!("../../pipelines/ctgan.toml"),
    },
    Shipped {
        name: "dp",
        text: include_str!("../../pipelines/dp.toml"),
    },
    Shipped {
        name: "dp-tvae",
        text: include_str!("../../pipelines/dp-tvae.toml"),
    },
    Shipped {
        name: "gdpr",
        text: include_str!("../../pipelines/gdpr.toml"),
    },
    Shipped {
        name: "hipaa",
        text: include_str!("../../pipelines/hipaa.toml"),
    },
    Shipped {
        name: "pii-scan",
        text: include_str!("../../pipelines/pii-scan.toml"),
    },
    Shipped {
        name: "quickstart",
        text: include_str!("../../pipelines/quickstart.toml"),
    },
    Shipped {
        name: "sample",
        text: include_str!("../../pipelines/sample.toml"),
    },
    Shipped {
        name: "tvae",
        text: include_str!("../../pipelines/tvae.toml"),
    },
];

/// A shipped pipeline by name.
pub fn find(name: &str) -> Option<Shipped> {
    PIPELINES.iter().copied().find(|p| p.name == name)
}

/// The `description` line of a pipeline text, if it has one.
pub fn description(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l
            .trim()
            .strip_prefix("description")?
            .trim_start()
            .strip_prefix('=')?
            .trim();
        Some(rest.trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    /// Pipelines kept out of the server on purpose. `compare` fits three
    /// generators and writes three twins: a CLI tool for choosing one, not a
    /// job whose one twin a server stores and lists.
    const CLI_ONLY: &[&str] = &["compare"];

    #[test]
    fn every_pipeline_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "toml").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
            })
            .filter(|name| !CLI_ONLY.contains(&name.as_str()))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = super::PIPELINES.iter().map(|p| p.name).collect();
        assert_eq!(on_disk, embedded);
        for p in super::PIPELINES {
            assert!(super::description(p.text).is_some(), "{} has no description", p.name);
        }
    }
}
