-- The prediction cache's hit rate per model (models with response_cache only), over the last day.
SELECT
  blob2 AS model,
  SUM(_sample_interval) AS lookups,
  SUM(if(blob9 = 'hit', _sample_interval, 0)) / SUM(_sample_interval) AS hit_rate
FROM warmserve_inference
WHERE blob1 = 'request' AND blob9 != '' AND timestamp > NOW() - INTERVAL '1' DAY
GROUP BY model
ORDER BY lookups DESC
