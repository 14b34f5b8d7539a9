DROP TABLE coupon_reservations;
