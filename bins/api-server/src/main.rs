//! `api-server`: the HTTP API (`api-server`), or the schema migration step (`api-server migrate`).

use clap::Parser;

// glibc's malloc and free were a sixth of the server's CPU under first-come load: buffers and
// boxed futures above its per-thread cache size go through its shared bins. With mimalloc the
// server spends 34 µs of CPU per issue instead of 39 (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api_server::Cli::parse().run().await
}
