//! A Ballista cluster inside this process, on loopback.

use ballista_core::serde::BallistaCodec;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;

use crate::{Engine, Error, Result};

/// A Ballista 55 scheduler and `executors` executors started in this
/// process, listening on loopback ports the system picks. For tests and for
/// trying the distributed path on one machine (`doppel engine standalone`);
/// a real cluster runs Ballista's own `ballista-scheduler` and
/// `ballista-executor` on each machine. Stopped when dropped.
#[derive(Debug)]
pub struct LocalCluster {
    engine: Engine,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LocalCluster {
    /// Start a scheduler and `executors` executors of `vcores` task slots each.
    pub fn start(executors: usize, vcores: usize) -> Result<LocalCluster> {
        let err = |e: &dyn std::fmt::Display| Error::Cluster(e.to_string());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("ballista")
            .build()
            .map_err(|e| err(&e))?;
        let port = crate::on_own_thread(&runtime, async {
            let addr = ballista_scheduler::standalone::new_standalone_scheduler()
                .await
                .map_err(|e| err(&e))?;
            for _ in 0..executors {
                let scheduler = SchedulerGrpcClient::connect(format!("http://localhost:{}", addr.port()))
                    .await
                    .map_err(|e| err(&e))?;
                ballista_executor::new_standalone_executor(scheduler, vcores.max(1), BallistaCodec::default())
                    .await
                    .map_err(|e| err(&e))?;
            }
            Ok::<_, Error>(addr.port())
        })?;
        Ok(LocalCluster {
            engine: Engine::Ballista {
                host: "localhost".to_owned(),
                port,
            },
            runtime: Some(runtime),
        })
    }

    /// The engine setting that reaches this cluster.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
