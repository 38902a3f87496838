//! `seatgate token --user U [--ttl S]`: prints a user JWT for local use.

use anyhow::Context;
use clap::Args;

use crate::api::auth::sign_user_token;
use crate::config::Secret;
use crate::domain::is_valid_user_id;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (the token's `sub`), 1 to 128 characters.
    #[arg(long)]
    pub user: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub(crate) ttl: u64,
    /// The HS256 secret.
    #[arg(long, env = "SEATGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let secret = args
        .jwt_secret
        .filter(|s| !s.is_empty())
        .context("SEATGATE_JWT_SECRET is not set")?;
    anyhow::ensure!(
        is_valid_user_id(&args.user),
        "--user must be 1 to 128 characters"
    );
    println!(
        "{}",
        sign_user_token(&Secret::new(secret), &args.user, args.ttl)
    );
    Ok(())
}
