-- inference-glaciers: the inference set, N glaciers per region, largest first, among the glaciers
-- with enough scenes passing the inference filter (the seed's
-- identify_inference_glims_ids_geog_area_rollup_50.sql). One row per glacier.
--
-- Tables:     inference_scenes  the result of inference.sql (create it as a view or table first)
--             glaciers          the inventory: glims_id, region, area_km2, hemisphere, outline_date
-- Parameters (DuckDB named $parameters; on Athena/Trino bind them positionally as ?, in this order):
--   $min_inference_scenes           glaciers need at least this many passing scenes   (default: 1)
--   $inference_glaciers_per_region  glaciers kept per region                          (paper: 50)
-- Ties in area are broken by glims_id, so the selection is deterministic.
WITH per_glacier AS (
    SELECT
        glims_id,
        count(*) AS n_inference_scenes,
        min(date) AS first_scene_date,
        max(date) AS last_scene_date
    FROM inference_scenes
    GROUP BY glims_id
),
ranked AS (
    SELECT
        g.glims_id,
        g.region,
        g.hemisphere,
        g.area_km2,
        p.n_inference_scenes,
        p.first_scene_date,
        p.last_scene_date,
        row_number() OVER (
            PARTITION BY g.region
            ORDER BY g.area_km2 DESC NULLS LAST, g.glims_id
        ) AS region_rank
    FROM glaciers AS g
    JOIN per_glacier AS p
      ON p.glims_id = g.glims_id
    WHERE p.n_inference_scenes >= $min_inference_scenes
)
SELECT *
FROM ranked
WHERE region_rank <= $inference_glaciers_per_region
ORDER BY region, region_rank
