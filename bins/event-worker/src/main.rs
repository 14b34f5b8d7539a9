//! `event-worker`: see the crate documentation of `lib.rs`.

use anyhow::Context;
use coupon_runtime::settings::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("configuration")?;
    coupon_runtime::telemetry::init(&settings.log);
    event_worker::App::build(settings)?.run_until_stopped().await
}
