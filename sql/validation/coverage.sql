-- Coverage: one row saying how much of the timeframe grid the file fills.
-- $source   Parquet candle file (timestamp, open, high, low, close, volume)
-- $step_ms  timeframe width in ms; 0 means calendar months (1M)
-- $origin_ms open time of one grid slot, ms since the epoch: 345600000 (Monday 1970-01-05) for whole weeks
--           (1W, 14D), so weeks open on Mondays 00:00 UTC; 0 (the epoch) otherwise
-- Each candle falls in its grid slot: floor((ts - origin) / step), UTC (1M: its calendar month).
--   num_candles      rows in the file
--   first_ms, last_ms   earliest / latest open time (ms since the epoch, UTC)
--   occupied_slots   distinct grid slots holding at least one candle
--   expected_slots   grid slots from the first candle's slot to the last one's, both included
--   coverage         occupied_slots / expected_slots (NULL for an empty file)
WITH candles AS (
    SELECT epoch_ms(timestamp) AS ts_ms
    FROM read_parquet($source)
),
slotted AS (
    SELECT
        ts_ms,
        CASE WHEN $step_ms > 0
             THEN (ts_ms - $origin_ms - (((ts_ms - $origin_ms) % nullif($step_ms, 0)) + $step_ms) % nullif($step_ms, 0))
                  // nullif($step_ms, 0)
             ELSE year(make_timestamp(ts_ms * 1000)) * 12 + month(make_timestamp(ts_ms * 1000)) - 1
        END AS slot
    FROM candles
)
SELECT
    count(*)                                  AS num_candles,
    min(ts_ms)                                AS first_ms,
    max(ts_ms)                                AS last_ms,
    count(DISTINCT slot)                      AS occupied_slots,
    coalesce(max(slot) - min(slot) + 1, 0)    AS expected_slots,
    count(DISTINCT slot) / nullif(max(slot) - min(slot) + 1, 0) AS coverage
FROM slotted;
