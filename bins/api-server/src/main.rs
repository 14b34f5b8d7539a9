//! `api-server`: the HTTP API (`api-server`), or the schema migration step (`api-server migrate`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api_server::Cli::parse().run().await
}
