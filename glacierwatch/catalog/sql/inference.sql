-- inference: the paper's inference filter (Waismann et al.), one row per scene file that passes.
--
-- Tables:     scenes         the catalog (catalog.parquet)
--             summer_months  (hemisphere VARCHAR 'N'|'S', month INTEGER 1-12): the low-snow months kept
-- Parameters (DuckDB named $parameters; on Athena/Trino bind them positionally as ?, in this order):
--   $max_cloud_cover     scene cloud cover below this, %                     (paper: 10)
--   $image_quality       required IMAGE_QUALITY / IMAGE_QUALITY_OLI          (paper: 9; NULL: not checked,
--                        for sources without it: STAC items, local files)
--   $min_pixels          more than this many values, height x width x bands  (paper: 50000)
--   $max_nodata_pixels   at most this many fill pixels in the box            (paper: 0)
--   $max_zero_pixel_pct  zero values below this share of all values, %       (paper: 10)
--   $include_l7_slc_off  keep Landsat 7 scenes after the SLC failure         (default: true)
--   $slc_off_date        the SLC failure date, 2003-05-31
SELECT s.*
FROM scenes AS s
WHERE s.status = 'ok'
  AND s.cloud_cover < $max_cloud_cover
  AND ($image_quality IS NULL OR s.image_quality = $image_quality)
  AND s.n_pixels > $min_pixels
  AND s.nodata_pixels <= $max_nodata_pixels
  AND s.zero_pixel_pct < $max_zero_pixel_pct
  AND EXISTS (
      SELECT 1
      FROM summer_months AS m
      WHERE m.hemisphere = s.hemisphere
        AND m.month = month(s.date)
  )
  AND ($include_l7_slc_off OR NOT (s.satellite = 'L7' AND s.date > $slc_off_date))
ORDER BY s.glims_id, s.date, s.path
