-- Requests and error rate per model and version, over the last day.
SELECT
  blob2 AS model,
  blob3 AS version,
  SUM(_sample_interval) AS requests,
  SUM(if(blob5 = '4xx', _sample_interval, 0)) AS client_errors,
  SUM(if(blob5 = '5xx', _sample_interval, 0)) AS server_errors,
  SUM(if(blob5 = '5xx', _sample_interval, 0)) / SUM(_sample_interval) AS server_error_rate
FROM warmserve_inference
WHERE blob1 = 'request' AND timestamp > NOW() - INTERVAL '1' DAY
GROUP BY model, version
ORDER BY requests DESC
