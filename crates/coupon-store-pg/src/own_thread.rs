//! A thread whose single-threaded runtime runs nothing but the batch drivers given to it (the
//! issue batchers, the checkout lanes) and the I/O of their own connections.
//!
//! On an HTTP worker's loop, a batch's statements waited behind that worker's requests: each
//! commit wakes the hundred callers it answers, their next requests follow at once, and the
//! batch's next round trip queued behind all of them (2.5 ms of a 7-8 ms issue batch cycle,
//! measured on the first statement of each batch). On a thread of their own the drivers answer
//! within microseconds of PostgreSQL. Their connections come from a pool of their own
//! ([`PgPool::sibling`]), opened on this runtime: a connection's I/O is driven by the runtime that
//! opened it.
//!
//! [`PgPool::sibling`]: crate::pool::PgPool::sibling

use tokio::sync::oneshot;

pub(crate) struct OwnThread {
    runtime: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl OwnThread {
    /// Starts the thread `name`. It runs until the last holder drops it: each driver spawned on
    /// it holds it while it runs.
    pub(crate) fn start(name: &str) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(Self { runtime: handle, stop: Some(stop) })
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }
}

impl Drop for OwnThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
