//! `Leases` on PostgreSQL (`worker_leases`), timed by the database's clock.

use std::time::Duration;

use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::relay::Leases;
use diesel::prelude::*;
use diesel::sql_types::{Interval, Text};
use diesel_async::RunQueryDsl;

use crate::error::{from_diesel, from_pool};
use crate::housekeeping::interval;
use crate::pool::PgPool;
use crate::schema::worker_leases as l;

/// Leases of the event-worker pods.
#[derive(Debug, Clone)]
pub struct PgLeases {
    pool: PgPool,
}

impl PgLeases {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl Leases for PgLeases {
    fn hold<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        period: Duration,
    ) -> PortFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            // A renewal keeps acquired_at; a takeover starts it again.
            let held = diesel::sql_query(
                "INSERT INTO worker_leases (name, holder, acquired_at, expires_at) \
                 VALUES ($1, $2, clock_timestamp(), clock_timestamp() + $3) \
                 ON CONFLICT (name) DO UPDATE SET expires_at = EXCLUDED.expires_at, \
                     acquired_at = CASE WHEN worker_leases.holder = EXCLUDED.holder \
                                        THEN worker_leases.acquired_at ELSE EXCLUDED.acquired_at END, \
                     holder = EXCLUDED.holder \
                 WHERE worker_leases.holder = EXCLUDED.holder OR worker_leases.expires_at <= clock_timestamp()",
            )
            .bind::<Text, _>(name)
            .bind::<Text, _>(holder)
            .bind::<Interval, _>(interval(period))
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
            Ok(held == 1)
        })
    }

    fn release<'a>(&'a self, name: &'a str, holder: &'a str) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            diesel::delete(l::table.filter(l::name.eq(name)).filter(l::holder.eq(holder)))
                .execute(&mut conn)
                .await
                .map_err(from_diesel)?;
            Ok(())
        })
    }

    fn live<'a>(&'a self, prefix: &'a str) -> PortFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            l::table
                .filter(l::name.like(format!(
                    "{}%",
                    prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
                )))
                .filter(l::expires_at.gt(diesel::dsl::now))
                .order(l::name.asc())
                .select((l::name, l::holder))
                .load(&mut conn)
                .await
                .map_err(from_diesel)
        })
    }
}
