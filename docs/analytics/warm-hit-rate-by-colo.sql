-- The warm-hit rate per data center (and model), over the last day: a colo with a low rate has
-- isolates that do not stay warm long enough for the traffic it gets.
SELECT
  blob7 AS colo,
  blob2 AS model,
  SUM(_sample_interval) AS requests,
  SUM(if(blob8 = 'hit', _sample_interval, 0)) / SUM(_sample_interval) AS warm_hit_rate
FROM warmserve_inference
WHERE blob1 = 'request' AND blob8 != '' AND blob7 != '' AND timestamp > NOW() - INTERVAL '1' DAY
GROUP BY colo, model
ORDER BY requests DESC
