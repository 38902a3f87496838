//! Builds the application from [`Settings`] and runs it until told to stop.
//!
//! Shutdown is a value passed in (`run_until(shutdown)`), so `serve` hands it the
//! SIGTERM/SIGINT future and tests hand it a oneshot of their own.

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

use crate::api::{self, auth::Auth, AppState, Shared};
use crate::backoff::backoff;
use crate::claims::posture::{self, PostureError, PostureGate};
use crate::claims::replication::GroupCommit;
use crate::claims::settled::SettledFeed;
use crate::claims::{RedisStore, UserRate};
use crate::config::{ClaimStrategy, Settings};
use crate::db;
use crate::live::{snapshot::SeatMaps, source::Source, LiveHub};
use crate::ops::fence::Keeper;
use crate::reconciler::{Reconciler, ReconcilerConfig};
use crate::server::{self, HttpListener, ServerLimits};
use crate::strategy::{MysqlStrategy, RedisStrategy, Strategy};

/// How long the start waits for its first fence check (see `Application::build`).
const FIRST_CHECK_WAIT: Duration = Duration::from_secs(2);

/// A gateway bound to its port, ready to run.
pub struct Application {
    listener: HttpListener,
    limits: ServerLimits,
    state: AppState,
    reconciler: Option<Reconciler>,
    keeper: Keeper,
    /// The database URL when migrations could not run at build time; `run_until`
    /// retries them in the background and starts the reconciler only after.
    pending_db_prepare: Option<String>,
    /// Set to true once the migrations are applied (read by /readyz and the reconciler).
    db_ready: watch::Sender<bool>,
}

impl Application {
    /// Connects to Redis and MySQL (creating the database and applying migrations),
    /// and binds the HTTP address (port 0 picks a free one). A store that is down does
    /// not stop the build: requests that need it get 503 until it answers, and the
    /// migrations (then the reconciler) wait for MySQL in the background.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.check_secrets().map_err(anyhow::Error::msg)?;
        // The metrics recorder, before anything records (once per process).
        crate::telemetry::init_metrics();
        if settings.claim_strategy == ClaimStrategy::Mysql {
            tracing::info!("claim strategy: mysql (the synchronous baseline)");
        }
        // Neither store has to be up for the gateway to start: it answers 503 (and
        // /readyz says which is down) until they are, and recovers by itself.
        let redis = RedisStore::connect_lazy(
            &settings.redis_url,
            &settings.redis_namespace,
            settings.redis_timeout,
        )
        .context("invalid SEATGATE_REDIS_URL")?
        .fenced()
        .with_user_rate(UserRate::new(settings.user_rate, settings.user_burst));
        let redis_up = match redis.ping().await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "Redis does not answer yet; serving 503 until it does");
                false
            }
        };
        // Refuse an evicting Redis now if it answers; otherwise claims wait for the
        // check until it does (posture).
        let posture_gate = if redis_up {
            match posture::check_and_log(&redis, &settings.durability).await {
                Ok(_) => None,
                Err(PostureError::Refused(why)) => anyhow::bail!(why),
                Err(PostureError::Redis(err)) => {
                    tracing::warn!(error = %err, "cannot read Redis's posture yet; claims wait for it");
                    Some(Arc::new(PostureGate::new(
                        redis.clone(),
                        settings.durability,
                    )))
                }
            }
        } else {
            Some(Arc::new(PostureGate::new(
                redis.clone(),
                settings.durability,
            )))
        };
        let pool = db::lazy_pool(&settings.database_url, settings.db_max_connections)?;
        let db_ready = match db::prepare(&settings.database_url, &pool).await {
            Ok(()) => None,
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "MySQL is not ready yet; retrying in the background");
                Some(settings.database_url.clone())
            }
        };
        // One namespace, one database: refuse a namespace another database owns.
        if redis_up && db_ready.is_none() {
            crate::deployment::claim_namespace(&redis, &pool, &settings.database_url).await?;
        }
        // Claims wait for Redis to be checked against MySQL (and rebuilt from it if it
        // lost writes). A first check here lets a gateway that starts on a sound Redis
        // take claims from its first request; a rebuild of many events that takes longer
        // than FIRST_CHECK_WAIT goes on in the background (claims answer 503 until it is
        // done) rather than holding the start. The keeper keeps it up afterwards.
        let keeper = Keeper::new(redis.clone(), pool.clone());
        if redis_up && db_ready.is_none() {
            let mut first = Keeper::new(redis.clone(), pool.clone());
            let check = tokio::spawn(async move { first.check().await });
            match tokio::time::timeout(FIRST_CHECK_WAIT, check).await {
                Ok(Ok(Ok(_))) | Ok(Err(_)) => {}
                Ok(Ok(Err(err))) => {
                    tracing::warn!(error = %err, "Redis could not be checked against MySQL yet; claims wait until it is");
                }
                Err(_) => {
                    tracing::info!("Redis is being rebuilt from MySQL in the background; claims wait until it is");
                }
            }
        }
        let reconciler = if settings.reconciler {
            Some(Reconciler::new(
                redis.clone(),
                pool.clone(),
                ReconcilerConfig {
                    claim_deadline: settings.claim_deadline,
                    ..ReconcilerConfig::default()
                },
            )?)
        } else {
            None
        };
        let (ready_tx, ready_rx) = watch::channel(db_ready.is_none());
        let listener = HttpListener::bind(&settings.http_addr, settings.server.listen_backlog)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
        let durability = settings.durability;
        if durability.min_replicas > 0 && durability.replication_timeout >= settings.redis_timeout {
            // The WAIT is a Redis call like any other: the call bound cuts it short.
            tracing::warn!(
                replication_timeout_ms = durability.replication_timeout.as_millis() as u64,
                redis_timeout_ms = settings.redis_timeout.as_millis() as u64,
                "SEATGATE_REDIS_REPLICATION_TIMEOUT_MS is not below SEATGATE_REDIS_TIMEOUT_MS: \
                 a claim waits for its replicas at most the Redis call timeout"
            );
        }
        let group_commit = (durability.min_replicas > 0).then(|| {
            GroupCommit::for_store(
                redis.clone(),
                durability.min_replicas,
                durability.replication_timeout,
            )
        });
        let strategy: Arc<dyn Strategy> = match settings.claim_strategy {
            ClaimStrategy::Redis => {
                let strategy = RedisStrategy::new(redis.clone())
                    .with_group_commit(group_commit.clone())
                    .with_posture_gate(posture_gate);
                Arc::new(strategy)
            }
            ClaimStrategy::Mysql => Arc::new(MysqlStrategy::new(pool.clone())),
        };
        let source = Source::new(strategy.clone());
        let seat_maps = SeatMaps::with_max_age(source.clone(), settings.seat_map_max_age);
        let live = LiveHub::new(
            source,
            settings.max_live_streams,
            settings.max_live_streams_per_client,
        );
        let state = AppState::new(Shared {
            live,
            seat_maps,
            redis,
            db: pool,
            auth: Arc::new(Auth::new(&settings.admin_token, &settings.jwt_secret)),
            db_ready: ready_rx,
            claim_permits: Arc::new(Semaphore::new(settings.max_inflight_claims)),
            max_inflight_claims: settings.max_inflight_claims,
            request_timeout: settings.request_timeout,
            settled: SettledFeed::start(&settings.redis_url, &settings.redis_namespace)
                .context("invalid SEATGATE_REDIS_URL")?,
            strategy,
            group_commit,
        });
        Ok(Self {
            listener,
            limits: settings.server,
            state,
            reconciler,
            keeper,
            pending_db_prepare: db_ready,
            db_ready: ready_tx,
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
        if let Some(url) = self.pending_db_prepare {
            // MySQL was not there at start: apply the migrations as soon as it is.
            let pool = self.state.db.clone();
            let ready = self.db_ready.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let prepared = async {
                    let mut attempt = 0;
                    while let Err(err) = db::prepare(&url, &pool).await {
                        attempt += 1;
                        tracing::warn!(error = %format!("{err:#}"), "MySQL still not ready");
                        tokio::time::sleep(backoff(attempt, Duration::from_secs(5))).await;
                    }
                    tracing::info!("MySQL ready; migrations applied");
                    ready.send_replace(true);
                };
                tokio::select! {
                    _ = prepared => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        }
        let reconciler = self.reconciler.map(|r| {
            once_ready(&self.db_ready, &stop_rx, |stopped| async move {
                r.run(stopped).await
            })
        });
        let keeper = once_ready(&self.db_ready, &stop_rx, |stopped| async move {
            self.keeper.run(stopped).await
        });
        tracing::info!(%addr, reconciler = reconciler.is_some(), "seatgate listening");
        let live = self.state.live.clone();
        let app = api::router(self.state);
        let mut stop = stop_rx.clone();
        let server = tokio::spawn(server::serve(self.listener, app, self.limits, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
        shutdown.await;
        tracing::info!("shutting down: draining requests, finishing the reconciler step");
        let _ = stop_tx.send(true);
        // Open live streams never end by themselves: end them, or draining would wait.
        live.close();
        server.await.context("server task")?;
        if let Some(r) = reconciler {
            r.await.context("reconciler task")?;
        }
        keeper.await.context("fence keeper task")?;
        Ok(())
    }
}

/// Spawns `task` once MySQL is ready (its migrations applied), unless the gateway stops
/// first. The task is handed a future that resolves when the gateway stops.
fn once_ready<F, Fut>(
    db_ready: &watch::Sender<bool>,
    stop: &watch::Receiver<bool>,
    task: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut ready = db_ready.subscribe();
    let mut stop = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = ready.wait_for(|r| *r) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        task(Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
        .await
    })
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
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
