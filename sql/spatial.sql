-- Spatial and photometric functions of qserv_py, installed on the czar and every worker.
-- Plain SQL (no extension): IMMUTABLE PARALLEL SAFE, and the scalar ones are single
-- expressions that the planner inlines. Angles are in degrees. Re-running this file is safe.

CREATE SCHEMA IF NOT EXISTS qserv;

-- Angular separation of two points (Vincenty's atan2 form: accurate at every angle, never
-- out of domain, and NULL in gives NULL out).
CREATE OR REPLACE FUNCTION qserv.ang_sep(
    ra1 double precision, dec1 double precision, ra2 double precision, dec2 double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT atan2d(
        sqrt((cosd($4) * sind($3 - $1)) ^ 2
             + (cosd($2) * sind($4) - sind($2) * cosd($4) * cosd($3 - $1)) ^ 2),
        sind($2) * sind($4) + cosd($2) * cosd($4) * cosd($3 - $1))
$$;

-- Is (ra, dec) within radius r of (ra0, dec0)?
CREATE OR REPLACE FUNCTION qserv.pt_in_circle(
    ra double precision, decl double precision,
    ra0 double precision, dec0 double precision, r double precision)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT atan2d(
        sqrt((cosd($4) * sind($3 - $1)) ^ 2
             + (cosd($2) * sind($4) - sind($2) * cosd($4) * cosd($3 - $1)) ^ 2),
        sind($2) * sind($4) + cosd($2) * cosd($4) * cosd($3 - $1)) <= $5
$$;

-- RA folded into [0, 360).
CREATE OR REPLACE FUNCTION qserv.ra_norm(ra double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $1 - 360 * floor($1 / 360)
$$;

-- Is (ra, dec) in the box ra_min..ra_max, dec_min..dec_max (scisql semantics: the RA range
-- wraps through 0 when ra_min > ra_max; a range of 360 degrees or more is the full circle)?
CREATE OR REPLACE FUNCTION qserv.pt_in_box(
    ra double precision, decl double precision,
    ra_min double precision, dec_min double precision,
    ra_max double precision, dec_max double precision)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT $2 BETWEEN $4 AND $6 AND (
        $5 - $3 >= 360
        OR CASE WHEN qserv.ra_norm($3) <= qserv.ra_norm($5)
                THEN qserv.ra_norm($1) BETWEEN qserv.ra_norm($3) AND qserv.ra_norm($5)
                ELSE qserv.ra_norm($1) >= qserv.ra_norm($3)
                     OR qserv.ra_norm($1) <= qserv.ra_norm($5) END)
$$;

-- Is (ra, dec) in the ellipse centred on (ra0, dec0) with semi-axes smaa, smia (arcsec)
-- and position angle pa (degrees east of north), in the tangent plane at the centre?
CREATE OR REPLACE FUNCTION qserv.pt_in_ellipse(
    ra double precision, decl double precision, ra0 double precision, dec0 double precision,
    smaa double precision, smia double precision, pa double precision)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT cos_c > 0 AND
        ((xi * sind($7) + eta * cosd($7)) / ($5 / 3600.0)) ^ 2
        + ((-xi * cosd($7) + eta * sind($7)) / ($6 / 3600.0)) ^ 2 <= 1
    FROM (SELECT
            degrees(cosd($2) * sind($1 - $3) / nullif(cos_c, 0)) AS xi,
            degrees((cosd($4) * sind($2) - sind($4) * cosd($2) * cosd($1 - $3))
                    / nullif(cos_c, 0)) AS eta,
            cos_c
          FROM (SELECT sind($4) * sind($2) + cosd($4) * cosd($2) * cosd($1 - $3) AS cos_c) c
         ) t
$$;

-- Is (ra, dec) in the spherical polygon with vertices poly = {ra1, dec1, ra2, dec2, ...}?
-- As sciSQL's scisql_s2PtInCPoly (geometry.c, scisql_s2cpoly_init / _cv3): each edge's
-- plane normal is v[i] x v[i+1]; all normals are flipped if the sum of the vertices is
-- on the negative side of the first edge's plane (clockwise vertices); the point is in
-- when it is on the non-negative side of every edge's plane. For a convex polygon in
-- either orientation that is the polygon; for a non-convex vertex list it is what
-- sciSQL answers (the intersection of the edges' half-spheres, as oriented).
CREATE OR REPLACE FUNCTION qserv.pt_in_cpoly(
    ra double precision, decl double precision, poly double precision[])
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH v AS (
        SELECT i, cosd($3[2 * i]) * cosd($3[2 * i - 1]) AS x,
                  cosd($3[2 * i]) * sind($3[2 * i - 1]) AS y,
                  sind($3[2 * i]) AS z,
                  array_length($3, 1) / 2 AS n
        FROM generate_series(1, array_length($3, 1) / 2) AS i
    ), c AS (SELECT sum(x) AS x, sum(y) AS y, sum(z) AS z FROM v
    ), e AS (  -- edge normals a x b
        SELECT a.i, a.y * b.z - a.z * b.y AS nx, a.z * b.x - a.x * b.z AS ny,
               a.x * b.y - a.y * b.x AS nz
        FROM v a JOIN v b ON b.i = a.i % a.n + 1
    ), o AS (  -- the orientation, from the first edge
        SELECT CASE WHEN e.nx * c.x + e.ny * c.y + e.nz * c.z < 0 THEN -1 ELSE 1 END AS s
        FROM e, c WHERE e.i = 1
    )
    SELECT bool_and(
        o.s * (e.nx * cosd($2) * cosd($1) + e.ny * cosd($2) * sind($1) + e.nz * sind($2)) >= 0)
    FROM e, o
$$;

-- Photometry (as scisql): AB magnitudes from fluxes in nJy, and back.
CREATE OR REPLACE FUNCTION qserv.nanojansky_to_abmag(flux double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN $1 > 0 THEN -2.5 * log($1 / 3631e9) END
$$;

CREATE OR REPLACE FUNCTION qserv.nanojansky_to_abmag_sigma(
    flux double precision, flux_sigma double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN $1 <> 0 THEN 2.5 / ln(10.0) * abs($2 / $1) END
$$;

-- flux in erg/s/cm^2/Hz
CREATE OR REPLACE FUNCTION qserv.flux_to_abmag(flux double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN $1 > 0 THEN -2.5 * log($1) - 48.6 END
$$;

CREATE OR REPLACE FUNCTION qserv.abmag_to_nanojansky(mag double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 3631e9 * power(10.0::double precision, -0.4 * $1)
$$;
