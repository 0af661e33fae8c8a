-- What is in the store: per symbol and timeframe, how many candles, the first and last candle
-- (open time, UTC) and how many days that spans.
-- Run: genesis-fw sql --file sql/examples/dataset_overview.sql
SELECT
    symbol,
    timeframe,
    count(*)                                           AS num_candles,
    min(timestamp)                                     AS first_candle,
    max(timestamp)                                     AS last_candle,
    round((epoch_ms(max(timestamp)) - epoch_ms(min(timestamp))) / 86400000.0, 2) AS span_days
FROM candles
GROUP BY symbol, timeframe
ORDER BY symbol, timeframe;
