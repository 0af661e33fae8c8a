-- Gaps: runs of missing candle times on the timeframe grid, one row per run, in time order.
-- $source   Parquet candle file (timestamp, open, high, low, close, volume)
-- $step_ms  timeframe width in ms; 0 means calendar months (1M)
-- $origin_ms open time of one grid slot, ms since the epoch: 345600000 (Monday 1970-01-05) for whole weeks
--           (1W, 14D), so weeks open on Mondays 00:00 UTC; 0 (the epoch) otherwise
-- Each candle fills its grid slot: floor((ts - origin) / step), UTC (1M: its calendar month). So a
-- duplicated, misaligned or out-of-order candle still fills its slot; those are other checks' findings.
-- Only slots between the first and the last candle are seen. Bitfinex sends no candle for an interval
-- without trades, so short gaps are normal on quiet markets; long ones usually mean a failed download.
--   first_missing_ms, last_missing_ms   open time of the first / last missing slot (ms since the epoch, UTC)
--   next_ms          open time of the slot after the run (the next present candle's slot)
--   missing          missing slots in the run
--   prev_row, next_row   file row numbers (0-based) of the candles either side of the run
WITH candles AS (
    SELECT file_row_number, epoch_ms(timestamp) AS ts_ms
    FROM read_parquet($source, file_row_number = true)
),
slotted AS (
    SELECT
        file_row_number,
        CASE WHEN $step_ms > 0
             THEN (ts_ms - $origin_ms - (((ts_ms - $origin_ms) % nullif($step_ms, 0)) + $step_ms) % nullif($step_ms, 0))
                  // nullif($step_ms, 0)
             ELSE year(make_timestamp(ts_ms * 1000)) * 12 + month(make_timestamp(ts_ms * 1000)) - 1
        END AS slot
    FROM candles
),
present AS (
    SELECT slot, min(file_row_number) AS file_row_number
    FROM slotted
    GROUP BY slot
),
runs AS (
    SELECT
        lag(slot) OVER (ORDER BY slot) + 1            AS first_slot,
        slot - 1                                      AS last_slot,
        slot                                          AS next_slot,
        lag(file_row_number) OVER (ORDER BY slot)     AS prev_row,
        file_row_number                               AS next_row
    FROM present
),
found AS (
    SELECT * FROM runs WHERE last_slot >= first_slot
)
SELECT
    CASE WHEN $step_ms > 0 THEN $origin_ms + first_slot * $step_ms
         ELSE epoch_ms(make_date((first_slot // 12)::INTEGER, (first_slot % 12 + 1)::INTEGER, 1)::TIMESTAMP)
    END                                               AS first_missing_ms,
    CASE WHEN $step_ms > 0 THEN $origin_ms + last_slot * $step_ms
         ELSE epoch_ms(make_date((last_slot // 12)::INTEGER, (last_slot % 12 + 1)::INTEGER, 1)::TIMESTAMP)
    END                                               AS last_missing_ms,
    CASE WHEN $step_ms > 0 THEN $origin_ms + next_slot * $step_ms
         ELSE epoch_ms(make_date((next_slot // 12)::INTEGER, (next_slot % 12 + 1)::INTEGER, 1)::TIMESTAMP)
    END                                               AS next_ms,
    last_slot - first_slot + 1                        AS missing,
    prev_row,
    next_row
FROM found
ORDER BY first_slot;
