//! `scheduler`: see the crate documentation of `lib.rs`.

use anyhow::Context;
use clap::Parser;
use coupon_runtime::settings::Settings;

/// Command line. Configuration comes from the environment (README, "Configuration").
#[derive(Debug, Parser)]
#[command(
    name = "scheduler",
    version,
    about = "Coupon service scheduler: reservation timeouts, expiry and daily statistics on their cron"
)]
struct Cli {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Cli::parse();
    let settings = Settings::load().context("configuration")?;
    coupon_runtime::telemetry::init(&settings.log);
    scheduler::App::build(settings)?.run_until_stopped().await
}
