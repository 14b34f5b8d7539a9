DROP INDEX idx_coupon_issues_available_expiry;
CREATE INDEX idx_coupon_issues_live_expiry ON coupon_issues (expires_at) WHERE status IN ('ISSUED', 'RESERVED');
DROP INDEX idx_coupon_issues_policy_cancelled;
DROP INDEX idx_coupon_issues_policy_available;
CREATE INDEX idx_coupon_issues_policy_status ON coupon_issues (policy_id, status);
