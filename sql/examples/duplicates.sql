-- Duplicate candles, per symbol and timeframe: timestamps stored more than once. The store refuses
-- duplicates on write, so every count should be 0; a non-zero count means a file was written
-- outside genesis-fw.
--   duplicated_timestamps  distinct timestamps that occur more than once
--   extra_rows             rows beyond the first at those timestamps
WITH per_ts AS (
    SELECT symbol, timeframe, timestamp, count(*) AS n
    FROM candles
    GROUP BY symbol, timeframe, timestamp
)
SELECT
    symbol,
    timeframe,
    sum(n)::BIGINT                               AS num_candles,
    count_if(n > 1)                              AS duplicated_timestamps,
    coalesce(sum(n - 1) FILTER (WHERE n > 1), 0)::BIGINT AS extra_rows,
    min(timestamp) FILTER (WHERE n > 1)          AS first_duplicate
FROM per_ts
GROUP BY symbol, timeframe
ORDER BY symbol, timeframe;
