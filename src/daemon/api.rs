//! The HTTP API under `/api/v1` (documented in `openapi.json`, served at
//! `/api/v1/openapi.json`), the dashboard at `/`, `/metrics`, `/healthz`
//! and `/readyz`. Every API request carries a bearer token; every access is
//! written to the audit log (CAC Order No. 4 Art. 15; MIIT Order No. 24
//! Art. 13(6)). Errors are `{"error": {"code": "...", "message": "..."}}`
//! with stable codes. Responses carry masked values and fingerprints only.

use crate::config::daemon::Role;
use crate::daemon::auth::Caller;
use crate::daemon::jobs::{self, JobError};
use crate::daemon::state::{FindingFilter, StateError};
use crate::daemon::Daemon;
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

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        tracing::error!(error = %e, "state database error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "state database error (see the daemon log)",
        )
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Busy(what) => {
                ApiError::conflict("busy", format!("a {what} is already running"))
            }
            JobError::Invalid(m) => ApiError::bad(m),
            JobError::State(s) => s.into(),
            JobError::Store(_) | JobError::Classify(_) => {
                tracing::error!(error = %e, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the findings store failed; see the daemon log",
                )
            }
            JobError::Unit { .. } => {
                tracing::error!(error = %e, "job error");
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "source_error",
                    e.to_string(),
                )
            }
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
        d.audit("-", "-", &action, &path, "401", None);
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
        d.audit("-", "-", &action, &path, "401", None);
        return error_body(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the bearer token is not valid",
        );
    };
    req.extensions_mut().insert(caller.clone());
    let resp = next.run(req).await;
    if resp.status() == StatusCode::FORBIDDEN {
        d.metrics.inc(
            "childguard_auth_failures_total",
            &[("code", "forbidden")],
            1.0,
        );
    }
    d.audit(
        &caller.name,
        caller.role.as_str(),
        &action,
        &path,
        resp.status().as_str(),
        None,
    );
    resp
}

async fn readyz(State(d): D) -> Response {
    if d.ready.load(Ordering::SeqCst) && !*d.shutdown.borrow() && d.state.ping().await {
        Json(json!({"status": "ready"})).into_response()
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

async fn overview_uncached(d: &Daemon) -> Result<Value, ApiError> {
    let s = &d.state;
    let last = s.runs(1).await?.into_iter().next();
    let by_kind = sqlx::query_as::<_, (String, i64)>(
        "SELECT kind, COUNT(*) FROM violations WHERE status='open' GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&s.pool)
    .await
    .map_err(|source| StateError::Query {
        context: "violations by kind",
        source,
    })?;
    Ok(json!({
        "child_pi": s.child_by_dataset_category().await?,
        "findings_total": s.scalar("SELECT COUNT(*) FROM findings").await?,
        "findings_open": s.scalar("SELECT COUNT(*) FROM findings WHERE status='open'").await?,
        "child_findings_open": s.scalar("SELECT COUNT(*) FROM findings WHERE status='open' AND child=1").await?,
        "open_violations": s.scalar("SELECT COUNT(*) FROM violations WHERE status='open'").await?,
        "open_violations_by_kind": by_kind.into_iter().map(|(k, n)| json!({"kind": k, "count": n})).collect::<Vec<_>>(),
        "retention_overdue": {
            "datasets": s.scalar("SELECT COUNT(*) FROM violations WHERE status='open' AND kind='retention_overdue'").await?,
            "records": s.scalar("SELECT COALESCE(SUM(planned_rows - done_rows),0) FROM sweep_plans WHERE kind='retention' AND status IN ('pending','approved','running','interrupted')").await?,
        },
        "pending_approvals": {
            "sweep_plans": s.scalar("SELECT COUNT(*) FROM sweep_plans WHERE status='pending'").await?,
            "erasures": s.scalar("SELECT COUNT(*) FROM erasure_requests WHERE status='pending'").await?,
        },
        "last_run": last,
    }))
}

async fn trend(State(d): D) -> ApiResult {
    let rows = sqlx::query_as::<_, (i64, String, String, i64, i64, i64)>(
        "SELECT id, started_at, status, findings, child_findings, violations FROM runs WHERE kind='scan' AND status != 'running' ORDER BY id DESC LIMIT 60",
    )
    .fetch_all(&d.state.pool)
    .await
    .map_err(|source| StateError::Query { context: "trend", source })?;
    let mut pts: Vec<Value> = rows
        .into_iter()
        .map(|(id, at, st, f, c, v)| json!({"run_id": id, "started_at": at, "status": st, "findings": f, "child_findings": c, "violations": v}))
        .collect();
    pts.reverse();
    Ok(Json(json!({"points": pts})))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    limit: Option<i64>,
    status: Option<String>,
    dataset: Option<String>,
    kind: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
    actor: Option<String>,
    action: Option<String>,
}

async fn list_runs(State(d): D, Query(q): Query<ListQuery>) -> ApiResult {
    Ok(Json(
        json!({"items": d.state.runs(q.limit.unwrap_or(50).clamp(1, 1000)).await?}),
    ))
}

async fn get_run(State(d): D, Path(id): Path<i64>) -> ApiResult {
    let r = d
        .state
        .run(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {id}")))?;
    Ok(Json(serde_json::to_value(r).unwrap()))
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

async fn list_findings(State(d): D, Query(f): Query<FindingFilter>) -> ApiResult {
    if let Some(c) = &f.category {
        c.parse::<crate::finding::Category>()
            .map_err(ApiError::bad)?;
    }
    if let Some(ch) = &f.child {
        if !["true", "false", "unknown"].contains(&ch.as_str()) {
            return Err(ApiError::bad("child must be true, false or unknown"));
        }
    }
    Ok(Json(
        serde_json::to_value(d.state.findings(&f).await?).unwrap(),
    ))
}

async fn get_finding(State(d): D, Path(id): Path<String>) -> ApiResult {
    let f = d
        .state
        .finding(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("finding {id}")))?;
    Ok(Json(serde_json::to_value(f).unwrap()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriageBody {
    status: String,
    #[serde(default)]
    note: Option<String>,
}

const TRIAGE: [&str; 4] = ["open", "confirmed", "false_positive", "accepted_risk"];

async fn triage(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<TriageBody>,
) -> ApiResult {
    need(&c, Role::Operator, "triaging a finding")?;
    if !TRIAGE.contains(&b.status.as_str()) {
        return Err(ApiError::bad(format!(
            "status must be one of {}",
            TRIAGE.join(", ")
        )));
    }
    if b.note.as_ref().is_some_and(|n| n.len() > 2000) {
        return Err(ApiError::bad("note is longer than 2000 bytes"));
    }
    if !d
        .state
        .triage(&id, &b.status, b.note.as_deref(), &c.name)
        .await?
    {
        return Err(ApiError::not_found(format!("finding {id}")));
    }
    // The shared store keeps triage across re-scans and audits it in its chain.
    if let Ok(status) = b.status.parse::<crate::store::TriageStatus>() {
        match d
            .store
            .triage(&id, status, b.note.as_deref(), &c.name)
            .await
        {
            Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => {}
            Err(e) => tracing::error!(finding = %id, error = %e, "cannot store triage"),
        }
    }
    d.audit(
        &c.name,
        c.role.as_str(),
        "finding.triage",
        &format!("finding/{id}"),
        "ok",
        Some(b.status.clone()),
    );
    get_finding(State(d), Path(id)).await
}

async fn list_violations(State(d): D, Query(q): Query<ListQuery>) -> ApiResult {
    let v = d
        .state
        .violations(
            q.status.as_deref(),
            q.dataset.as_deref(),
            q.kind.as_deref(),
            q.limit.unwrap_or(500).clamp(1, 10_000),
        )
        .await?;
    Ok(Json(json!({"items": v})))
}

async fn dataset_views(d: &Daemon) -> Result<Vec<Value>, ApiError> {
    let found = d.state.found_categories().await?;
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
            .filter(|x| x.0.as_deref() == Some(ds.name.as_str()))
            .map(|x| json!({"category": x.1, "findings": x.2, "child_findings": x.3, "declared": declared.contains(&x.1)}))
            .collect();
        out.push(json!({
            "name": ds.name, "source": ds.source, "owner": ds.owner, "purpose": ds.purpose, "legal_basis": ds.legal_basis,
            "location": ds.location, "child_data": ds.child_data, "retention": ds.retention.as_ref().map(|r| r.to_string()),
            "disposal": format!("{:?}", ds.disposal).to_lowercase(), "encrypted": ds.encrypted,
            "declared_categories": declared, "found": f, "undeclared": false,
        }));
    }
    let und: Vec<Value> = found
        .iter()
        .filter(|x| x.0.is_none())
        .map(
            |x| json!({"category": x.1, "findings": x.2, "child_findings": x.3, "declared": false}),
        )
        .collect();
    if !und.is_empty() {
        out.push(json!({"name": "(undeclared)", "undeclared": true, "declared_categories": [], "found": und}));
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
    Ok(Json(
        json!({"items": d.state.plans(q.status.as_deref()).await?}),
    ))
}

async fn get_plan(State(d): D, Path(id): Path<i64>) -> ApiResult {
    let p = d
        .state
        .plan(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("sweep plan {id}")))?;
    Ok(Json(serde_json::to_value(p).unwrap()))
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
    let ids = jobs::plan_sweeps(&d, &names, false, &c.name).await?;
    let mut plans = Vec::new();
    for id in ids {
        plans.extend(d.state.plan(id).await?);
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

async fn approve_plan(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
    body: Option<Json<ApproveBody>>,
) -> ApiResult {
    need(&c, Role::Approver, "approving a sweep plan")?;
    let p = d
        .state
        .plan(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("sweep plan {id}")))?;
    if p.created_by == c.name {
        d.audit(
            &c.name,
            c.role.as_str(),
            "sweep.approve",
            &format!("plan/{id}"),
            "refused",
            Some("own plan".into()),
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "self_approval",
            "a plan must be approved by someone other than its author",
        ));
    }
    if !d
        .state
        .plan_transition(id, &["pending"], "approved", Some(&c.name))
        .await?
    {
        return Err(ApiError::conflict(
            "invalid_state",
            format!("sweep plan {id} is {}, not pending", p.status),
        ));
    }
    d.audit(
        &c.name,
        c.role.as_str(),
        "sweep.approve",
        &format!("plan/{id}"),
        "ok",
        Some(format!("dataset {}", p.dataset)),
    );
    if body.is_some_and(|b| b.0.run) {
        spawn_plan(&d, id, &c.name);
    }
    get_plan(State(d), Path(id)).await
}

async fn reject_plan(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult {
    need(&c, Role::Approver, "rejecting a sweep plan")?;
    let p = d
        .state
        .plan(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("sweep plan {id}")))?;
    if !d
        .state
        .plan_transition(id, &["pending", "approved"], "rejected", Some(&c.name))
        .await?
    {
        return Err(ApiError::conflict(
            "invalid_state",
            format!("sweep plan {id} is {}", p.status),
        ));
    }
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

fn spawn_plan(d: &Arc<Daemon>, id: i64, by: &str) {
    let d2 = d.clone();
    let by = by.to_string();
    tokio::spawn(async move {
        if let Err(e) = jobs::run_plan(d2.clone(), id, &by).await {
            tracing::error!(plan = id, error = %e, "sweep failed");
            let _ = d2
                .state
                .plan_finish(id, "failed", -1, Some(&e.to_string()))
                .await;
            d2.metrics
                .inc("childguard_sweeps_total", &[("outcome", "failed")], 1.0);
        }
    });
}

async fn run_plan(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Operator, "running a sweep plan")?;
    let p = d
        .state
        .plan(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("sweep plan {id}")))?;
    if !["approved", "interrupted"].contains(&p.status.as_str()) {
        return Err(ApiError::conflict(
            "not_approved",
            format!("sweep plan {id} is {}; only approved plans run", p.status),
        ));
    }
    spawn_plan(&d, id, &c.name);
    Ok((StatusCode::ACCEPTED, Json(serde_json::to_value(p).unwrap())))
}

async fn list_erasures(State(d): D) -> ApiResult {
    Ok(Json(json!({"items": d.state.erasures().await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureBody {
    /// The subject's identifier (e.g. a student ID). Fingerprinted at once; never stored.
    subject: String,
    reason: String,
}

async fn create_erasure(
    State(d): D,
    Extension(c): Extension<Caller>,
    Json(b): Json<ErasureBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Operator, "requesting an erasure")?;
    let norm = jobs::normalize_subject(&b.subject);
    if norm.is_empty() || b.reason.trim().is_empty() {
        return Err(ApiError::bad("subject and reason are required"));
    }
    let fp = d.engine.fingerprinter().fingerprint(&norm);
    let matches: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM findings WHERE fingerprint = ?")
        .bind(&fp)
        .fetch_one(&d.state.pool)
        .await
        .map_err(|source| StateError::Query {
            context: "erasure matches",
            source,
        })?;
    let id = d
        .state
        .create_erasure(&fp, b.reason.trim(), matches, &c.name)
        .await?;
    d.audit(
        &c.name,
        c.role.as_str(),
        "erasure.request",
        &format!("erasure/{id}"),
        "ok",
        Some(format!("fingerprint {}", &fp[..16])),
    );
    let e = d.state.erasure(id).await?;
    Ok((StatusCode::CREATED, Json(serde_json::to_value(e).unwrap())))
}

async fn approve_erasure(
    State(d): D,
    Extension(c): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult {
    need(&c, Role::Approver, "approving an erasure")?;
    let e = d
        .state
        .erasure(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("erasure request {id}")))?;
    if e.created_by == c.name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "self_approval",
            "an erasure must be approved by someone other than its requester",
        ));
    }
    // Claim it atomically: two approvers clicking at once execute it once.
    if !d.state.claim_erasure(id, &c.name).await? {
        return Err(ApiError::conflict(
            "invalid_state",
            format!("erasure request {id} is {}", e.status),
        ));
    }
    // Run detached so a client timeout or disconnect cannot cut it short.
    let d2 = d.clone();
    let who = c.clone();
    let task = tokio::spawn(async move {
        let (status, n, msg) = match jobs::erase(&d2, &e.subject_fingerprint).await {
            Ok(n) => ("done", n, None),
            Err(err) => ("failed", 0, Some(err.to_string())),
        };
        d2.state
            .finish_erasure(id, &who.name, status, n, msg.as_deref())
            .await?;
        d2.audit(
            &who.name,
            who.role.as_str(),
            "erasure.execute",
            &format!("erasure/{id}"),
            status,
            Some(format!("{n} records erased")),
        );
        Ok::<_, StateError>(())
    });
    task.await.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    })??;
    Ok(Json(
        serde_json::to_value(d.state.erasure(id).await?).unwrap(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    reason: String,
    /// Must be the literal `purge all children's personal information`.
    confirm: String,
}

const PURGE_CONFIRM: &str = "purge all children's personal information";

async fn purge(
    State(d): D,
    Extension(c): Extension<Caller>,
    Json(b): Json<PurgeBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Admin, "planning a purge")?;
    if b.confirm != PURGE_CONFIRM || b.reason.trim().is_empty() {
        return Err(ApiError::bad(format!(
            "a purge needs a reason and confirm = \"{PURGE_CONFIRM}\""
        )));
    }
    let ids = jobs::plan_sweeps(&d, &[], true, &c.name).await?;
    d.audit(
        &c.name,
        c.role.as_str(),
        "purge.plan",
        "purge",
        "ok",
        Some(format!("{} plans; reason: {}", ids.len(), b.reason.trim())),
    );
    let mut plans = Vec::new();
    for id in ids {
        plans.extend(d.state.plan(id).await?);
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"items": plans, "note": "each purge plan needs approval by another approver"})),
    ))
}

async fn list_reports(State(d): D) -> ApiResult {
    Ok(Json(json!({"items": d.state.reports().await?})))
}

async fn create_report(
    State(d): D,
    Extension(c): Extension<Caller>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&c, Role::Operator, "creating a report")?;
    let body = jobs::build_report(&d, &[]).await?;
    let id = d.state.create_report(&c.name, &body).await?;
    d.audit(
        &c.name,
        c.role.as_str(),
        "report.create",
        &format!("report/{id}"),
        "ok",
        None,
    );
    Ok((StatusCode::CREATED, Json(json!({"id": id, "report": body}))))
}

async fn get_report(State(d): D, Path(id): Path<i64>) -> ApiResult {
    d.state
        .report(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("report {id}")))
}

async fn list_audit(
    State(d): D,
    Extension(c): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    need(&c, Role::Approver, "reading the audit log")?;
    let p = d
        .state
        .audit(
            q.page.unwrap_or(1),
            q.per_page.unwrap_or(100),
            q.actor.as_deref(),
            q.action.as_deref(),
        )
        .await?;
    Ok(Json(serde_json::to_value(p).unwrap()))
}
