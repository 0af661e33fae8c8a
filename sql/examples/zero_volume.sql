-- Candles with zero volume, per symbol and timeframe. The store never zero-fills (a minute without
-- trades is absent), so zero-volume candles usually come from a source that padded its gaps;
-- flat_zero_volume counts the typical padding (open = high = low = close and volume = 0).
SELECT
    symbol,
    timeframe,
    count(*)                                                        AS num_candles,
    count_if(volume = 0)                                            AS zero_volume,
    round(100.0 * count_if(volume = 0) / count(*), 3)               AS zero_volume_pct,
    count_if(volume = 0 AND open = high AND high = low AND low = close) AS flat_zero_volume,
    min(timestamp) FILTER (WHERE volume = 0)                        AS first_zero_volume,
    max(timestamp) FILTER (WHERE volume = 0)                        AS last_zero_volume
FROM candles
GROUP BY symbol, timeframe
ORDER BY symbol, timeframe;
