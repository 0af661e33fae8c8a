-- Rolling volatility: sample standard deviation of the 1-bar log returns of the last $window rows,
-- the current one included; a fraction per bar, not annualised.
-- candles  the candles of one dataset, registered by genesis_fw.ml.features
-- $window  rows in the window, >= 2
-- One row per candle in timestamp order; NULL until $window returns exist (the first $window rows).
WITH r AS (
    SELECT timestamp, ln(close / lag(close) OVER (ORDER BY timestamp)) AS ret
    FROM candles
)
SELECT CASE WHEN count(ret) OVER w = $window THEN stddev_samp(ret) OVER w END AS value
FROM r
WINDOW w AS (ORDER BY timestamp ROWS BETWEEN $window - 1 PRECEDING AND CURRENT ROW)
ORDER BY timestamp;
