-- Zero volume: rows with volume exactly 0, in file order.
-- $source   Parquet candle file (timestamp, open, high, low, close, volume)
-- Bitfinex sends no candle for an interval without trades, so a zero-volume candle was made up by
-- whatever wrote the file (usually a gap filled with the previous close).
--   file_row_number   row in the file (0-based)
--   ts_ms             its open time (ms since the epoch, UTC)
--   flat              open = high = low = close (the typical forward-filled candle)
SELECT
    file_row_number,
    epoch_ms(timestamp) AS ts_ms,
    open, high, low, close, volume,
    (open = high AND high = low AND low = close) IS TRUE AS flat
FROM read_parquet($source, file_row_number = true)
WHERE volume = 0
ORDER BY file_row_number;
