//! Builds the application from [`Settings`] and runs it until told to stop.
//!
//! Shutdown is a value passed in (`run_until(shutdown)`), so `serve` hands it the
//! SIGTERM/SIGINT future and tests hand it a oneshot of their own.

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::api::{self, auth::Auth, AppState};
use crate::claims::RedisStore;
use crate::config::{ClaimStrategy, Settings};
use crate::db;
use crate::reconciler::{Reconciler, ReconcilerConfig};

/// A gateway bound to its port, ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    reconciler: Option<Reconciler>,
}

impl Application {
    /// Connects to Redis and MySQL (creating the database and applying migrations),
    /// and binds the HTTP address (port 0 picks a free one).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        if settings.claim_strategy == ClaimStrategy::Mysql {
            anyhow::bail!(
                "SEATGATE_CLAIM_STRATEGY=mysql (the synchronous baseline) is not built yet; use redis"
            );
        }
        let redis = RedisStore::connect(
            &settings.redis_url,
            &settings.redis_namespace,
            settings.redis_timeout,
        )
        .await
        .context("cannot connect to Redis at SEATGATE_REDIS_URL")?;
        let pool =
            db::connect_and_migrate(&settings.database_url, settings.db_max_connections).await?;
        let reconciler = if settings.reconciler {
            Some(Reconciler::new(
                redis.clone(),
                &settings.redis_url,
                pool.clone(),
                ReconcilerConfig::default(),
            )?)
        } else {
            None
        };
        let listener = TcpListener::bind(&settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
        let state = AppState {
            redis,
            db: pool,
            auth: Arc::new(Auth::new(&settings.admin_token, &settings.jwt_secret)),
            claim_permits: Arc::new(Semaphore::new(settings.max_inflight_claims)),
            strategy: settings.claim_strategy,
        };
        Ok(Self {
            listener,
            state,
            reconciler,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state (tests use its handles to look inside).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets requests in flight
    /// finish, and lets the reconciler finish its current step.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let (stop_tx, stop_rx) = watch::channel(false);
        let reconciler = self.reconciler.map(|r| {
            let mut stop = stop_rx.clone();
            tokio::spawn(r.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            }))
        });
        tracing::info!(%addr, reconciler = reconciler.is_some(), "seatgate listening");
        let app = api::router(self.state);
        let mut stop = stop_rx.clone();
        let server = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        let server = tokio::spawn(async move { server.await });
        shutdown.await;
        tracing::info!("shutting down: draining requests, finishing the reconciler step");
        let _ = stop_tx.send(true);
        server.await.context("server task")?.context("server")?;
        if let Some(r) = reconciler {
            r.await.context("reconciler task")?;
        }
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
