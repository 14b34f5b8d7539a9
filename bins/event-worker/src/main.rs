//! `event-worker`: the Kafka worker (`event-worker`), or its DLQ tools (`event-worker dlq …`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    event_worker::Cli::parse().run().await
}
