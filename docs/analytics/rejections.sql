-- Requests refused with 429 per hour, model and limit (capacity_model: the model's max_concurrent
-- and max_queue; capacity_isolate: MAX_CONCURRENT and MAX_QUEUE), over the last day.
SELECT
  toStartOfInterval(timestamp, INTERVAL '1' HOUR) AS hour,
  blob2 AS model,
  blob6 AS error_code,
  SUM(_sample_interval) AS rejected
FROM warmserve_inference
WHERE blob1 = 'request' AND double9 = 429 AND timestamp > NOW() - INTERVAL '1' DAY
GROUP BY hour, model, error_code
ORDER BY hour, rejected DESC
