-- Outliers: price spikes -- a close far from the previous close that comes back within a few bars.
-- $source      Parquet candle file (timestamp, open, high, low, close, volume)
-- $k           spike size in robust standard deviations (default 10)
-- $window      bars in the trailing window that estimates the scale (default 60)
-- $min_return  smallest log return that can be a spike, whatever the scale (default 0.02, about 2 %)
-- $revert      bars after the spike within which the close must come back (default 5)
-- Bars are taken in timestamp order (ties: file order); rows whose close is NaN, infinite, NULL or <= 0
-- are skipped (the ohlc check reports them). With r(t) = ln(close(t) / close(t-1)):
--   sigma(t)      1.4826 * median |r| over the $window bars before t (t excluded: causal). The median of
--                 1-bar returns is ~0, so this is the MAD of r, scaled to a standard deviation.
--   threshold(t)  max($k * sigma(t), $min_return)
--   bar t is a spike when |r(t)| > threshold(t) and, within the next $revert bars, some close is back
--   within threshold(t) / 2 of close(t-1) (in log terms). A jump that stays is a move, not a spike.
-- sigma is computed only for bars with |r| > $min_return (no other bar can be a spike), each from its own
-- trailing $window returns: exactly the windowed median, at a fraction of the cost on quiet data.
-- One row per spike (its first bar):
--   file_row_number   row in the file (0-based)
--   ts_ms             its open time (ms since the epoch, UTC)
--   prev_close, close, log_return, sigma, threshold
--   reverted_after    bars until the first close back within the band (1 .. $revert)
WITH prices AS (
    SELECT file_row_number, epoch_ms(timestamp) AS ts_ms, close, ln(close) AS lc
    FROM read_parquet($source, file_row_number = true)
    WHERE isfinite(close) AND close > 0
),
returns AS MATERIALIZED (
    SELECT
        file_row_number, ts_ms, close, lc,
        row_number() OVER w                 AS bar,
        lag(lc) OVER w                      AS prev_lc,
        lag(close) OVER w                   AS prev_close,
        lc - lag(lc) OVER w                 AS log_return
    FROM prices
    WINDOW w AS (ORDER BY ts_ms, file_row_number)
),
moves AS (
    -- Only a bar moving more than $min_return can be a spike: the scale is needed for those alone.
    SELECT * FROM returns WHERE abs(log_return) > $min_return
),
scales AS (
    SELECT m.bar, 1.4826 * median(abs(p.log_return)) AS sigma
    FROM moves AS m
    CROSS JOIN range(1, $window + 1) AS o(step)
    JOIN returns AS p ON p.bar = m.bar - o.step
    GROUP BY m.bar
),
candidates AS (
    SELECT m.*, s.sigma, greatest($k * s.sigma, $min_return) AS threshold
    FROM moves AS m
    LEFT JOIN scales AS s USING (bar)
    WHERE abs(m.log_return) > greatest($k * s.sigma, $min_return)
),
reverted AS (
    SELECT c.bar, min(f.bar) - c.bar AS reverted_after
    FROM candidates AS c
    CROSS JOIN range(1, $revert + 1) AS o(step)
    JOIN returns AS f ON f.bar = c.bar + o.step
    WHERE abs(f.lc - c.prev_lc) <= c.threshold / 2
    GROUP BY c.bar
)
SELECT
    c.file_row_number, c.ts_ms, c.prev_close, c.close, c.log_return, c.sigma, c.threshold, r.reverted_after
FROM candidates AS c
JOIN reverted AS r USING (bar)
ORDER BY c.bar;
