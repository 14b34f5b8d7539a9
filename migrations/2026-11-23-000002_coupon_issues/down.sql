DROP TABLE coupon_issues;
