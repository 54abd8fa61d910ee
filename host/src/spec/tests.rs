use proptest::prelude::*;

use super::*;

fn parse(text: &str) -> Result<PipelineSpec, Diagnostics> {
    PipelineSpec::parse(SourceFile::new("t.toml", text))
}

#[test]
fn a_full_pipeline_keeps_order_values_and_positions() {
    let text = r#"
version = 1
name = "demo"
[attributes]
purpose = "research"
[stages.src]
uses = "builtin:source"
with = { path = "a.csv", delimiter = ";" }
[stages.pii]
uses = "doppel/pii@^0.1"
inputs = "src"
columns = ["email"]
limits = { memory_mb = 64, timeout_ms = 500, fuel = 10 }
[outputs]
synthetic = "src"
"#;
    let spec = parse(text).unwrap();
    assert_eq!(spec.name, "demo");
    let ids: Vec<&str> = spec.stages.iter().map(|s| s.id.value.as_str()).collect();
    assert_eq!(ids, vec!["src", "pii"]);
    let pii = spec.stage("pii").unwrap();
    assert_eq!(pii.inputs[0].value, "src");
    assert_eq!(pii.columns.as_ref().unwrap().value, vec!["email".to_owned()]);
    assert_eq!(pii.limits.memory_mb.as_ref().unwrap().value, 64);
    assert_eq!(pii.limits.fuel.as_ref().unwrap().value, 10);
    let span = pii.uses.as_ref().unwrap().span.clone().unwrap();
    assert_eq!(&text[span], "\"doppel/pii@^0.1\"");
    assert_eq!(spec.attributes[0].1.value, ConfigValue::String("research".into()));
    assert_eq!(spec.outputs[0].stage.value, "src");
}

#[test]
fn overrides_replace_or_add_with_values() {
    let mut spec = parse("version = 1\n[stages.s]\nuses = \"builtin:copula\"\nwith = { seed = 1 }\n").unwrap();
    spec.set("s.seed=7").unwrap();
    spec.set("s.marginals=[\"kde\", \"normal\"]").unwrap();
    spec.set("s.note = plain text").unwrap();
    let with: Vec<(&str, &ConfigValue)> = spec.stages[0]
        .with
        .iter()
        .map(|(k, v)| (k.value.as_str(), &v.value))
        .collect();
    assert_eq!(with[0], ("seed", &ConfigValue::Integer(7)));
    assert_eq!(
        with[1],
        ("marginals", &ConfigValue::Strings(vec!["kde".into(), "normal".into()]))
    );
    assert_eq!(with[2], ("note", &ConfigValue::String("plain text".into())));
    let err = spec.set("nope.seed=1").unwrap_err();
    assert!(err.message.contains("no stage `nope`"), "{err:?}");
    assert!(spec.set("s.seed").is_err());
}

#[test]
fn stage_ids_must_be_cli_friendly() {
    let d = parse("version = 1\n[stages.\"a b\"]\nuses = \"builtin:source\"\n").unwrap_err();
    assert!(d.items[0].message.contains("may only use"), "{d}");
}

proptest! {
    // Whatever the input, parsing reports problems instead of panicking, and
    // every reported position lies inside the file.
    #[test]
    fn parser_never_panics(text in "[\\[\\]a-z0-9_=.\"{},\n #-]{0,200}") {
        if let Err(d) = parse(&text) {
            for (line, col) in d.locations() {
                prop_assert!(line >= 1 && col >= 1);
                prop_assert!(line <= text.lines().count().max(1) + 1);
            }
            let _ = d.to_string();
        }
    }

    #[test]
    fn integer_values_round_trip(n in any::<i64>()) {
        let spec = parse(&format!("version = 1\n[stages.s]\nuses = \"builtin:copula\"\nwith = {{ seed = {n} }}\n")).unwrap();
        prop_assert_eq!(&spec.stages[0].with[0].1.value, &ConfigValue::Integer(n));
    }
}
