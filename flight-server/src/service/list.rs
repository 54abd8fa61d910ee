//! ListFlights: what the caller may read.

use super::*;

impl FlightSql {
    pub(super) async fn list(&self, p: &Principal, prefix: &str) -> Result<Vec<FlightInfo>, Status> {
        require(p, Scope::DatasetsRead).map_err(error::platform)?;
        let mut out = Vec::new();
        let all = sql::all_datasets(&self.state, &p.account_id).await?;
        // Versions count per name in upload order (the list is newest first).
        let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for d in &all {
            *counts.entry(d.name.as_str()).or_default() += 1;
        }
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for d in &all {
            let n = seen.entry(d.name.as_str()).or_default();
            let version = counts[d.name.as_str()] - *n;
            *n += 1;
            if d.name.starts_with(prefix) {
                out.push(self.dataset_info(p, d.clone(), version).await?);
            }
        }
        for (job, files) in sql::succeeded_outputs(&self.state, &p.account_id).await? {
            if !job.id.starts_with(prefix) {
                continue;
            }
            for f in files {
                out.push(self.output_info(p, &job, f).await?);
            }
        }
        Ok(out)
    }
}
