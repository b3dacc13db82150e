//! The HTTP API under `/api/v1` (documented in `openapi.json`, served at
//! `/api/v1/openapi.json`), the dashboard at `/`, `/metrics`, `/healthz`
//! and `/readyz`. Every API request carries a bearer token; every access is
//! written to the audit log (CAC Order No. 4 Art. 15; MIIT Order No. 24
//! Art. 13(6)). Errors are `{"error": {"code": "...", "message": "..."}}`
//! with stable codes. Responses carry masked values and fingerprints only.

use crate::config::daemon::Role;
use crate::daemon::auth::Caller;
use crate::daemon::jobs::{self, JobError};
use crate::daemon::Daemon;
use crate::store::{FindingFilter, StoreError, StoredFinding, TriageStatus, Violation};
use crate::sweep::{PlanKind, SweepError};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON: &str = include_str!("assets/favicon.svg");
/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// An API error with a stable code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", msg)
    }
    fn conflict(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, msg)
    }
}

fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"childguard\""),
        );
    }
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_body(self.status, self.code, &self.message)
    }
}

fn internal(e: &dyn std::fmt::Display) -> ApiError {
    // The cause goes to the daemon log only; the client gets a stable code.
    tracing::error!(error = %e, "internal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the daemon log",
    )
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => ApiError::not_found(format!("{what} {id}")),
            e => internal(&e),
        }
    }
}

impl From<SweepError> for ApiError {
    fn from(e: SweepError) -> Self {
        match e {
            SweepError::NoSuchPlan(id) => ApiError::not_found(format!("sweep plan {id}")),
            SweepError::Plan(m) => ApiError::bad(m),
            SweepError::Approval(m) | SweepError::Refused(m) => {
                ApiError::conflict("invalid_state", m)
            }
            e => internal(&e),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Busy(what) => {
                ApiError::conflict("busy", format!("a {what} is already running"))
            }
            JobError::DatasetBusy(m) => ApiError::conflict("dataset_busy", m),
            JobError::Invalid(m) => ApiError::bad(m),
            JobError::SelfApproval => ApiError::new(
                StatusCode::FORBIDDEN,
                "self_approval",
                "a plan must be approved by someone other than its author",
            ),
            JobError::State(m) => ApiError::conflict("invalid_state", m),
            JobError::NotApproved(m) => ApiError::conflict("not_approved", m),
            JobError::NotFound(m) => ApiError::not_found(m),
            JobError::Sweep(e) => e.into(),
            JobError::Store(e) => e.into(),
            JobError::Report(crate::report::ReportError::NoRuns) => {
                ApiError::conflict("no_runs", "nothing to report yet: run a scan first")
            }
            JobError::Report(e) => internal(&e),
            JobError::Classify(e) => internal(&e),
            JobError::Unit { .. } => internal(&e),
        }
    }
}

type ApiResult<T = Json<Value>> = Result<T, ApiError>;
type D = State<Arc<Daemon>>;

fn need(c: &Caller, role: Role, action: &str) -> Result<(), ApiError> {
    if c.role >= role {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{action} needs role {} or higher; token `{}` has role {}",
                role.as_str(),
                c.name,
                c.role.as_str()
            ),
        ))
    }
}

/// The router with every layer.
pub fn router(d: Arc<Daemon>) -> Router {
    let api = Router::new()
        .route("/me", get(me))
        .route("/overview", get(overview))
        .route("/trend", get(trend))
        .route("/runs", get(list_runs).post(start_scan))
        .route("/runs/{id}", get(get_run))
        .route("/findings", get(list_findings))
        .route("/findings/{id}", get(get_finding))
        .route("/findings/{id}/triage", post(triage))
        .route("/violations", get(list_violations))
        .route("/datasets", get(list_datasets))
        .route("/datasets/{name}", get(get_dataset))
        .route("/sweep/plans", get(list_plans).post(create_plans))
        .route("/sweep/plans/{id}", get(get_plan))
        .route("/sweep/plans/{id}/approve", post(approve_plan))
        .route("/sweep/plans/{id}/reject", post(reject_plan))
        .route("/sweep/plans/{id}/run", post(run_plan))
        .route("/erasures", get(list_erasures).post(create_erasure))
        .route("/erasures/{id}/approve", post(approve_erasure))
        .route("/purge", post(purge))
        .route("/reports", get(list_reports).post(create_report))
        .route("/reports/{id}", get(get_report))
        .route("/erasures/{id}", get(get_erasure))
        .route("/audit", get(list_audit))
        .layer(middleware::from_fn_with_state(d.clone(), auth_layer))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
        });

    let timeout = Duration::from_secs(d.config.server.request_timeout_secs.max(1));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML) }))
        .route("/assets/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }))
        .route("/assets/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS) }))
        .route("/assets/favicon.svg", get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON) }))
        .route("/favicon.ico", get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON) }))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such page") })
        .layer(middleware::from_fn_with_state(d.clone(), observe_layer))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(RequestBodyLimitLayer::new(d.config.server.body_limit_bytes))
        .layer(middleware::from_fn(json_errors))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ))
        .with_state(d)
}

/// Turn non-JSON error responses of layers and extractors (413 body too
/// large, 408 timeout, 400/415/422 bad JSON, 405) into the JSON error shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    // A server error's own text stays in the log, never in the response.
    if status.is_server_error() {
        return error_body(status, code, status.canonical_reason().unwrap_or("error"));
    }
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let msg = String::from_utf8_lossy(&bytes);
    let msg = if msg.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        msg.trim().to_string()
    };
    error_body(status, code, &msg)
}

/// Metrics per route.
async fn observe_layer(State(d): D, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let method = req.method().as_str().to_string();
    let t0 = std::time::Instant::now();
    let resp = next.run(req).await;
    let st = resp.status().as_u16().to_string();
    d.metrics.inc(
        "childguard_http_requests_total",
        &[("method", &method), ("route", &route), ("status", &st)],
        1.0,
    );
    d.metrics.observe(
        "childguard_http_request_duration_seconds",
        &[("route", &route)],
        t0.elapsed().as_secs_f64(),
    );
    resp
}

/// Bearer-token check on every `/api/v1` call, and the access record.
async fn auth_layer(State(d): D, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let action = format!(
        "{} {}",
        method,
        req.extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str())
            .unwrap_or(&path)
    );
    // From where (MIIT Order No. 24 Art. 13(6)): the client's address, and
    // what: the route, the object's path and the query (filters, never a body).
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string());
    let query = req
        .uri()
        .query()
        .map(|q| q.chars().take(500).collect::<String>());
    let record = |actor: &str, role: &str, outcome: &str| {
        d.audit_entry(crate::daemon::AuditEntry {
            actor: actor.into(),
            role: role.into(),
            action: action.clone(),
            object: path.clone(),
            outcome: outcome.into(),
            detail: query.clone(),
            peer: peer.clone(),
        })
    };
    // Bearer tokens in the Authorization header only: no cookies, no query
    // tokens, so a cross-site request carries no credentials (CSRF-safe).
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(h) = header else {
        d.metrics.inc(
            "childguard_auth_failures_total",
            &[("code", "unauthorized")],
            1.0,
        );
        record("-", "-", "401");
        return error_body(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <token>` header",
        );
    };
    let token = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    let Some(caller) = d.tokens.check(token) else {
        d.metrics.inc(
            "childguard_auth_failures_total",
            &[("code", "invalid_token")],
            1.0,
        );
        record("-", "-", "401");
        return error_body(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the bearer token is not valid",
        );
    };
    if let Err(wait) = d.limiter.check(&caller.name) {
        d.metrics.inc(
            "childguard_rate_limited_total",
            &[("token", &caller.name)],
            1.0,
        );
        record(&caller.name, caller.role.as_str(), "429");
        let mut r = error_body(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!(
                "too many requests for token `{}`; retry in {wait} s",
                caller.name
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    req.extensions_mut().insert(caller.clone());
    let resp = next.run(req).await;
    if resp.status() == StatusCode::FORBIDDEN {
        d.metrics.inc(
            "childguard_auth_failures_total",
            &[("code", "forbidden")],
            1.0,
        );
    }
    record(&caller.name, caller.role.as_str(), resp.status().as_str());
    resp
}

async fn readyz(State(d): D) -> Response {
    if d.ready.load(Ordering::SeqCst) && !*d.shutdown.borrow() && d.store.latest_run().await.is_ok()
    {
        Json(json!({
            "status": "ready",
            "instance": d.instance,
            "scheduler_leader": d.is_leader(),
        }))
        .into_response()
    } else {
        error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "starting up or shutting down",
        )
    }
}

async fn metrics_text(State(d): D) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        d.metrics.render(),
    )
        .into_response()
}

// ---------------------------------------------------------------- handlers

async fn me(Extension(c): Extension<Caller>) -> Json<Value> {
    Json(json!({"name": c.name, "role": c.role}))
}

/// The dataset name the API uses for findings matched to no dataset.
const UNDECLARED: &str = "(undeclared)";

/// A run as the API shows it (the store's run, flattened).
fn run_view(d: &Daemon, r: &crate::store::Run) -> Value {
    let running = d.active_runs.lock().unwrap().contains(&r.id);
    json!({
        "id": r.id,
        "status": if running { "running" } else { r.status.as_str() },
        "trigger": r.trigger,
        "started_by": r.started_by,
        "started_at": r.started_at,
        "finished_at": if running { None } else { r.finished_at },
        "targets": r.targets.iter().map(|t| crate::source::target_label(t)).collect::<Vec<_>>(),
        "units": r.stats.units,
        "bytes": r.stats.bytes,
        "rows": r.stats.rows,
        "findings": r.summary.findings,
        "child_findings": r.summary.child_findings,
        "violations": r.summary.violations,
        "resolved": r.summary.resolved,
        "errors": r.stats.units_failed,
        "message": r.stats.error,
    })
}

/// A finding as the API shows it: masked value and fingerprint only.
fn finding_view(f: &StoredFinding) -> Value {
    let x = &f.finding;
    json!({
        "finding_id": x.finding_id,
        "run_id": f.last_run,
        "target": crate::source::target_label(&x.target),
        "unit_id": f.unit_id,
        "path": x.location.path,
        "table": x.location.table,
        "line": x.location.line,
        "byte_offset": x.location.byte_offset,
        "column": x.location.column,
        "field": x.location.field,
        "dataset": f.dataset,
        "category": x.category,
        "rule": x.rule,
        "child": x.child,
        "confidence": x.confidence,
        "masked": x.masked,
        "fingerprint": x.fingerprint,
        "severity": x.sensitivity,
        "count": x.count,
        "child_count": x.child_count,
        "rows_scanned": x.rows_scanned,
        "status": f.triage.status,
        "triage_note": f.triage.comment,
        "triaged_by": f.triage.by,
        "triaged_at": f.triage.at,
        "first_seen": f.first_seen,
        "last_seen": f.last_seen,
        "resolved_at": f.resolved_at,
    })
}

/// The overview is a handful of aggregates over every finding; it is cached
/// for two seconds so a wall of dashboards does not recompute it per request.
async fn overview(State(d): D) -> ApiResult {
    static CACHE: std::sync::Mutex<Option<(std::time::Instant, usize, Value)>> =
        std::sync::Mutex::new(None);
    let key = Arc::as_ptr(&d) as usize;
    if let Some((t, k, v)) = CACHE.lock().unwrap().as_ref() {
        if *k == key && t.elapsed() < Duration::from_secs(2) {
            return Ok(Json(v.clone()));
        }
    }
    let v = overview_uncached(&d).await?;
    *CACHE.lock().unwrap() = Some((std::time::Instant::now(), key, v.clone()));
    Ok(Json(v))
}

/// Count of open (unresolved) findings matching a filter.
async fn count_open(d: &Daemon, mut f: FindingFilter) -> Result<u64, ApiError> {
    f.resolved = Some(false);
    f.limit = 1;
    Ok(d.store.findings(&f).await?.total)
}

/// Open violations: those of the newest classified run (triage and sweeps
/// re-classify it, so they close and reopen with them).
async fn open_violations(d: &Daemon) -> Result<Vec<Violation>, ApiError> {
    let Some(run) = jobs::latest_classified(d).await? else {
        return Ok(vec![]);
    };
    Ok(d.store
        .violations(&crate::store::ViolationFilter {
            run: Some(run.id),
            ..Default::default()
        })
        .await?)
}

async fn overview_uncached(d: &Daemon) -> Result<Value, ApiError> {
    let last = d.store.latest_run().await?;
    let viol = open_violations(d).await?;
    let mut by_kind: std::collections::BTreeMap<&str, u64> = Default::default();
    for v in &viol {
        *by_kind.entry(v.kind.as_str()).or_default() += 1;
    }
    let overdue: Vec<&Violation> = viol
        .iter()
        .filter(|v| v.kind == crate::store::ViolationKind::RetentionOverdue)
        .collect();
    let mut overdue_ds: Vec<&str> = overdue
        .iter()
        .filter_map(|v| v.dataset.as_deref())
        .collect();
    overdue_ds.sort();
    overdue_ds.dedup();
    let child_pi: Vec<Value> = d
        .store
        .dataset_counts(None)
        .await?
        .into_iter()
        .filter(|c| c.child_findings > 0)
        .map(|c| json!({"dataset": c.dataset.as_deref().unwrap_or(UNDECLARED), "category": c.category, "findings": c.child_findings, "values": c.child_records}))
        .collect();
    let pending = |kind: PlanKind| {
        let d = &d;
        async move {
            Ok::<_, ApiError>(
                d.sweeper
                    .journal
                    .plans(Some(kind.as_str()))
                    .await?
                    .iter()
                    .filter(|p| p.status == "planned")
                    .count(),
            )
        }
    };
    let open = FindingFilter {
        status: Some(TriageStatus::Open),
        ..Default::default()
    };
    Ok(json!({
        "child_pi": child_pi,
        "findings_total": d.store.findings(&FindingFilter { limit: 1, ..Default::default() }).await?.total,
        "findings_open": count_open(d, open.clone()).await?,
        "child_findings_open": count_open(d, FindingFilter { child: Some(true), ..open }).await?,
        "open_violations": viol.len(),
        "open_violations_by_kind": by_kind.into_iter().map(|(k, n)| json!({"kind": k, "count": n})).collect::<Vec<_>>(),
        "retention_overdue": {
            "datasets": overdue_ds.len(),
            "records": overdue.iter().filter_map(|v| v.record_count).sum::<u64>(),
        },
        "pending_approvals": {
            "sweep_plans": pending(PlanKind::Retention).await? + pending(PlanKind::Purge).await?,
            "erasures": pending(PlanKind::Erasure).await?,
        },
        "last_run": last.as_ref().map(|r| run_view(d, r)),
    }))
}

async fn trend(State(d): D) -> ApiResult {
    let active = d.active_runs.lock().unwrap().clone();
    let pts: Vec<Value> = d
        .store
        .trend(60)
        .await?
        .into_iter()
        .filter(|p| !active.contains(&p.run_id))
        .map(|p| json!({"run_id": p.run_id, "started_at": p.started_at, "findings": p.findings, "child_findings": p.child_findings, "violations": p.violations}))
        .collect();
    Ok(Json(json!({"points": pts})))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    limit: Option<u64>,
    status: Option<String>,
    dataset: Option<String>,
    kind: Option<String>,
    severity: Option<String>,
    page: Option<u64>,
    per_page: Option<u64>,
    actor: Option<String>,
    action: Option<String>,
    format: Option<String>,
}

async fn list_runs(State(d): D, Query(q): Query<ListQuery>) -> ApiResult {
    let runs = d.store.runs(q.limit.unwrap_or(50).clamp(1, 1000)).await?;
    Ok(Json(
        json!({"items": runs.iter().map(|r| run_view(&d, r)).collect::<Vec<_>>()}),
    ))
}

async fn get_run(State(d): D, Path(id): Path<i64>) -> ApiResult {
    let r = d
        .store
        .run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {id}")))?;
    Ok(Json(run_view(&d, &r)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScanBody {
    /// Paths or sqlite:// URLs; empty scans every dataset's source.
    #[serde(default)]
    targets: Vec<String>,
}

async fn start_scan(
    State(d): D,
    Extension(c): Extension<Caller>,
    body: Option<Json<ScanBody>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Operator, "starting a scan")?;
    let targets = body.map(|b| b.0.targets).unwrap_or_default();
    let id = jobs::scan(d.clone(), targets, "api", &c.name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": id, "status": "running"})),
    ))
}

/// Query of `GET /findings`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FindingQuery {
    /// A dataset name, or `(undeclared)`.
    dataset: Option<String>,
    category: Option<String>,
    /// `true` or `false`.
    child: Option<String>,
    /// Sensitivity of the category: low, medium, high.
    severity: Option<String>,
    /// Triage status.
    status: Option<String>,
    run_id: Option<i64>,
    /// `false` (default: current findings), `true` (resolved), `all`.
    resolved: Option<String>,
    page: Option<u64>,
    per_page: Option<u64>,
    /// Keyset paging: the `next_after` of the previous page.
    after: Option<String>,
}

fn parse<T: std::str::FromStr>(what: &str, v: &Option<String>) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    v.as_deref()
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| ApiError::bad(format!("{what}: {e}")))
        })
        .transpose()
}

async fn list_findings(State(d): D, Query(q): Query<FindingQuery>) -> ApiResult {
    let per_page = q.per_page.unwrap_or(50).clamp(1, 1000);
    let page = q.page.unwrap_or(1).max(1);
    let child = match q.child.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::bad("child must be true or false")),
    };
    let resolved = match q.resolved.as_deref() {
        None | Some("false") => Some(false),
        Some("true") => Some(true),
        Some("all") => None,
        Some(_) => return Err(ApiError::bad("resolved must be true, false or all")),
    };
    let sensitivity = match q.severity.as_deref() {
        None => None,
        Some("low") => Some(crate::finding::Sensitivity::Low),
        Some("medium") => Some(crate::finding::Sensitivity::Medium),
        Some("high") => Some(crate::finding::Sensitivity::High),
        Some(_) => return Err(ApiError::bad("severity must be low, medium or high")),
    };
    let undeclared = q.dataset.as_deref() == Some(UNDECLARED);
    let f = FindingFilter {
        dataset: q.dataset.clone().filter(|_| !undeclared),
        undeclared,
        category: parse("category", &q.category)?,
        child,
        sensitivity,
        status: parse("status", &q.status)?,
        run: q.run_id,
        resolved,
        target: None,
        offset: q.after.is_none().then_some((page - 1) * per_page),
        after: q.after.clone(),
        limit: per_page,
    };
    let p = d.store.findings(&f).await?;
    Ok(Json(json!({
        "items": p.items.iter().map(finding_view).collect::<Vec<_>>(),
        "total": p.total,
        "page": page,
        "per_page": per_page,
        "next_after": p.next_after,
    })))
}

async fn get_finding(State(d): D, Path(id): Path<String>) -> ApiResult {
    let f = d
        .store
        .finding(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("finding {id}")))?;
    Ok(Json(finding_view(&f)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriageBody {
    status: String,
    #[serde(default)]
    note: Option<String>,
}

async fn triage(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<TriageBody>,
) -> ApiResult {
    need(&c, Role::Operator, "triaging a finding")?;
    let status: TriageStatus = b.status.parse().map_err(ApiError::bad)?;
    if b.note.as_ref().is_some_and(|n| n.len() > 2000) {
        return Err(ApiError::bad("note is longer than 2000 bytes"));
    }
    // The store keeps triage across re-scans and audits it in its chain.
    let f = d
        .store
        .triage(&id, status, b.note.as_deref(), &c.name)
        .await?;
    // Open violations follow the triage (false positives close theirs).
    jobs::reclassify(&d).await?;
    Ok(Json(finding_view(&f)))
}

async fn list_violations(State(d): D, Query(q): Query<ListQuery>) -> ApiResult {
    if q.status.as_deref().is_some_and(|s| s != "open") {
        return Err(ApiError::bad(
            "status must be open (violations close when a re-scan, triage or sweep clears them)",
        ));
    }
    let kind: Option<crate::store::ViolationKind> = parse("kind", &q.kind)?;
    let min: Option<crate::store::Severity> = parse("severity", &q.severity)?;
    let mut v = open_violations(&d).await?;
    v.retain(|x| {
        kind.is_none_or(|k| x.kind == k)
            && min.is_none_or(|m| x.severity >= m)
            && match q.dataset.as_deref() {
                None => true,
                Some(UNDECLARED) => x.dataset.is_none(),
                Some(n) => x.dataset.as_deref() == Some(n),
            }
    });
    v.truncate(q.limit.unwrap_or(500).clamp(1, 10_000) as usize);
    Ok(Json(json!({"items": v})))
}

async fn dataset_views(d: &Daemon) -> Result<Vec<Value>, ApiError> {
    let found = d.store.dataset_counts(None).await?;
    let entry = |x: &crate::store::DatasetCount, declared: bool| json!({"category": x.category, "findings": x.findings, "child_findings": x.child_findings, "child_records": x.child_records, "declared": declared});
    let mut out = Vec::new();
    for ds in &d.config.datasets {
        let mut declared: Vec<String> = ds
            .categories
            .values()
            .flatten()
            .map(|c| c.as_str().to_string())
            .collect();
        declared.sort();
        declared.dedup();
        let f: Vec<Value> = found
            .iter()
            .filter(|x| x.dataset.as_deref() == Some(ds.name.as_str()))
            .map(|x| entry(x, declared.iter().any(|c| c == x.category.as_str())))
            .collect();
        out.push(json!({
            "name": ds.name, "source": crate::sweep::redact_url(&ds.source), "owner": ds.owner, "purpose": ds.purpose, "legal_basis": ds.legal_basis,
            "location": ds.location, "child_data": ds.child_data, "retention": ds.retention.as_ref().map(|r| r.to_string()),
            "disposal": format!("{:?}", ds.disposal).to_lowercase(), "encrypted": ds.encrypted,
            "declared_categories": declared, "found": f, "undeclared": false,
        }));
    }
    let und: Vec<Value> = found
        .iter()
        .filter(|x| x.dataset.is_none())
        .map(|x| entry(x, false))
        .collect();
    if !und.is_empty() {
        out.push(json!({"name": UNDECLARED, "undeclared": true, "declared_categories": [], "found": und}));
    }
    Ok(out)
}

async fn list_datasets(State(d): D) -> ApiResult {
    Ok(Json(json!({"items": dataset_views(&d).await?})))
}

async fn get_dataset(State(d): D, Path(name): Path<String>) -> ApiResult {
    dataset_views(&d)
        .await?
        .into_iter()
        .find(|v| v["name"] == name.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("dataset {name}")))
}

async fn list_plans(State(d): D, Query(q): Query<ListQuery>) -> ApiResult {
    let kind = match q.kind.as_deref() {
        None => None,
        Some("retention") => Some(PlanKind::Retention),
        Some("erasure") => Some(PlanKind::Erasure),
        Some("purge") => Some(PlanKind::Purge),
        Some(_) => return Err(ApiError::bad("kind must be retention, erasure or purge")),
    };
    Ok(Json(
        json!({"items": jobs::plan_views(&d, kind, q.status.as_deref()).await?}),
    ))
}

async fn get_plan(State(d): D, Path(id): Path<String>) -> ApiResult {
    Ok(Json(jobs::plan_view(&d, &id).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    #[serde(default)]
    datasets: Vec<String>,
}

async fn create_plans(
    State(d): D,
    Extension(c): Extension<Caller>,
    body: Option<Json<PlanBody>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Operator, "planning a sweep")?;
    let names = body.map(|b| b.0.datasets).unwrap_or_default();
    let ids = jobs::plan_sweeps(&d, &names, &c.name).await?;
    let mut plans = Vec::new();
    for id in ids {
        plans.push(jobs::plan_view(&d, &id).await?);
    }
    Ok((StatusCode::CREATED, Json(json!({"items": plans}))))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// Start executing right after approval.
    #[serde(default)]
    run: bool,
}

/// Approve as the caller; audits refusals of the four-eyes rule too.
async fn approve_as(d: &Daemon, c: &Caller, id: &str, action: &str) -> Result<(), ApiError> {
    match jobs::approve(d, id, &c.name).await {
        Ok(()) => {
            d.audit(
                &c.name,
                c.role.as_str(),
                action,
                &format!("plan/{id}"),
                "ok",
                None,
            );
            Ok(())
        }
        Err(JobError::SelfApproval) => {
            d.audit(
                &c.name,
                c.role.as_str(),
                action,
                &format!("plan/{id}"),
                "refused",
                Some("own plan".into()),
            );
            Err(JobError::SelfApproval.into())
        }
        Err(e) => Err(e.into()),
    }
}

async fn approve_plan(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<ApproveBody>>,
) -> ApiResult {
    need(&c, Role::Approver, "approving a sweep plan")?;
    let (plan, _) = d.sweeper.load_plan(&id).await?;
    if plan.kind == PlanKind::Erasure {
        return Err(ApiError::bad(
            "erasures are approved at /erasures/{id}/approve",
        ));
    }
    approve_as(&d, &c, &id, "sweep.approve").await?;
    if body.is_some_and(|b| b.0.run) {
        spawn_sweep(&d, &id, &c.name);
    }
    get_plan(State(d), Path(id)).await
}

async fn reject_plan(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    need(&c, Role::Approver, "rejecting a sweep plan")?;
    jobs::reject(&d, &id, &c.name).await?;
    d.audit(
        &c.name,
        c.role.as_str(),
        "sweep.reject",
        &format!("plan/{id}"),
        "ok",
        None,
    );
    get_plan(State(d), Path(id)).await
}

fn spawn_sweep(d: &Arc<Daemon>, id: &str, by: &str) {
    let d2 = d.clone();
    let (id, by) = (id.to_string(), by.to_string());
    tokio::spawn(async move {
        if let Err(e) = jobs::run_sweep(d2, &id, &by).await {
            tracing::error!(plan = %id, error = %e, "sweep failed");
        }
    });
}

async fn run_plan(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Operator, "running a sweep plan")?;
    let v = jobs::plan_view(&d, &id).await?;
    if v["kind"] == "erasure" {
        return Err(ApiError::bad("an erasure runs when it is approved"));
    }
    if !["approved", "stopped"].contains(&v["status"].as_str().unwrap_or("")) {
        return Err(ApiError::conflict(
            "not_approved",
            format!(
                "sweep plan {id} is {}; only approved plans run",
                v["status"]
            ),
        ));
    }
    jobs::check_sweep_free(&d, &id).await?;
    spawn_sweep(&d, &id, &c.name);
    Ok((StatusCode::ACCEPTED, Json(v)))
}

/// An erasure as the API shows it: its plan, with the records erased.
async fn erasure_view(d: &Daemon, id: &str) -> Result<Value, ApiError> {
    let mut v = jobs::plan_view(d, id).await?;
    if v["kind"] != "erasure" {
        return Err(ApiError::not_found(format!("erasure request {id}")));
    }
    v["erased_rows"] = v["done_rows"].clone();
    v["items"] = json!(v["items"].as_array().map(|a| a.len()).unwrap_or(0));
    Ok(v)
}

async fn list_erasures(State(d): D) -> ApiResult {
    let mut items = Vec::new();
    for p in d.sweeper.journal.plans(Some("erasure")).await? {
        items.push(erasure_view(&d, &p.id).await?);
    }
    Ok(Json(json!({"items": items})))
}

async fn get_erasure(State(d): D, Path(id): Path<String>) -> ApiResult {
    Ok(Json(erasure_view(&d, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureBody {
    /// The subject's key (e.g. a student ID). Only its keyed fingerprint is stored.
    subject: String,
    reason: String,
}

async fn create_erasure(
    State(d): D,
    Extension(c): Extension<Caller>,
    Json(b): Json<ErasureBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Operator, "requesting an erasure")?;
    if b.subject.trim().is_empty() || b.reason.trim().is_empty() {
        return Err(ApiError::bad("subject and reason are required"));
    }
    let id = jobs::request_erasure(&d, &b.subject, b.reason.trim(), &c.name).await?;
    d.audit(
        &c.name,
        c.role.as_str(),
        "erasure.request",
        &format!("erasure/{id}"),
        "ok",
        None,
    );
    Ok((StatusCode::CREATED, Json(erasure_view(&d, &id).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ErasureApproveBody {
    /// The subject again, when this daemon restarted since the request.
    #[serde(default)]
    subject: Option<String>,
}

async fn approve_erasure(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<ErasureApproveBody>>,
) -> ApiResult {
    need(&c, Role::Approver, "approving an erasure")?;
    let v = erasure_view(&d, &id).await?;
    if let Some(s) = body.and_then(|b| b.0.subject) {
        if Some(d.sweeper.fp.fingerprint(s.trim())).as_deref() != v["subject_fingerprint"].as_str()
        {
            return Err(ApiError::bad("subject does not match the erasure request"));
        }
        d.subjects
            .lock()
            .unwrap()
            .insert(id.clone(), s.trim().to_string());
    }
    // Approving runs it: refuse before approving when the subject is not at
    // hand (the daemon restarted since the request), so it stays approvable.
    if v["status"] == "planned" && !d.subjects.lock().unwrap().contains_key(&id) {
        return Err(ApiError::conflict(
            "subject_needed",
            "this daemon restarted since the request: approve again with the subject in the body",
        ));
    }
    approve_as(&d, &c, &id, "erasure.approve").await?;
    // Run detached so a client timeout or disconnect cannot cut it short.
    let d2 = d.clone();
    let (id2, who) = (id.clone(), c.clone());
    let task = tokio::spawn(async move {
        let r = jobs::run_sweep(d2.clone(), &id2, &who.name).await;
        let outcome = match &r {
            Ok(s) => s.clone(),
            Err(_) => "failed".to_string(),
        };
        d2.audit(
            &who.name,
            who.role.as_str(),
            "erasure.execute",
            &format!("erasure/{id2}"),
            &outcome,
            None,
        );
        r
    });
    task.await.map_err(|e| internal(&e))??;
    Ok(Json(erasure_view(&d, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    reason: String,
    /// Must be the sweeper's typed confirmation, `DELETE ALL CHILD DATA`.
    confirm: String,
}

async fn purge(
    State(d): D,
    Extension(c): Extension<Caller>,
    Json(b): Json<PurgeBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Admin, "planning a purge")?;
    if b.confirm != crate::sweep::PURGE_CONFIRMATION || b.reason.trim().is_empty() {
        return Err(ApiError::bad(format!(
            "a purge needs a reason and confirm = \"{}\"",
            crate::sweep::PURGE_CONFIRMATION
        )));
    }
    let id = jobs::plan_purge(&d, &c.name, b.reason.trim()).await?;
    d.audit(
        &c.name,
        c.role.as_str(),
        "purge.plan",
        &format!("plan/{id}"),
        "ok",
        None,
    );
    let mut v = jobs::plan_view(&d, &id).await?;
    v["note"] = json!("the purge plan needs approval by another approver before it runs");
    Ok((StatusCode::CREATED, Json(v)))
}

async fn list_reports(State(d): D) -> ApiResult {
    Ok(Json(json!({"items": jobs::list_reports(&d)})))
}

async fn create_report(
    State(d): D,
    Extension(c): Extension<Caller>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Operator, "creating a report")?;
    let (meta, _) = jobs::create_report(&d, &c.name).await?;
    d.audit(
        &c.name,
        c.role.as_str(),
        "report.create",
        &format!("report/{}", meta.id),
        "ok",
        Some(format!("run {}", meta.run_id)),
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(meta).unwrap()),
    ))
}

/// A report: JSON by default, `?format=md` or `?format=html` for the rendered document.
async fn get_report(
    State(d): D,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let (ext, ctype) = match q.format.as_deref() {
        None | Some("json") => ("json", "application/json"),
        Some("md") => ("md", "text/markdown; charset=utf-8"),
        Some("html") => ("html", "text/html; charset=utf-8"),
        Some(_) => return Err(ApiError::bad("format must be json, md or html")),
    };
    let body = jobs::read_report(&d, &id, ext)?;
    Ok(([(header::CONTENT_TYPE, ctype)], body).into_response())
}

/// The shared audit log (newest first), filtered by actor and action
/// prefix, with each row's place in the hash chain.
async fn list_audit(
    State(d): D,
    Extension(c): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    need(&c, Role::Approver, "reading the audit log")?;
    let per_page = q.per_page.unwrap_or(100).clamp(1, 1000);
    let page = q.page.unwrap_or(1).max(1);
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let chunk = d.store.audit_rows(after, 10_000).await?;
        let Some(last) = chunk.last() else { break };
        after = last.id;
        rows.extend(chunk.into_iter().filter(|r| {
            q.actor.as_deref().is_none_or(|a| r.actor == a)
                && q.action.as_deref().is_none_or(|a| r.action.starts_with(a))
        }));
    }
    let total = rows.len();
    rows.reverse();
    let items: Vec<Value> = rows
        .into_iter()
        .skip(((page - 1) * per_page) as usize)
        .take(per_page as usize)
        .map(|r| {
            let det: Value = serde_json::from_str(&r.details).unwrap_or(Value::Null);
            json!({
                "id": r.id, "at": r.at, "actor": r.actor, "action": r.action, "object": r.object,
                "role": det["role"], "outcome": det.get("outcome").cloned().unwrap_or(json!("ok")),
                "peer": det["peer"], "detail": det.get("detail").cloned().unwrap_or(det.clone()),
                "hash": r.hash, "prev_hash": r.prev_hash,
            })
        })
        .collect();
    Ok(Json(
        json!({"items": items, "total": total, "page": page, "per_page": per_page}),
    ))
}
