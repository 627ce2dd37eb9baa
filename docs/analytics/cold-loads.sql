-- Cold loads per hour and model, and their median build time (fetch, build, warmup), over the last
-- day: loads that succeeded, admin reloads left out.
SELECT
  toStartOfInterval(timestamp, INTERVAL '1' HOUR) AS hour,
  blob2 AS model,
  SUM(_sample_interval) AS loads,
  quantileExactWeighted(0.5)(double3, _sample_interval) AS load_p50_ms
FROM warmserve_inference
WHERE blob1 = 'load' AND blob5 = '2xx' AND blob14 = 'load' AND timestamp > NOW() - INTERVAL '1' DAY
GROUP BY hour, model
ORDER BY hour, model
