CREATE INDEX idx_coupon_issues_user ON coupon_issues (user_id, id);
