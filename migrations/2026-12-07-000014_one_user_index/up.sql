-- One index of a user's coupons instead of two. Every wallet query (any status or one, keyset-paged
-- by id), the catalogue's holdings and the quote start from `idx_coupon_issues_user_status
-- (user_id, status, id)`; `idx_coupon_issues_user (user_id, id)` served none of them, and every
-- coupon's issue and each of its checkout steps (the status change is not a HOT update) wrote
-- an entry into it.
DROP INDEX idx_coupon_issues_user;
