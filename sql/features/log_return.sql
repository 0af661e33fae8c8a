-- Log return over $lag bars: ln(close / close $lag rows earlier), a fraction (0.01 ~ +1 %).
-- candles  the candles of one dataset (timestamp, open, high, low, close, volume), registered by
--          genesis_fw.ml.features; rows, not clock time: a missing candle is simply not a row.
-- $lag     bars back, >= 1
-- One row per candle in timestamp order; NULL for the first $lag rows (no earlier close yet).
SELECT ln(close / lag(close, $lag) OVER (ORDER BY timestamp)) AS value
FROM candles
ORDER BY timestamp;
