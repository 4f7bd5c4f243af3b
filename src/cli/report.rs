//! `formid-ledger report`: an app's usage report, read from the store the
//! configuration names, as a terminal table or as the API's JSON.

use crate::api::report_days;
use crate::bootstrap::{Backend, find_app};
use crate::config::Config;

/// The report of `app` from `from` to `to` (default today); the text to print.
pub async fn run(
    config: &Config,
    app: &str,
    from: Option<&str>,
    to: Option<&str>,
    json: bool,
) -> anyhow::Result<String> {
    if config.redis_url.is_none() && config.redis_cluster_nodes.is_empty() {
        anyhow::bail!(
            "the embedded ledger lives inside the serving process: set REDIS_URL (or REDIS_CLUSTER_NODES), \
             or ask the running service: GET /v1/reports/usage"
        );
    }
    find_app(config, app)?;
    let counters = Backend::open(config)?
        .app(app, Default::default(), Default::default(), &None)?
        .usage;
    let now = chrono::Utc::now();
    let offset = config.report_utc_offset;
    let today = now.with_timezone(&offset).date_naive();
    let days = report_days(from, to, today).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows = crate::report::usage_rows(counters.as_ref(), &days, now, offset).await?;
    Ok(match json {
        true => format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({ "days": rows }))?
        ),
        false => crate::report::table::render(&rows),
    })
}
