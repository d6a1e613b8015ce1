//! `keygate serve`: the HTTP API (`keygate::admin::router`) and the console
//! (`keygate::console::router`, at `/console`) on `--listen`,
//! and with `--upstream` the authenticating reverse proxy on
//! `--proxy-listen`, both run by [`crate::listener`] with the bounds of `--header-timeout`,
//! `--idle-timeout` and `--max-connections`; with `--grpc-listen`, Envoy's
//! external authorization API over gRPC (`crate::grpc`). Rate limits are counted in
//! this process, or with `--redis-url` in Redis (connected at start: an
//! unreachable Redis stops the start), failing open unless
//! `--limits-fail-closed`. With `--audit-retention`, audit records older
//! than it are deleted in the background. Every flag and file is checked
//! before the bootstrap key is created. Stops gracefully on SIGINT/SIGTERM:
//! in-flight requests finish, usage is flushed, exit status 0.

use ipnet::IpNet;
use tokio::sync::watch;

use super::args::ServeArgs;
use super::database;
use crate::gateway::Rules;
use crate::keygate::Keygate;
use crate::store::ListQuery;

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

fn loopback() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

async fn bind(addr: &str, what: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

/// Runs the server until SIGINT/SIGTERM.
///
/// Everything that can be wrong is checked before the bootstrap key is
/// created (and printed, which burns it): the rules file, the trusted
/// proxies, the Redis of `--redis-url` (which must answer now), the
/// database and its pepper, the upstream URL, and both listen addresses
/// (bound here). A failure leaves an empty database empty; a Redis that
/// does not answer leaves no database at all.
pub(crate) async fn serve(database_url: &str, args: ServeArgs) -> Result<(), String> {
    let rules = match &args.rules {
        Some(path) => Rules::load(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => Rules::default(),
    };
    let forward_auth: crate::gateway::ForwardAuthMode = args
        .forward_auth
        .parse()
        .map_err(|e| format!("--forward-auth: {e}"))?;
    let trusted = if args.trusted_proxies.is_empty() {
        loopback()
    } else {
        args.trusted_proxies.clone()
    };
    let limits = args.limits();
    let github_keys = match &args.github_keys {
        Some(path) => Some(
            crate::secret_scanning::GithubKeys::load(path)
                .map_err(|e| format!("--github-keys {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let retention = super::audit::retention(args.audit_retention.as_deref())?;
    // Before the database: a Redis that does not answer stops the start
    // with nothing created.
    let limiter = match &args.redis_url {
        Some(url) => Some((super::redis::connect(url).await?, super::redis::redact(url))),
        None => None,
    };
    // Before the keygate: its verifier registers its figures with the
    // recorder installed when it is built.
    let metrics = super::metrics::install()?;
    let opened = database::open(database_url, database::Create::IfMissing)
        .await
        .map_err(|e| e.to_string())?;
    let mut builder = Keygate::builder(opened.store)
        .pepper(opened.pepper)
        .trusted_proxies(trusted)
        .audit_actor(super::audit::cli_actor())
        .limits_fail_closed(args.limits_fail_closed);
    match limiter {
        Some((limiter, shown)) => {
            builder = builder.limiter(limiter);
            tracing::info!(
                limiter = "redis",
                url = %shown,
                fail_closed = args.limits_fail_closed,
                "rate limits counted in Redis, shared by every instance on it"
            );
        }
        None => tracing::info!(
            limiter = "local",
            "rate limits counted in this process (no --redis-url{})",
            match args.limits_fail_closed {
                true => "; --limits-fail-closed has no effect",
                false => "",
            }
        ),
    }
    let keygate = builder.build().map_err(|e| e.to_string())?;
    let proxy = match &args.upstream {
        Some(upstream) => {
            let gateway = crate::gateway::Gateway::new(keygate.clone(), rules.clone());
            let proxy = crate::gateway::proxy::Proxy::new(gateway, upstream)
                .map_err(|e| format!("--upstream: {e}"))?;
            Some(proxy)
        }
        None => None,
    };
    // Bind first: a server that cannot listen must not print (and so burn)
    // the one-time bootstrap key.
    let api_listener = bind(&args.listen, "API").await?;
    let proxy_listener = match &proxy {
        Some(_) => Some(bind(&args.proxy_listen, "proxy").await?),
        None => None,
    };
    let grpc_listener = match &args.grpc_listen {
        Some(addr) => Some(bind(addr, "gRPC").await?),
        None => None,
    };
    let api_address = api_listener.local_addr().map_err(|e| e.to_string())?;
    bootstrap_if_empty(&keygate).await?;
    if let Some(retention) = retention {
        super::audit::spawn_retention(keygate.clone(), retention);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let proxy_task = match (proxy, proxy_listener) {
        (Some(proxy), Some(listener)) => Some(tokio::spawn(proxy.serve_with(
            listener,
            limits,
            stopped(stop_rx.clone()),
        ))),
        _ => None,
    };

    let gateway =
        crate::gateway::Gateway::new(keygate.clone(), rules).with_forward_auth(forward_auth);
    let grpc_task = grpc_listener.map(|listener| {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(address = %address, "gRPC (Envoy ext_authz) listening");
        }
        tokio::spawn(crate::grpc::serve_check(
            listener,
            gateway.clone(),
            limits,
            stopped(stop_rx.clone()),
        ))
    });
    let mut app = crate::admin::router_with_gateway(gateway)
        .merge(super::metrics::router(
            metrics,
            &keygate,
            args.metrics_public,
        )?)
        // The console: open routes (the page holds no data; its script
        // sends the pasted key to /v1/*), with request ids like the API's.
        .merge(
            crate::console::router().layer(crate::gateway::RequestIdLayer::new(
                keygate.trusted_proxies().to_vec(),
            )),
        );
    if let Some(keys) = github_keys {
        tracing::info!(
            path = crate::secret_scanning::PATH,
            "GitHub secret scanning endpoint mounted"
        );
        let request_ids = crate::gateway::RequestIdLayer::new(keygate.trusted_proxies().to_vec());
        app = app.merge(crate::secret_scanning::router(keygate.clone(), keys).layer(request_ids));
    }
    tracing::info!(address = %api_address, "API listening");
    let api = crate::listener::serve_router(api_listener, limits, app, stopped(stop_rx));
    let signal = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    };
    tokio::spawn(signal);
    api.await.map_err(|e| format!("API server failed: {e}"))?;
    if let Some(task) = proxy_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("proxy failed: {e}")),
            Err(e) => return Err(format!("proxy task failed: {e}")),
        }
    }
    if let Some(task) = grpc_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("gRPC server failed: {e}")),
            Err(e) => return Err(format!("gRPC task failed: {e}")),
        }
    }
    let written = keygate.flush_usage().await;
    let returned = keygate.verifier().release_credits().await;
    tracing::info!(
        keys = written,
        credits_returned = returned,
        "usage flushed, unused credits returned; stopped"
    );
    Ok(())
}

/// On a database with no keys, creates the bootstrap admin key and prints
/// it once: the token alone on stdout, a reminder on stderr.
async fn bootstrap_if_empty(keygate: &Keygate) -> Result<(), String> {
    let any = keygate
        .keys()
        .list(&ListQuery {
            include_revoked: true,
            limit: 1,
            ..ListQuery::default()
        })
        .await
        .map_err(|e| format!("cannot read the database: {e}"))?;
    if !any.keys.is_empty() {
        return Ok(());
    }
    let created = super::output::bootstrap(keygate)
        .await
        .map_err(|e| format!("cannot create the bootstrap key: {e}"))?;
    super::output::note(
        "Created the bootstrap admin key (owner \"admin\", scope \"*:*\"). Store it now: it will not be shown again.",
    );
    if let Err(e) = super::output::out(created.token.expose()) {
        // The server still runs; the key can be revoked with the CLI.
        tracing::warn!(error = %e, "could not print the bootstrap key on stdout");
    }
    Ok(())
}
