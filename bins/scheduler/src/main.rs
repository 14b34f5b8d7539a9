//! `scheduler`: see the crate documentation of `lib.rs`.

use anyhow::Context;
use coupon_runtime::settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("configuration")?;
    coupon_runtime::telemetry::init(&settings.log);
    scheduler::App::build(settings)?.run_until_stopped().await
}
