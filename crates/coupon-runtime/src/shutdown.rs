//! The shutdown signal. Kubernetes sends SIGTERM, a developer presses Ctrl-C (SIGINT); either
//! starts a graceful drain: stop taking new work, finish what is in flight, exit 0.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT.
///
/// # Errors
/// When the signal handlers cannot be installed (an OS-level failure at start-up).
pub async fn signal_received() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
    Ok(name)
}

/// Resolves when a signal arrives or `cancel` is cancelled (tests stop a process this way), and
/// cancels `cancel` so every task watching it starts draining.
pub async fn wait(cancel: &tokio_util::sync::CancellationToken) {
    tokio::select! {
        received = signal_received() => {
            if let Err(e) = received {
                tracing::error!(error = %e, "cannot listen for signals; stopping");
            }
        }
        () = cancel.cancelled() => {}
    }
    cancel.cancel();
}
