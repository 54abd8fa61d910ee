//! What a Flight descriptor points at.
//!
//! Paths, for pyarrow users:
//!
//! - `["datasets", "<name>"]` — the latest version of the caller's dataset
//!   `name`; `["datasets", "<name>", "<n>"]` — its `n`-th upload (1-based);
//!   `["datasets", "ds_…"]` — a dataset by id;
//! - `["jobs", "job_…"]` — a job (its synthetic twin once it has succeeded);
//!   `["jobs", "job_…", "<output>.parquet"]` — one table output;
//! - `["purchases", "pur_…"]` — the table a completed marketplace purchase bought.
//!
//! Commands, for programs: a protobuf `Any` holding [`DatasetRef`] or
//! [`JobRef`] under our own type URLs.

use arrow_flight::FlightDescriptor;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::sql::{Any, ProstMessageExt};
use prost::Message;
use tonic::Status;

/// A reference to a dataset, as a descriptor command.
#[derive(Clone, PartialEq, Message)]
pub struct DatasetRef {
    /// Dataset id (`ds_…`) or name.
    #[prost(string, tag = "1")]
    pub dataset: String,
    /// Version (1-based); 0 for the latest.
    #[prost(uint32, tag = "2")]
    pub version: u32,
}

/// A reference to a job (and optionally one of its outputs).
#[derive(Clone, PartialEq, Message)]
pub struct JobRef {
    /// Job id.
    #[prost(string, tag = "1")]
    pub job_id: String,
    /// Output file name; empty for the synthetic twin.
    #[prost(string, tag = "2")]
    pub output: String,
}

/// Type URL of [`DatasetRef`].
pub const DATASET_REF_URL: &str = "type.googleapis.com/doppel.flight.v1.DatasetRef";
/// Type URL of [`JobRef`].
pub const JOB_REF_URL: &str = "type.googleapis.com/doppel.flight.v1.JobRef";

impl ProstMessageExt for DatasetRef {
    fn type_url() -> &'static str {
        DATASET_REF_URL
    }
    fn as_any(&self) -> Any {
        Any {
            type_url: DATASET_REF_URL.to_owned(),
            value: self.encode_to_vec().into(),
        }
    }
}

impl ProstMessageExt for JobRef {
    fn type_url() -> &'static str {
        JOB_REF_URL
    }
    fn as_any(&self) -> Any {
        Any {
            type_url: JOB_REF_URL.to_owned(),
            value: self.encode_to_vec().into(),
        }
    }
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A dataset by id or by name (and version).
    Dataset {
        /// `ds_…` id or a name.
        key: String,
        /// 1-based version of a name; `None` for the latest.
        version: Option<u32>,
    },
    /// A job, or one of its outputs.
    Job {
        /// Job id.
        id: String,
        /// Output name; `None` for the synthetic twin.
        output: Option<String>,
    },
    /// What a completed marketplace purchase bought.
    Purchase {
        /// Purchase id.
        id: String,
    },
}

const PATH_HELP: &str = "use [\"datasets\", name[, version]], [\"datasets\", \"ds_…\"], [\"jobs\", \"job_…\"[, output]] or [\"purchases\", \"pur_…\"]";

/// Parse a path descriptor.
pub fn parse_path(path: &[String]) -> Result<Target, Status> {
    let bad = |why: &str| Status::invalid_argument(format!("descriptor path {path:?}: {why}; {PATH_HELP}"));
    match path {
        [kind, key] if kind == "datasets" && !key.is_empty() => Ok(Target::Dataset {
            key: key.clone(),
            version: None,
        }),
        [kind, key, v] if kind == "datasets" && !key.is_empty() => {
            let n: u32 = v
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("the version must be a whole number from 1"))?;
            Ok(Target::Dataset {
                key: key.clone(),
                version: Some(n),
            })
        }
        [kind, id] if kind == "jobs" && !id.is_empty() => Ok(Target::Job {
            id: id.clone(),
            output: None,
        }),
        [kind, id, out] if kind == "jobs" && !id.is_empty() && !out.is_empty() => Ok(Target::Job {
            id: id.clone(),
            output: Some(out.clone()),
        }),
        [kind, id] if kind == "purchases" && !id.is_empty() => Ok(Target::Purchase { id: id.clone() }),
        [] => Err(bad("it is empty")),
        _ => Err(bad("not a known form")),
    }
}

/// Parse any descriptor we understand (path, or one of our commands).
pub fn parse(descriptor: &FlightDescriptor) -> Result<Target, Status> {
    if descriptor.r#type == DescriptorType::Path as i32 {
        return parse_path(&descriptor.path);
    }
    let any = Any::decode(&*descriptor.cmd)
        .map_err(|_| Status::invalid_argument("descriptor command: not a protobuf Any"))?;
    parse_any(&any)
}

/// Parse one of our commands.
pub fn parse_any(any: &Any) -> Result<Target, Status> {
    let bad = |e: &dyn std::fmt::Display| Status::invalid_argument(format!("descriptor command: {e}"));
    match any.type_url.as_str() {
        DATASET_REF_URL => {
            let r = DatasetRef::decode(&*any.value).map_err(|e| bad(&e))?;
            if r.dataset.is_empty() {
                return Err(Status::invalid_argument(
                    "DatasetRef.dataset: give a dataset id or name",
                ));
            }
            Ok(Target::Dataset {
                key: r.dataset,
                version: (r.version > 0).then_some(r.version),
            })
        }
        JOB_REF_URL => {
            let r = JobRef::decode(&*any.value).map_err(|e| bad(&e))?;
            if r.job_id.is_empty() {
                return Err(Status::invalid_argument("JobRef.job_id: give a job id"));
            }
            Ok(Target::Job {
                id: r.job_id,
                output: (!r.output.is_empty()).then_some(r.output),
            })
        }
        "" => Err(Status::invalid_argument(format!("empty descriptor; {PATH_HELP}"))),
        other => Err(Status::invalid_argument(format!(
            "descriptor command: unknown type `{other}`; send a path, a Flight SQL command, {DATASET_REF_URL} or {JOB_REF_URL}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn p(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path(&p(&["datasets", "adult"])).unwrap(),
            Target::Dataset {
                key: "adult".into(),
                version: None
            }
        );
        assert_eq!(
            parse_path(&p(&["datasets", "adult", "2"])).unwrap(),
            Target::Dataset {
                key: "adult".into(),
                version: Some(2)
            }
        );
        assert_eq!(
            parse_path(&p(&["jobs", "job_1", "synthetic.parquet"])).unwrap(),
            Target::Job {
                id: "job_1".into(),
                output: Some("synthetic.parquet".into())
            }
        );
        assert_eq!(
            parse_path(&p(&["purchases", "pur_1"])).unwrap(),
            Target::Purchase { id: "pur_1".into() }
        );
        for bad in [
            &["purchases", "pur_1", "x"][..],
            &["datasets", "a", "0"],
            &["datasets", "a", "x"],
            &["tables", "a"],
            &[],
            &["datasets", ""],
        ] {
            let e = parse_path(&p(bad)).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}");
            assert!(e.message().contains("datasets"), "{}", e.message());
        }
    }

    #[test]
    fn commands_round_trip() {
        let d = FlightDescriptor::new_cmd(
            DatasetRef {
                dataset: "ds_1".into(),
                version: 0,
            }
            .as_any()
            .encode_to_vec(),
        );
        assert_eq!(
            parse(&d).unwrap(),
            Target::Dataset {
                key: "ds_1".into(),
                version: None
            }
        );
        let j = FlightDescriptor::new_cmd(
            JobRef {
                job_id: "job_9".into(),
                output: String::new(),
            }
            .as_any()
            .encode_to_vec(),
        );
        assert_eq!(
            parse(&j).unwrap(),
            Target::Job {
                id: "job_9".into(),
                output: None
            }
        );
        let junk = FlightDescriptor::new_cmd(b"\xff\xff".to_vec());
        assert_eq!(parse(&junk).unwrap_err().code(), Code::InvalidArgument);
        let path = FlightDescriptor::new_path(vec!["datasets".into(), "x".into()]);
        assert!(parse(&path).is_ok());
    }
}
