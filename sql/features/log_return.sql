-- Log returns over each lag in $lags: ln(close / close k rows earlier), a fraction (0.01 ~ +1 %).
-- candles  the candles of one dataset (timestamp, open, high, low, close, volume), registered by
--          genesis_fw.ml.features; rows, not clock time: a missing candle is simply not a row.
-- $lags    the lags k (bars back, each >= 1), a list
-- One row per lag, in $lags order, holding the list of that lag's values for every candle in timestamp
-- order; NULL for the first k candles (no earlier close yet). All lags come from one ordered list of
-- the closes: lag() takes only a constant offset, and one query per lag would sort the candles again.
WITH c AS (
    SELECT list(close ORDER BY timestamp) AS closes
    FROM candles
)
SELECT unnest(list_transform($lags, lambda k: list_transform(range(1, len(closes) + 1),
           lambda i: CASE WHEN i > k THEN ln(closes[i] / closes[i - k]) END))) AS value
FROM c;
