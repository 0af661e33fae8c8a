-- Duplicates: timestamps held by more than one row, one row per such timestamp, in file order.
-- $source   Parquet candle file (timestamp, open, high, low, close, volume)
--   ts_ms      the repeated open time (ms since the epoch, UTC)
--   copies     rows holding it; copies - 1 of them are duplicates (every row after the first)
--   rows       their file row numbers (0-based), ascending
--   identical  true when every copy has the same open, high, low, close and volume
WITH candles AS (
    SELECT file_row_number, epoch_ms(timestamp) AS ts_ms, open, high, low, close, volume
    FROM read_parquet($source, file_row_number = true)
),
repeated AS (
    SELECT ts_ms FROM candles GROUP BY ts_ms HAVING count(*) > 1
)
SELECT
    ts_ms,
    count(*)                                        AS copies,
    list(file_row_number ORDER BY file_row_number)  AS rows,
    (min(open) = max(open) AND min(high) = max(high) AND min(low) = max(low)
        AND min(close) = max(close) AND min(volume) = max(volume)) IS TRUE AS identical
FROM candles
SEMI JOIN repeated USING (ts_ms)
GROUP BY ts_ms
ORDER BY min(file_row_number);
