-- Candles whose prices contradict each other, counted per symbol and timeframe:
--   high_below_body   high < max(open, close)
--   low_above_body    low > min(open, close)
--   high_below_low    high < low
--   nonpositive_price any of open, high, low, close <= 0
--   negative_volume   volume < 0
-- bad_candles counts candles with at least one problem; first_bad is the earliest of them.
-- Every column should be 0 (first_bad NULL) on clean data.
WITH checked AS (
    SELECT
        symbol,
        timeframe,
        timestamp,
        high < greatest(open, close)                     AS high_below_body,
        low > least(open, close)                         AS low_above_body,
        high < low                                       AS high_below_low,
        least(open, high, low, close) <= 0               AS nonpositive_price,
        volume < 0                                       AS negative_volume
    FROM candles
)
SELECT
    symbol,
    timeframe,
    count(*)                                                         AS num_candles,
    count_if(high_below_body)                                        AS high_below_body,
    count_if(low_above_body)                                         AS low_above_body,
    count_if(high_below_low)                                         AS high_below_low,
    count_if(nonpositive_price)                                      AS nonpositive_price,
    count_if(negative_volume)                                        AS negative_volume,
    count_if(high_below_body OR low_above_body OR high_below_low OR nonpositive_price OR negative_volume)
                                                                     AS bad_candles,
    min(timestamp) FILTER (WHERE high_below_body OR low_above_body OR high_below_low
                                 OR nonpositive_price OR negative_volume) AS first_bad
FROM checked
GROUP BY symbol, timeframe
ORDER BY symbol, timeframe;
