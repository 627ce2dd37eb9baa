-- p50, p95 and p99 of the total time and of the inference time per model, over the last day
-- (answered requests only; deployed Workers read infer_ms as 0, see the note above).
SELECT
  blob2 AS model,
  SUM(_sample_interval) AS requests,
  quantileExactWeighted(0.5)(double1, _sample_interval) AS total_p50_ms,
  quantileExactWeighted(0.95)(double1, _sample_interval) AS total_p95_ms,
  quantileExactWeighted(0.99)(double1, _sample_interval) AS total_p99_ms,
  quantileExactWeighted(0.5)(double5, _sample_interval) AS infer_p50_ms,
  quantileExactWeighted(0.95)(double5, _sample_interval) AS infer_p95_ms,
  quantileExactWeighted(0.99)(double5, _sample_interval) AS infer_p99_ms
FROM warmserve_inference
WHERE blob1 = 'request' AND blob5 = '2xx' AND timestamp > NOW() - INTERVAL '1' DAY
GROUP BY model
ORDER BY requests DESC
