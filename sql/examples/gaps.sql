-- Where candles are missing: per symbol and timeframe, gaps in the timeframe's grid (on 1m data,
-- missing minutes). A gap is a run of absent candles between two consecutive stored candles
-- (lag over timestamp); minutes without trades are absent in the store, so short gaps are expected
-- on quiet markets, but long ones usually mean a failed download.
--   num_gaps           runs of missing candles
--   missing_candles    missing candles in total (1m: missing minutes)
--   largest_gap        longest run, in candles; largest_gap_from / _to: its first and last missing
--                      slot (the earliest such run when several are equally long)
-- Only gaps between the first and the last stored candle are seen. Calendar-month data (1M) has no
-- fixed grid and is left out.
WITH widths(timeframe, step_ms) AS (
    VALUES ('1m', 60000), ('5m', 300000), ('15m', 900000), ('30m', 1800000),
           ('1h', 3600000), ('3h', 10800000), ('4h', 14400000), ('6h', 21600000), ('12h', 43200000),
           ('1D', 86400000), ('1W', 604800000), ('14D', 1209600000)
),
steps AS (
    SELECT
        c.symbol,
        c.timeframe,
        w.step_ms,
        c.timestamp,
        (epoch_ms(c.timestamp)
            - epoch_ms(lag(c.timestamp) OVER (PARTITION BY c.symbol, c.timeframe ORDER BY c.timestamp))
        ) // w.step_ms - 1 AS missing
    FROM candles AS c
    JOIN widths AS w USING (timeframe)
),
ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY symbol, timeframe ORDER BY missing DESC NULLS LAST, timestamp) AS rank
    FROM steps
)
SELECT
    symbol,
    timeframe,
    count(*)                                                                   AS num_candles,
    count_if(missing > 0)                                                      AS num_gaps,
    coalesce(sum(missing) FILTER (WHERE missing > 0), 0)::BIGINT               AS missing_candles,
    coalesce(max(missing), 0)::BIGINT                                          AS largest_gap,
    any_value(timestamp - to_milliseconds(missing * step_ms))
        FILTER (WHERE rank = 1 AND missing > 0)                                AS largest_gap_from,
    any_value(timestamp - to_milliseconds(step_ms)) FILTER (WHERE rank = 1 AND missing > 0) AS largest_gap_to
FROM ranked
GROUP BY symbol, timeframe
ORDER BY symbol, timeframe;
