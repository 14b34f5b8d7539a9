DROP INDEX idx_coupon_reservations_reserved_at_brin;
DROP INDEX idx_coupon_issues_expired_at;
DROP INDEX idx_coupon_issues_used_at;
DROP INDEX idx_coupon_issues_issued_at_brin;
DROP TABLE job_runs;
