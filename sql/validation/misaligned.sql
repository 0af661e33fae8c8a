-- Misaligned: rows whose timestamp is not the open time of a timeframe grid slot, in file order.
-- $source   Parquet candle file (timestamp, open, high, low, close, volume)
-- $step_ms  timeframe width in ms; 0 means calendar months (1M)
-- $origin_ms open time of one grid slot, ms since the epoch: 345600000 (Monday 1970-01-05) for whole weeks
--           (1W, 14D), so weeks open on Mondays 00:00 UTC; 0 (the epoch) otherwise
-- Grid slots open whole steps from $origin_ms, in UTC (1M: 00:00 UTC on the 1st of each month).
--   file_row_number   row in the file (0-based)
--   ts_ms             its open time (ms since the epoch, UTC)
--   slot_ms           open time of the grid slot it falls in
--   offset_ms         ts_ms - slot_ms (> 0)
WITH candles AS (
    SELECT file_row_number, epoch_ms(timestamp) AS ts_ms
    FROM read_parquet($source, file_row_number = true)
),
slotted AS (
    SELECT
        file_row_number,
        ts_ms,
        CASE WHEN $step_ms > 0
             THEN ts_ms - (((ts_ms - $origin_ms) % nullif($step_ms, 0)) + $step_ms) % nullif($step_ms, 0)
             ELSE epoch_ms(date_trunc('month', make_timestamp(ts_ms * 1000)))
        END AS slot_ms
    FROM candles
)
SELECT file_row_number, ts_ms, slot_ms, ts_ms - slot_ms AS offset_ms
FROM slotted
WHERE ts_ms <> slot_ms
ORDER BY file_row_number;
