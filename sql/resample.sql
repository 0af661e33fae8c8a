-- Candles aggregated into coarser UTC buckets: the slots of the timeframe's grid.
-- $source    Parquet file of finer candles ([timestamp, open, high, low, close, volume])
-- $bucket_ms bucket width in ms; 0 means calendar months
-- $origin_ms open time of one bucket, ms since the epoch: 345600000 (Monday 1970-01-05) for whole weeks,
--            so weeks open on Mondays 00:00 UTC; 0 (the epoch) otherwise. Buckets open whole widths from it.
-- $lo_ms, $hi_ms        source rows read: timestamp in [lo, hi) (lets DuckDB skip row groups)
-- $start_ms, $end_ms    buckets returned: open time in [start, end)
-- open = first open, high = max, low = min, close = last close, volume = sum.
-- A bucket without any source candle is absent, never zero-filled.
WITH src AS (
    SELECT timestamp, epoch_ms(timestamp) AS ts_ms, open, high, low, close, volume
    FROM read_parquet($source)
    WHERE timestamp >= make_timestamp($lo_ms * 1000)::TIMESTAMPTZ
      AND timestamp < make_timestamp($hi_ms * 1000)::TIMESTAMPTZ
),
bucketed AS (
    SELECT
        CASE WHEN $bucket_ms = 0
             THEN epoch_ms(date_trunc('month', timestamp))
             ELSE ts_ms - ((ts_ms - $origin_ms) % nullif($bucket_ms, 0) + $bucket_ms) % nullif($bucket_ms, 0)
        END AS bucket_ms,
        ts_ms, open, high, low, close, volume
    FROM src
)
SELECT
    make_timestamp(bucket_ms * 1000)::TIMESTAMPTZ AS timestamp,
    arg_min(open, ts_ms) AS open,
    max(high) AS high,
    min(low) AS low,
    arg_max(close, ts_ms) AS close,
    sum(volume) AS volume
FROM bucketed
WHERE bucket_ms >= $start_ms AND bucket_ms < $end_ms
GROUP BY bucket_ms
ORDER BY bucket_ms;
