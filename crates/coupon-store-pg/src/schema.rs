//! diesel table definitions, written to match `migrations/` (kept honest by the adapter tests,
//! which run every query against the migrated schema).

diesel::table! {
    coupon_policies (id) {
        id -> Int8,
        coupon_name -> Varchar,
        coupon_code -> Nullable<Varchar>,
        description -> Nullable<Varchar>,
        discount_type -> Varchar,
        discount_value -> Numeric,
        minimum_order_amount -> Nullable<Numeric>,
        max_discount_amount -> Nullable<Numeric>,
        distribution_type -> Varchar,
        max_issue_count -> Nullable<Int4>,
        current_issue_count -> Int4,
        max_issue_per_user -> Int4,
        valid_days -> Int4,
        valid_from -> Timestamptz,
        valid_until -> Timestamptz,
        is_active -> Bool,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    coupon_issues (id) {
        id -> Int8,
        policy_id -> Int8,
        user_id -> Int8,
        user_slot -> Int2,
        status -> Varchar,
        reservation_id -> Nullable<Varchar>,
        order_id -> Nullable<Varchar>,
        discount_amount -> Nullable<Numeric>,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        reserved_at -> Nullable<Timestamptz>,
        used_at -> Nullable<Timestamptz>,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        event_id -> Uuid,
        topic -> Varchar,
        event_key -> Varchar,
        event_type -> Varchar,
        payload -> Text,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    coupon_reservations (reservation_id) {
        reservation_id -> Varchar,
        coupon_id -> Int8,
        user_id -> Int8,
        order_id -> Nullable<Varchar>,
        order_amount -> Numeric,
        discount_amount -> Numeric,
        status -> Varchar,
        reserved_at -> Timestamptz,
        expires_at -> Timestamptz,
        payment_id -> Nullable<Varchar>,
        confirmed_at -> Nullable<Timestamptz>,
        late_confirmation -> Bool,
        cancelled_at -> Nullable<Timestamptz>,
        cancel_reason -> Nullable<Varchar>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    daily_statistics (stat_date) {
        stat_date -> Date,
        total_issued -> Int8,
        total_used -> Int8,
        total_reserved -> Int8,
        total_expired -> Int8,
        issue_by_hour -> Jsonb,
        usage_by_hour -> Jsonb,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    job_runs (id) {
        id -> Int8,
        job_name -> Varchar,
        runner -> Varchar,
        trigger -> Varchar,
        started_at -> Timestamptz,
        finished_at -> Timestamptz,
        affected -> Int8,
        outcome -> Varchar,
        error -> Nullable<Text>,
    }
}

diesel::joinable!(coupon_issues -> coupon_policies (policy_id));
diesel::joinable!(coupon_reservations -> coupon_issues (coupon_id));
diesel::allow_tables_to_appear_in_same_query!(
    coupon_policies,
    coupon_issues,
    coupon_reservations,
    daily_statistics,
    job_runs,
    outbox
);

diesel::table! {
    worker_leases (name) {
        name -> Varchar,
        holder -> Varchar,
        acquired_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    consumer_offsets (topic, partition) {
        topic -> Varchar,
        partition -> Int4,
        next_offset -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    processed_events (topic, event_id) {
        topic -> Varchar,
        event_id -> Varchar,
        partition -> Int4,
        record_offset -> Int8,
        outcome -> Varchar,
        processed_at -> Timestamptz,
    }
}
