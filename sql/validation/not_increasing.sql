-- Not increasing: rows whose timestamp is not later than the previous row's, in file order.
-- $source   Parquet candle file (timestamp, open, high, low, close, volume)
-- Candle files must be sorted by timestamp and unique, so every row here is out of order or a repeat
-- of the row before it (a duplicate far from its twin shows up here as out of order too).
--   file_row_number   row in the file (0-based)
--   ts_ms             its open time (ms since the epoch, UTC)
--   prev_ts_ms        the previous row's open time
WITH candles AS (
    SELECT
        file_row_number,
        epoch_ms(timestamp) AS ts_ms,
        lag(epoch_ms(timestamp)) OVER (ORDER BY file_row_number) AS prev_ts_ms
    FROM read_parquet($source, file_row_number = true)
)
SELECT file_row_number, ts_ms, prev_ts_ms
FROM candles
WHERE ts_ms <= prev_ts_ms
ORDER BY file_row_number;
