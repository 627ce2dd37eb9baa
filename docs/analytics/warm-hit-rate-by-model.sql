-- The share of requests that found their model warm, per model, over the last day: `hit` is warm,
-- `miss` loaded it, `joined` waited for a load another request had started.
SELECT
  blob2 AS model,
  SUM(_sample_interval) AS requests,
  SUM(if(blob8 = 'hit', _sample_interval, 0)) / SUM(_sample_interval) AS warm_hit_rate,
  SUM(if(blob8 = 'miss', _sample_interval, 0)) AS cold_requests,
  SUM(if(blob8 = 'joined', _sample_interval, 0)) AS joined_requests
FROM warmserve_inference
WHERE blob1 = 'request' AND blob8 != '' AND timestamp > NOW() - INTERVAL '1' DAY
GROUP BY model
ORDER BY requests DESC
