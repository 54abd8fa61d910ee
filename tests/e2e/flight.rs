//! Arrow Flight and Flight SQL driven with arrow-rs's own clients against the
//! real binary, on SQLite + local files and on PostgreSQL + S3 (moto): the
//! parts pyarrow cannot reach (PollFlightInfo, our `Any` commands, the Flight
//! SQL client's prepared statements) and the storage leg DataFusion reads.
//! The notebook-facing suite is tests/flight (pyarrow, ADBC).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{Action, FlightClient, FlightDescriptor, FlightInfo};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::server::{PgS3, Server, account, api_key, free_port};

fn start(env: &[(&str, String)]) -> (Server, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let s = Server::start(&["serve", "--flight-addr", &addr], env);
    (s, format!("http://{addr}"))
}

async fn client(url: &str, key: &str) -> FlightClient {
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel = loop {
        match Channel::from_shared(url.to_owned()).unwrap().connect().await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "Flight did not start: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let mut c = FlightClient::new(channel);
    c.add_header("authorization", &format!("Bearer {key}")).unwrap();
    c
}

fn people(rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("age", DataType::Int64, false),
        Field::new("city", DataType::Utf8, false),
    ]));
    let ages: Int64Array = (0..rows).map(|i| 18 + (i * 7 % 60) as i64).collect();
    let cities: StringArray = (0..rows).map(|i| Some(["Lagos", "Lyon", "Lima"][i % 3])).collect();
    RecordBatch::try_new(schema, vec![Arc::new(ages), Arc::new(cities)]).unwrap()
}

async fn put(c: &mut FlightClient, name: &str, batch: RecordBatch) -> Value {
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["datasets".into(), name.into()])))
        .build(futures::stream::iter([Ok(batch)]));
    let mut results = c.do_put(data).await.unwrap();
    let first = results.next().await.unwrap().unwrap();
    serde_json::from_slice(&first.app_metadata).unwrap()
}

async fn read(c: &mut FlightClient, info: &FlightInfo) -> Vec<RecordBatch> {
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    c.do_get(ticket).await.unwrap().try_collect().await.unwrap()
}

async fn act(c: &mut FlightClient, name: &str, body: Value) -> Value {
    let mut out = c
        .do_action(Action::new(name, serde_json::to_vec(&body).unwrap()))
        .await
        .unwrap();
    serde_json::from_slice(&out.next().await.unwrap().unwrap()).unwrap()
}

/// Run a one-row `COUNT(*)` statement's ticket and return the count.
async fn count(sql: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> i64 {
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<RecordBatch> = sql.do_get(ticket).await.unwrap().try_collect().await.unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn journey(env: &[(&str, String)]) {
    let (s, url) = start(env);
    let key = api_key(
        &s,
        &account(&s, "flight@example.com"),
        &["datasets:read", "datasets:write", "jobs:run"],
    );
    let other = api_key(
        &s,
        &account(&s, "other@example.com"),
        &["datasets:read", "datasets:write", "jobs:run"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = client(&url, &key).await;
        let adult = std::fs::File::open(super::repo().join("data/adult.csv")).unwrap();
        let format = arrow::csv::reader::Format::default().with_header(true);
        let (schema, _) = format
            .infer_schema(std::fs::File::open(super::repo().join("data/adult.csv")).unwrap(), None)
            .unwrap();
        let batches: Vec<RecordBatch> = arrow::csv::ReaderBuilder::new(Arc::new(schema))
            .with_header(true)
            .build(adult)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let adult = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let ages = adult
            .column_by_name("age")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let seniors = ages.iter().filter(|a| a.is_some_and(|a| a >= 65)).count() as i64;
        let put_meta = put(&mut c, "adult", adult).await;
        assert_eq!(put_meta["rows"], 32561, "{put_meta}");

        // Our command form of a descriptor reaches the same dataset.
        let by_cmd = c
            .get_flight_info(FlightDescriptor::new_cmd(
                doppel_flight_server::service::dataset_command("adult", 0),
            ))
            .await
            .unwrap();
        assert_eq!(by_cmd.total_records, 32561);
        assert_eq!(rows(&read(&mut c, &by_cmd).await), 32561);

        // A job by action, followed with PollFlightInfo until it is done.
        let job = act(
            &mut c,
            "job.submit",
            json!({"pipeline": "quickstart", "dataset": "adult"}),
        )
        .await;
        let id = job["id"].as_str().unwrap().to_owned();
        let descriptor = FlightDescriptor::new_path(vec!["jobs".into(), id.clone()]);
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut last = -1.0;
        let info = loop {
            let poll = c.poll_flight_info(descriptor.clone()).await.unwrap();
            let progress = poll.progress.unwrap();
            assert!(
                (0.0..=1.0).contains(&progress) && progress >= last,
                "{progress} after {last}"
            );
            last = progress;
            if poll.flight_descriptor.is_none() {
                break poll.info.unwrap();
            }
            assert!(
                poll.info.unwrap().endpoint.is_empty(),
                "no endpoints before the job ends"
            );
            assert!(Instant::now() < deadline, "the job did not finish");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(last, 1.0);
        let twin = read(&mut c, &info).await;
        assert_eq!(rows(&twin), 32561);
        assert_eq!(info.total_records, 32561);

        // The generators REST lists, and a job that names one: privsyn on
        // this build, with ε from its schema, run to the end.
        let generators = act(&mut c, "generators.list", json!({})).await;
        let privsyn = generators
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == "privsyn")
            .unwrap();
        assert_eq!((&privsyn["dp"], &privsyn["available"]), (&json!(true), &json!(true)));
        let dp = act(
            &mut c,
            "job.submit",
            json!({"dataset": "adult", "generator": {"name": "privsyn", "params": {"epsilon": 0.5}}}),
        )
        .await;
        assert_eq!(
            (&dp["pipeline"], &dp["generator"]),
            (&json!("dp"), &json!("privsyn")),
            "{dp}"
        );
        let bad = json!({"dataset": "adult", "generator": {"name": "privsyn", "params": {"epsilon": -1}}});
        let refused = match c
            .do_action(Action::new("job.submit", serde_json::to_vec(&bad).unwrap()))
            .await
        {
            Ok(_) => panic!("a negative ε was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(refused.contains("generator.params.epsilon"), "{refused}");
        let deadline = Instant::now() + Duration::from_secs(600);
        let dp = loop {
            let j = act(&mut c, "job.status", json!({"id": dp["id"]})).await;
            if ["succeeded", "failed", "cancelled"].contains(&j["state"].as_str().unwrap()) {
                break j;
            }
            assert!(Instant::now() < deadline, "the DP job did not finish");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert_eq!(dp["state"], "succeeded", "{dp}");

        // Flight SQL with arrow-rs's client: a prepared statement with a
        // bound parameter, over the dataset and the job's output.
        let mut sql = FlightSqlServiceClient::new(Channel::from_shared(url.clone()).unwrap().connect().await.unwrap());
        sql.set_token(key.clone());
        let mut stmt = sql
            .prepare("SELECT COUNT(*) AS n FROM adult WHERE age >= $1".into(), None)
            .await
            .unwrap();
        assert_eq!(stmt.parameter_schema().unwrap().fields().len(), 1);
        let p = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![65]))],
        )
        .unwrap();
        stmt.set_parameters(p).unwrap();
        let info = stmt.execute().await.unwrap();
        assert_eq!(count(&mut sql, info).await, seniors);
        let info = sql
            .execute(format!("SELECT COUNT(*) FROM outputs.\"{id}\""), None)
            .await
            .unwrap();
        assert_eq!(count(&mut sql, info).await, 32561);
        let err = sql.execute("UPDATE adult SET age = 1".into(), None).await.unwrap_err();
        assert!(
            err.to_string().contains("read-only") || err.to_string().contains("not supported"),
            "{err}"
        );

        // Another account: the dataset, the job and the SQL table do not exist for them.
        let mut them = client(&url, &other).await;
        for d in [
            FlightDescriptor::new_path(vec!["datasets".into(), "adult".into()]),
            FlightDescriptor::new_path(vec!["jobs".into(), id.clone()]),
        ] {
            let e = them.get_flight_info(d).await.unwrap_err();
            assert!(
                e.to_string().contains("NotFound") || e.to_string().contains("not found"),
                "{e}"
            );
        }
        let e = them.poll_flight_info(descriptor.clone()).await.unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
        let small = put(&mut them, "people", people(30)).await;
        assert_eq!(small["rows"], 30);
        let listed: Vec<FlightInfo> = them.list_flights("").await.unwrap().try_collect().await.unwrap();
        assert_eq!(listed.len(), 1, "only their own dataset");
        let got = read(&mut them, &listed[0]).await;
        let cities = got[0].column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(cities.value(2), "Lima");
        assert_eq!(cities.null_count(), 0);
    });
}

#[test]
fn flight_journey_on_sqlite_and_local_files() {
    journey(&[]);
}

#[test]
fn flight_journey_on_postgres_and_s3() {
    let Some(backends) = PgS3::start() else { return };
    journey(&backends.env());
}
