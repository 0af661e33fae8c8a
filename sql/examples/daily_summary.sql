-- Daily OHLCV (UTC days) built from the 1m candles, per symbol: open = first open of the day,
-- high = max, low = min, close = last close, volume = sum; minutes_present / minutes_missing say
-- how complete each day is (1440 minutes a day).
-- Run: genesis-fw sql --file sql/examples/daily_summary.sql --format csv --output daily.csv
SELECT
    symbol,
    timestamp::DATE               AS day,
    arg_min(open, timestamp)      AS open,
    max(high)                     AS high,
    min(low)                      AS low,
    arg_max(close, timestamp)     AS close,
    sum(volume)                   AS volume,
    count(*)                      AS minutes_present,
    1440 - count(*)               AS minutes_missing
FROM candles
WHERE timeframe = '1m'
GROUP BY symbol, timestamp::DATE
ORDER BY symbol, day;
