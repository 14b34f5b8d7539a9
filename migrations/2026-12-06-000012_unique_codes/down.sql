DROP TABLE code_jobs;
DROP TABLE coupon_codes;
ALTER TABLE coupon_policies DROP CONSTRAINT chk_policy_code_required,
    ADD CONSTRAINT chk_policy_code_required CHECK (distribution_type <> 'CODE' OR coupon_code IS NOT NULL),
    DROP COLUMN code_mode;
