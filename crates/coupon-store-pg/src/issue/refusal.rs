//! Why the policy refused a coupon, read as it is now.

use chrono::{DateTime, Utc};
use coupon_domain::issue::IssueError;
use coupon_domain::policy::Policy;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::Abort;
use crate::row::PolicyRow;

/// Why the counter update refused: the policy as it is now, judged by the domain's rule.
pub(crate) async fn refusal(
    conn: &mut AsyncPgConnection,
    channel: coupon_domain::policy::DistributionType,
    at: DateTime<Utc>,
    snapshot: &Policy,
) -> Result<IssueError, Abort<IssueError>> {
    use crate::schema::coupon_policies::dsl as p;
    let row: Option<PolicyRow> = p::coupon_policies
        .find(snapshot.id.get())
        .select(PolicyRow::as_select())
        .first(conn)
        .await
        .optional()?;
    let Some(row) = row else {
        return Ok(IssueError::PolicyNotFound);
    };
    let current = Policy::try_from(row).map_err(|e| Abort::Refused(e.into()))?;
    Ok(current.why_counter_refused(channel, at).into())
}
