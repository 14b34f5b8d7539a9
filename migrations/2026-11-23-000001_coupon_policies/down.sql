DROP TABLE coupon_policies;
