//! `GET /metrics` of `keygate serve`: the figures of
//! [`crate::telemetry`], recorded by `metrics-exporter-prometheus` and
//! rendered in the Prometheus text format on the API listener. The route
//! needs a key with `metrics:read` unless `--metrics-public`.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::gateway::RequestIdLayer;
use crate::keygate::Keygate;

/// The Prometheus text format's media type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds of `keygate_store_operation_seconds`: 100 µs to 5 s.
const STORE_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 5.0,
];

/// Installs the process's recorder. Must run before the [`Keygate`] is
/// built: the verifier registers its figures with the recorder it finds.
pub(crate) fn install() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("keygate_store_operation_seconds".into()),
            &STORE_BUCKETS,
        )
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))
}

/// The `/metrics` route: behind `keygate`'s layer requiring
/// `metrics:read`, unless `public`.
pub(crate) fn router(
    handle: PrometheusHandle,
    keygate: &Keygate,
    public: bool,
) -> Result<Router, String> {
    let upkeep = handle.clone();
    // Histograms are drained into their buckets on upkeep; run it where it
    // is read, and every few seconds so that idle ones do not grow.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let route = get(move || {
        let handle = handle.clone();
        async move { ([(CONTENT_TYPE, TEXT_FORMAT)], handle.render()).into_response() }
    });
    let router = Router::new().route("/metrics", route);
    let router = match public {
        true => router,
        false => router.route_layer(
            keygate
                .layer()
                .require("metrics:read")
                .map_err(|e| format!("metrics: {e}"))?,
        ),
    };
    // Outermost, like the API's: refusals carry an id too.
    Ok(router.layer(RequestIdLayer::new(keygate.trusted_proxies().to_vec())))
}
