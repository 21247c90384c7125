//! Static files, compiled into the binary so a deployment is one file.

use actix_web::{HttpResponse, web};

use super::error::ApiError;

const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/app.css"),
    ),
    (
        "widget.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/widget.css"),
    ),
    (
        "widget.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/widget.js"),
    ),
    (
        "workspace.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/workspace.js"),
    ),
    (
        "vendor/htmx-2.0.11.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/vendor/htmx-2.0.11.min.js"),
    ),
    (
        "vendor/htmx-ext-sse-2.2.4.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/vendor/htmx-ext-sse-2.2.4.min.js"),
    ),
];

/// Registers `/static/...`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{path:.*}", web::get().to(asset));
}

async fn asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == path.as_str())
        .ok_or(ApiError::NotFound("file"))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(*body))
}
