//! `GET /v1/reports/summary` and `GET /v1/reports/usage`: how the
//! credential pool is doing. This instance's counters are flushed first, so
//! its own traffic is always included; other instances' may lag by up to
//! their flush interval (`USAGE_FLUSH_SECS`).

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::App;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ErrorBody};
use crate::report::{self, MAX_REPORT_DAYS, Summary, UsageRow};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// First day, `YYYY-MM-DD` (default today).
    from: Option<String>,
    /// Last day, included (default today); at most 366 days in all.
    to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    days: Vec<UsageRow>,
}

fn date(raw: Option<&str>, default: NaiveDate, name: &str) -> Result<NaiveDate, ApiError> {
    match raw {
        None => Ok(default),
        Some(raw) => NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid_request(format!("{name} must be a date like 2026-11-23"))),
    }
}

/// The report days from `from` to `to`, both included.
pub fn report_days(
    from: Option<&str>,
    to: Option<&str>,
    today: NaiveDate,
) -> Result<Vec<NaiveDate>, ApiError> {
    let from = date(from, today, "from")?;
    let to = date(to, today, "to")?;
    if from > to {
        return Err(ApiError::invalid_request("from must not be after to"));
    }
    if (to - from).num_days() >= MAX_REPORT_DAYS {
        return Err(ApiError::invalid_request(format!(
            "a report covers at most {MAX_REPORT_DAYS} days"
        )));
    }
    Ok(from.iter_days().take_while(|d| *d <= to).collect())
}

/// Daily usage: collected, rejected, sent, spent, burned, refunded and
/// expired unspent, one row a day (days in the configured UTC offset).
#[utoipa::path(get, path = "/v1/reports/usage", tag = "reports", params(UsageQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, body = UsageReport, description = "One row a day, every counter present"),
        (status = 400, body = ErrorBody, description = "invalid_request"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the report scope"),
        (status = 503, body = ErrorBody, description = "store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn usage(
    app: App,
    caller: Caller,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    let now = app.clock.now();
    let offset = app.usage.offset();
    let today = now.with_timezone(&offset).date_naive();
    let days = report_days(query.from.as_deref(), query.to.as_deref(), today)?;
    app.usage.flush().await?;
    let rows = report::usage_rows(app.usage.store(), &days, now, offset).await?;
    Ok(HttpResponse::Ok().json(UsageReport { days: rows }))
}

/// Live figures of the credential pool.
#[utoipa::path(get, path = "/v1/reports/summary", tag = "reports", security(("api_key" = [])),
    responses(
        (status = 200, body = Summary, description = "Live figures"),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 403, body = ErrorBody, description = "forbidden: needs the report scope"),
        (status = 503, body = ErrorBody, description = "store_unavailable"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn summary(app: App, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Report)?;
    app.usage.flush().await?;
    let summary = report::live_summary(app.usage.store(), app.clock.now(), app.usage.offset()).await?;
    Ok(HttpResponse::Ok().json(summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn day_ranges() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(report_days(None, None, today).unwrap(), [today]);
        assert_eq!(report_days(Some("2026-11-21"), None, today).unwrap().len(), 3);
        let year_ago = (today - Duration::days(365)).format("%Y-%m-%d").to_string();
        assert_eq!(report_days(Some(&year_ago), None, today).unwrap().len(), 366);
        let too_far = (today - Duration::days(366)).format("%Y-%m-%d").to_string();
        assert!(report_days(Some(&too_far), None, today).is_err());
        assert!(report_days(Some("2026-11-24"), None, today).is_err());
        assert!(report_days(Some("23/11/2026"), None, today).is_err());
    }
}
