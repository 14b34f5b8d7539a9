// @generated automatically by Diesel CLI.

diesel::table! {
    code_jobs (id) {
        id -> Int8,
        policy_id -> Int8,
        total -> Int4,
        generated -> Int4,
        #[max_length = 10]
        prefix -> Varchar,
        length -> Int2,
        #[max_length = 10]
        state -> Varchar,
        #[max_length = 500]
        error -> Nullable<Varchar>,
        lease_until -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    consumer_offsets (topic, partition) {
        #[max_length = 249]
        topic -> Varchar,
        partition -> Int4,
        next_offset -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    coupon_codes (code) {
        #[max_length = 30]
        code -> Varchar,
        policy_id -> Int8,
        #[max_length = 10]
        status -> Varchar,
        coupon_id -> Nullable<Int8>,
        user_id -> Nullable<Int8>,
        redeemed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    coupon_issues (id) {
        id -> Int8,
        policy_id -> Int8,
        user_id -> Int8,
        user_slot -> Int2,
        #[max_length = 20]
        status -> Varchar,
        #[max_length = 50]
        reservation_id -> Nullable<Varchar>,
        #[max_length = 50]
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
    coupon_policies (id) {
        id -> Int8,
        #[max_length = 100]
        coupon_name -> Varchar,
        #[max_length = 50]
        coupon_code -> Nullable<Varchar>,
        #[max_length = 1000]
        description -> Nullable<Varchar>,
        #[max_length = 20]
        discount_type -> Varchar,
        discount_value -> Numeric,
        minimum_order_amount -> Nullable<Numeric>,
        max_discount_amount -> Nullable<Numeric>,
        #[max_length = 20]
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
        stackable -> Bool,
        budget_amount -> Nullable<Numeric>,
        budget_used -> Numeric,
        budget_alerted -> Int2,
        #[max_length = 10]
        code_mode -> Varchar,
    }
}

diesel::table! {
    coupon_reservations (reservation_id) {
        #[max_length = 50]
        reservation_id -> Varchar,
        coupon_id -> Int8,
        user_id -> Int8,
        #[max_length = 50]
        order_id -> Nullable<Varchar>,
        order_amount -> Numeric,
        discount_amount -> Numeric,
        #[max_length = 20]
        status -> Varchar,
        reserved_at -> Timestamptz,
        expires_at -> Timestamptz,
        #[max_length = 100]
        payment_id -> Nullable<Varchar>,
        confirmed_at -> Nullable<Timestamptz>,
        late_confirmation -> Bool,
        cancelled_at -> Nullable<Timestamptz>,
        #[max_length = 50]
        cancel_reason -> Nullable<Varchar>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        order_exclusive -> Nullable<Bool>,
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
    idempotency_keys (id) {
        id -> Int8,
        #[max_length = 100]
        caller -> Varchar,
        #[max_length = 10]
        method -> Varchar,
        #[max_length = 500]
        path -> Varchar,
        #[max_length = 255]
        idempotency_key -> Varchar,
        request_hash -> Bytea,
        claim_token -> Int8,
        leased_until -> Timestamptz,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        answer_status -> Nullable<Int2>,
        answer_body -> Nullable<Bytea>,
        answered_at -> Nullable<Timestamptz>,
        parts -> Array<Nullable<Bytea>>,
    }
}

diesel::table! {
    job_locks (job_name) {
        #[max_length = 64]
        job_name -> Varchar,
        locked_until -> Timestamptz,
        locked_at -> Timestamptz,
        #[max_length = 255]
        locked_by -> Varchar,
        last_finished_at -> Nullable<Timestamptz>,
        #[max_length = 255]
        last_outcome -> Nullable<Varchar>,
    }
}

diesel::table! {
    job_runs (id) {
        id -> Int8,
        #[max_length = 64]
        job_name -> Varchar,
        #[max_length = 255]
        runner -> Varchar,
        #[max_length = 20]
        trigger -> Varchar,
        started_at -> Timestamptz,
        finished_at -> Timestamptz,
        affected -> Int8,
        #[max_length = 20]
        outcome -> Varchar,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    order_stacks (order_id) {
        #[max_length = 50]
        order_id -> Varchar,
        exclusive -> Int2,
        stackable -> Int2,
        cap -> Int2,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        event_id -> Uuid,
        #[max_length = 249]
        topic -> Varchar,
        #[max_length = 100]
        event_key -> Varchar,
        #[max_length = 50]
        event_type -> Varchar,
        payload -> Text,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    processed_events (topic, event_id) {
        #[max_length = 249]
        topic -> Varchar,
        #[max_length = 100]
        event_id -> Varchar,
        partition -> Int4,
        record_offset -> Int8,
        #[max_length = 40]
        outcome -> Varchar,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    worker_leases (name) {
        #[max_length = 300]
        name -> Varchar,
        #[max_length = 255]
        holder -> Varchar,
        acquired_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::joinable!(code_jobs -> coupon_policies (policy_id));
diesel::joinable!(coupon_issues -> coupon_policies (policy_id));
diesel::joinable!(coupon_reservations -> coupon_issues (coupon_id));

diesel::allow_tables_to_appear_in_same_query!(
    code_jobs,
    consumer_offsets,
    coupon_codes,
    coupon_issues,
    coupon_policies,
    coupon_reservations,
    daily_statistics,
    idempotency_keys,
    job_locks,
    job_runs,
    order_stacks,
    outbox,
    processed_events,
    worker_leases,
);
