-- Reserving and using a coupon change its status, which is never a HOT update: every index whose
-- key or predicate the new row version matches takes an entry. The two indexes below held all the
-- coupons of a policy, and every ISSUED or RESERVED one by date; what reads them wants only
-- ISSUED coupons (a deactivation expires a policy's ISSUED coupons in id order, the expiry job
-- finds ISSUED coupons past their date), so they hold only those now and a reserve or a use
-- writes into neither. A policy's statistics read its coupons through the per-user slot index
-- (every coupon but the cancelled ones, led by policy_id) and the cancelled ones through their own.
-- IF NOT EXISTS: on a large table the indexes can be built CONCURRENTLY beforehand (OPERATIONS).
DROP INDEX idx_coupon_issues_policy_status;
CREATE INDEX IF NOT EXISTS idx_coupon_issues_policy_available ON coupon_issues (policy_id, id) WHERE status = 'ISSUED';
CREATE INDEX IF NOT EXISTS idx_coupon_issues_policy_cancelled ON coupon_issues (policy_id) WHERE status = 'CANCELLED';
DROP INDEX idx_coupon_issues_live_expiry;
CREATE INDEX IF NOT EXISTS idx_coupon_issues_available_expiry ON coupon_issues (expires_at) WHERE status = 'ISSUED';
