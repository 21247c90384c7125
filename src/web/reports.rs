//! The report API under `/api/v1/reports`: the period summary, the live view and the
//! drill-down, as JSON or CSV (`Accept: text/csv` or `?format=csv`). Admin only for now.
//!
//! Filters are validated into a [`Filter`] before anything reaches ClickHouse, and reach it
//! only as bound values; a bad one is a 400 with the reason.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use crate::analytics::AnalyticsError;
use crate::analytics::reports::{CsvRecord, Drill, Filter, FilterQuery, SlaTargets, to_csv};
use crate::model::Timestamp;
use crate::services::Services;

/// Registers the report routes. Must come before the `/api/v1` scope, which would otherwise
/// claim these paths.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1/reports")
            .route("/summary", web::get().to(summary))
            .route("/live", web::get().to(live))
            .route("/handoffs", web::get().to(handoffs)),
    );
}

/// Everything the report routes read from the query string.
#[derive(Debug, Default, Deserialize)]
struct Params {
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
    channel: Option<String>,
    team: Option<String>,
    agent: Option<String>,
    reason: Option<String>,
    priority: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// Which CSV table: summary `breakdowns` (default), `reasons_over_time`, `heatmap`;
    /// live `queues` (default), `agents`.
    table: Option<String>,
    /// The drill-down.
    drill: Option<String>,
}

impl Params {
    /// Parsed after the caller is known, so an unauthenticated caller learns nothing.
    fn parse(req: &HttpRequest) -> Result<Self, ApiError> {
        web::Query::<Params>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))
    }

    fn filter(&self, now_ms: i64) -> Result<Filter, ApiError> {
        let q = FilterQuery {
            range: self.range.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            channel: self.channel.clone(),
            team: self.team.clone(),
            agent: self.agent.clone(),
            reason: self.reason.clone(),
            priority: self.priority.clone(),
        };
        Filter::from_query(&q, now_ms).map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// CSV when `?format=csv` or, without `format`, when the client accepts `text/csv`.
    fn wants_csv(&self, req: &HttpRequest) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            Some("csv") => Ok(true),
            Some("json") => Ok(false),
            Some(_) => Err(ApiError::BadRequest("format must be json or csv".into())),
            None => Ok(req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/csv"))),
        }
    }

    fn table(&self, allowed: &[&'static str]) -> Result<&'static str, ApiError> {
        match self.table.as_deref() {
            None => Ok(allowed[0]),
            Some(t) => allowed.iter().copied().find(|a| *a == t).ok_or_else(|| {
                ApiError::BadRequest(format!("table must be one of {}", allowed.join(", ")))
            }),
        }
    }
}

fn report_error(e: AnalyticsError) -> ApiError {
    match e {
        AnalyticsError::Store(e) => e.into(),
        other => ApiError::Unavailable(other.into()),
    }
}

fn csv_response<T: CsvRecord>(name: &str, rows: &[T]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"baton-{name}.csv\""),
        ))
        .body(to_csv(rows))
}

async fn summary(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.require_manager()?;
    let params = Params::parse(&req)?;
    let csv = params.wants_csv(&req)?;
    let table = params.table(&["breakdowns", "reasons_over_time", "heatmap"])?;
    let filter = params.filter(Timestamp::now().as_millis())?;
    let sla = SlaTargets::from_settings(&services.settings);
    let s = services
        .reports
        .summary(&services.clickhouse, services.store.as_ref(), &filter, &sla)
        .await
        .map_err(report_error)?;
    if !csv {
        return Ok(HttpResponse::Ok().json(&*s));
    }
    Ok(match table {
        "reasons_over_time" => csv_response(table, &s.reasons_over_time),
        "heatmap" => csv_response(table, &s.heatmap),
        _ => csv_response("summary", &s.breakdown_rows()),
    })
}

async fn live(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.require_manager()?;
    let params = Params::parse(&req)?;
    let csv = params.wants_csv(&req)?;
    let table = params.table(&["queues", "agents"])?;
    let l = services
        .reports
        .live(
            &services.clickhouse,
            services.store.as_ref(),
            Timestamp::now().as_millis(),
        )
        .await
        .map_err(report_error)?;
    if !csv {
        return Ok(HttpResponse::Ok().json(&*l));
    }
    Ok(match table {
        "agents" => csv_response("agents", &l.agents),
        _ => csv_response("queues", &l.queues),
    })
}

async fn handoffs(
    req: HttpRequest,
    caller: Caller,
    services: web::Data<Services>,
) -> Result<HttpResponse, ApiError> {
    caller.require_manager()?;
    let params = Params::parse(&req)?;
    let csv = params.wants_csv(&req)?;
    let drill: Drill = params
        .drill
        .as_deref()
        .unwrap_or("requested")
        .parse()
        .map_err(ApiError::BadRequest)?;
    let filter = params.filter(Timestamp::now().as_millis())?;
    let sla = SlaTargets::from_settings(&services.settings);
    let rows = services
        .reports
        .handoffs(&services.clickhouse, &filter, &sla, drill)
        .await
        .map_err(report_error)?;
    if csv {
        return Ok(csv_response("handoffs", &rows));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "drill": drill,
        "filter": filter,
        "limit": crate::analytics::reports::DRILL_LIMIT,
        "handoffs": &*rows,
    })))
}
