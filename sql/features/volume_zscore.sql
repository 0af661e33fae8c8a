-- Volume z-score: (volume - mean) / sample standard deviation over the last $window rows, the current
-- one included; unitless. 0 when the window's volumes are all equal (no spread, no surprise).
-- candles  the candles of one dataset, registered by genesis_fw.ml.features
-- $window  rows in the window, >= 2
-- One row per candle in timestamp order; NULL for the first $window - 1 rows.
WITH s AS (
    SELECT timestamp, volume, count(volume) OVER w AS n, avg(volume) OVER w AS mean,
           stddev_samp(volume) OVER w AS sd
    FROM candles
    WINDOW w AS (ORDER BY timestamp ROWS BETWEEN $window - 1 PRECEDING AND CURRENT ROW)
)
SELECT CASE
           WHEN n < $window THEN NULL
           WHEN sd = 0 THEN 0.0
           ELSE (volume - mean) / sd
       END AS value
FROM s
ORDER BY timestamp;
