-- OHLC: rows whose prices or volume cannot be right, in file order, with one flag per rule broken.
-- $source   Parquet candle file (timestamp, open, high, low, close, volume)
--   non_finite             a NaN, infinite or NULL value in open, high, low, close or volume
--                          (the other rules are only checked on rows without one)
--   non_positive_price     open, high, low or close <= 0
--   high_below_open_close  high < max(open, close)
--   low_above_open_close   low > min(open, close)
--   high_below_low         high < low
--   negative_volume        volume < 0
WITH candles AS (
    SELECT
        file_row_number, epoch_ms(timestamp) AS ts_ms, open, high, low, close, volume,
        (isfinite(open) AND isfinite(high) AND isfinite(low) AND isfinite(close) AND isfinite(volume))
            IS NOT TRUE AS non_finite
    FROM read_parquet($source, file_row_number = true)
),
flagged AS (
    SELECT
        *,
        NOT non_finite AND least(open, high, low, close) <= 0   AS non_positive_price,
        NOT non_finite AND high < greatest(open, close)         AS high_below_open_close,
        NOT non_finite AND low > least(open, close)             AS low_above_open_close,
        NOT non_finite AND high < low                           AS high_below_low,
        NOT non_finite AND volume < 0                           AS negative_volume
    FROM candles
)
SELECT *
FROM flagged
WHERE non_finite OR non_positive_price OR high_below_open_close OR low_above_open_close
   OR high_below_low OR negative_volume
ORDER BY file_row_number;
