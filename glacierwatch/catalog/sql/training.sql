-- training: scenes within a window either side of each glacier's outline date (the paper averages
-- them into one composite per glacier), one row per scene file.
--
-- Tables:     scenes    the catalog (catalog.parquet)
--             glaciers  the inventory: glims_id, outline_date (DATE), region, hemisphere, area_km2
-- Parameters (DuckDB named $parameters; on Athena/Trino bind them positionally as ?, in this order):
--   $training_window_days  days either side of the outline date, inclusive   (paper: 50)
--   $include_l7_slc_off    keep Landsat 7 scenes after the SLC failure       (default: true)
--   $slc_off_date          the SLC failure date, 2003-05-31
SELECT
    s.*,
    g.outline_date,
    date_diff('day', g.outline_date, s.date) AS days_from_outline
FROM scenes AS s
JOIN glaciers AS g
  ON g.glims_id = s.glims_id
WHERE s.status = 'ok'
  AND g.outline_date IS NOT NULL
  AND abs(date_diff('day', g.outline_date, s.date)) <= $training_window_days
  AND ($include_l7_slc_off OR NOT (s.satellite = 'L7' AND s.date > $slc_off_date))
ORDER BY s.glims_id, s.date, s.path
