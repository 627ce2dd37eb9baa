-- Shadow runs per model, served version and shadow version, over the last day: how many were
-- compared, how many disagreed (top-1 class in some row, or output shapes), failed or were skipped.
SELECT
  blob2 AS model,
  blob3 AS version,
  blob11 AS shadow_version,
  SUM(if(blob14 = 'compared', _sample_interval, 0)) AS compared,
  SUM(_sample_interval * double13) AS disagreements,
  SUM(_sample_interval * double13) / SUM(if(blob14 = 'compared', _sample_interval, 0)) AS disagreement_rate,
  SUM(if(blob14 = 'failed', _sample_interval, 0)) AS failed,
  SUM(if(blob14 = 'skipped', _sample_interval, 0)) AS skipped,
  max(double14) AS max_abs_diff
FROM warmserve_inference
WHERE blob1 = 'shadow' AND timestamp > NOW() - INTERVAL '1' DAY
GROUP BY model, version, shadow_version
ORDER BY compared DESC
