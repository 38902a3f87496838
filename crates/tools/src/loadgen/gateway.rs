//! Where a drop sends its claims: a gateway this process starts (on a free port, with
//! the reconciler), or one already running at a URL.

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::stores::Stores;
use seatgate::claims::RedisStore;
use seatgate::cli::StoreArgs;
use seatgate::config::{ClaimStrategy, Secret, Settings};
use seatgate::startup::Application;

/// A gateway to drop on, with what the load generator needs to drive and check it.
pub struct Target {
    /// `http://host:port`.
    pub base: String,
    pub admin_token: String,
    pub jwt_secret: Secret,
    /// MySQL of the gateway, for the MySQL check (none: checks go through the API).
    pub database_url: Option<String>,
    /// Direct access to the gateway's Redis (in-process only).
    pub redis: Option<RedisStore>,
    /// The claim strategy, when known.
    pub strategy: Option<ClaimStrategy>,
    /// `in-process` or the URL, for the report.
    pub description: String,
}

impl Target {
    /// A gateway already running at `url`.
    pub fn external(
        url: &str,
        admin_token: &str,
        jwt_secret: &str,
        database_url: Option<String>,
    ) -> Self {
        Self {
            base: url.trim_end_matches('/').to_owned(),
            admin_token: admin_token.to_owned(),
            jwt_secret: Secret::new(jwt_secret),
            database_url,
            redis: None,
            strategy: None,
            description: url.trim_end_matches('/').to_owned(),
        }
    }
}

/// A gateway running in this process until [`stop`](Self::stop).
pub struct InProcessGateway {
    pub target: Target,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
    /// The run has a Redis namespace of its own (see `Stores::redis_namespace`),
    /// deleted with the event's keys at the end.
    own_namespace: bool,
}

impl InProcessGateway {
    /// Starts a gateway with fresh secrets on `stores`, using `store`'s namespace, Redis
    /// timeout and durability settings, with room for `concurrency` claims in flight (load shedding is
    /// not what a drop measures: the bound is well above the client's own).
    pub async fn start(
        stores: &Stores,
        store: &StoreArgs,
        strategy: ClaimStrategy,
        concurrency: u32,
    ) -> anyhow::Result<Self> {
        Self::start_at(stores, store, strategy, concurrency, "127.0.0.1:0").await
    }

    /// As `start`, listening on `http_addr` (port 0: a free one).
    pub async fn start_at(
        stores: &Stores,
        store: &StoreArgs,
        strategy: ClaimStrategy,
        concurrency: u32,
        http_addr: &str,
    ) -> anyhow::Result<Self> {
        let admin_token = Uuid::now_v7().to_string();
        let jwt_secret = Secret::new(Uuid::now_v7().to_string());
        let mut settings = Settings::local(&admin_token, jwt_secret.expose());
        settings.http_addr = http_addr.into();
        settings.redis_url = stores.redis_url.clone();
        settings.database_url = stores.database_url.clone();
        let namespace = stores.redis_namespace(&store.redis_namespace);
        settings.redis_namespace = namespace.to_owned();
        settings.redis_timeout = store.redis_timeout();
        settings.durability = store.durability();
        settings.max_inflight_claims = concurrency as usize * 4;
        settings.reconciler = true;
        settings.claim_strategy = strategy;

        let app = Application::build(settings)
            .await
            .context("cannot start the gateway")?;
        let addr = app.local_addr();
        let redis =
            RedisStore::connect(&stores.redis_url, namespace, store.redis_timeout()).await?;
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stop_rx.await;
        }));
        Ok(Self {
            target: Target {
                base: format!("http://{addr}"),
                admin_token,
                jwt_secret,
                database_url: Some(stores.database_url.clone()),
                redis: Some(redis),
                strategy: Some(strategy),
                description: "in-process".into(),
            },
            stop,
            task,
            own_namespace: stores.has_own_namespace(),
        })
    }

    /// Stops the gateway after a run whose result is `outcome`, and, when the run and
    /// the stop both succeeded and unless `keep`, deletes the events' Redis keys: a
    /// default drop leaves hundreds of thousands of idempotency records (24 h TTL) that
    /// a shared Redis is better off without. MySQL keeps its rows.
    pub async fn stop_after<T>(
        self,
        outcome: anyhow::Result<T>,
        event_ids: &[String],
        keep: bool,
    ) -> anyhow::Result<T> {
        let own_namespace = self.own_namespace;
        let (target, stopped) = self.stop().await;
        let report = outcome?;
        stopped?;
        if !keep {
            if let Some(redis) = &target.redis {
                for event_id in event_ids {
                    redis
                        .delete_event(event_id)
                        .await
                        .with_context(|| format!("cannot delete {event_id}'s Redis keys"))?;
                }
                if own_namespace {
                    // Its database goes with the private MySQL: nothing owns it any more.
                    let mut conn = redis.connection();
                    let _: i64 = redis::AsyncCommands::del(
                        &mut conn,
                        seatgate::claims::keys::namespace_owner(redis.namespace()),
                    )
                    .await
                    .context("cannot delete the run's Redis namespace")?;
                }
            }
        }
        Ok(report)
    }

    /// Stops the gateway (requests in flight finish) and reports how it ended. The
    /// target's Redis handle stays usable.
    pub async fn stop(self) -> (Target, anyhow::Result<()>) {
        let _ = self.stop.send(());
        let ended = match self.task.await {
            Ok(result) => result.context("the gateway failed"),
            Err(e) => Err(anyhow::Error::new(e).context("the gateway task failed")),
        };
        (self.target, ended)
    }
}
