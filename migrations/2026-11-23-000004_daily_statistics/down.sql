DROP TABLE daily_statistics;
