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
    WHERE array_position($3, NULL) IS NULL  -- a NULL vertex: NULL, as sciSQL
$$;

-- ADQL regions built from columns (qserv_py/query/region_functions.py). A polygon is
-- {ra1, dec1, ra2, dec2, ...}, convex, in either orientation; a NULL anywhere gives NULL.

-- A polygon of columns, checked: the vertex list itself if it is one convex polygon
-- smaller than a hemisphere (in either orientation; repeated vertices count once), as a
-- constant POLYGON must be (qserv_py/sky/polygon.py); a NULL anywhere passes (the
-- functions then give NULL); anything else raises SQLSTATE 22023 naming the row's
-- vertices, so that no query answers for a region the vertex list does not bound.
CREATE OR REPLACE FUNCTION qserv.convex_poly(poly double precision[])
RETURNS double precision[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m integer := coalesce(array_length(poly, 1), 0);
    x double precision[] := '{}';
    y double precision[] := '{}';
    z double precision[] := '{}';
    nx double precision[] := '{}';
    ny double precision[] := '{}';
    nz double precision[] := '{}';
    n integer := 0;
    i integer;
    k integer;
    j integer;
    a double precision;
    b double precision;
    c double precision;
    len double precision;
    side double precision;
    total double precision := 0;
    turn double precision := 0;
    why text;
BEGIN
    IF poly IS NULL OR array_position(poly, NULL) IS NOT NULL THEN
        RETURN poly;
    END IF;
    IF m % 2 = 1 THEN
        why := 'it has an odd number of coordinates';
    END IF;
    FOR i IN 1 .. m / 2 LOOP  -- unit vectors, a repeat of the previous vertex dropped
        IF why IS NULL AND (poly[2 * i] NOT BETWEEN -90 AND 90 OR poly[2 * i - 1] IN
                ('Infinity', '-Infinity', 'NaN')) THEN
            why := format('vertex %s has no place on the sky', i);
        END IF;
        a := cosd(poly[2 * i]) * cosd(poly[2 * i - 1]);
        b := cosd(poly[2 * i]) * sind(poly[2 * i - 1]);
        c := sind(poly[2 * i]);
        IF n = 0 OR (a - x[n]) ^ 2 + (b - y[n]) ^ 2 + (c - z[n]) ^ 2 > 1e-24 THEN
            n := n + 1;
            x[n] := a; y[n] := b; z[n] := c;
        END IF;
    END LOOP;
    WHILE n > 1 AND (x[1] - x[n]) ^ 2 + (y[1] - y[n]) ^ 2 + (z[1] - z[n]) ^ 2 <= 1e-24 LOOP
        n := n - 1;  -- a closing repeat of the first vertex
    END LOOP;
    IF why IS NULL AND n < 3 THEN
        why := format('it has %s distinct vertices, not at least 3', n);
    END IF;
    IF why IS NULL THEN
        FOR i IN 1 .. n LOOP  -- edge normals v[i] x v[i + 1], unit
            j := i % n + 1;
            a := y[i] * z[j] - z[i] * y[j];
            b := z[i] * x[j] - x[i] * z[j];
            c := x[i] * y[j] - y[i] * x[j];
            len := sqrt(a ^ 2 + b ^ 2 + c ^ 2);
            IF len < 1e-12 THEN
                why := format('vertices %s and %s are antipodal', i, j);
                EXIT;
            END IF;
            nx[i] := a / len; ny[i] := b / len; nz[i] := c / len;
            FOR k IN 1 .. n LOOP
                total := total + nx[i] * x[k] + ny[i] * y[k] + nz[i] * z[k];
            END LOOP;
        END LOOP;
    END IF;
    IF why IS NULL THEN  -- every vertex on the inner side of every edge
        side := CASE WHEN total < 0 THEN -1 ELSE 1 END;
        <<edges>>
        FOR i IN 1 .. n LOOP
            FOR k IN 1 .. n LOOP
                IF side * (nx[i] * x[k] + ny[i] * y[k] + nz[i] * z[k]) < -1e-12 THEN
                    why := format('vertex %s lies outside the edge from vertex %s to the next,'
                                  ' or its edges cross', k, i);
                    EXIT edges;
                END IF;
            END LOOP;
        END LOOP;
    END IF;
    IF why IS NULL THEN  -- smaller than a hemisphere, and around its centre once
        a := 0; b := 0; c := 0;
        FOR k IN 1 .. n LOOP
            a := a + x[k]; b := b + y[k]; c := c + z[k];
        END LOOP;
        len := sqrt(a ^ 2 + b ^ 2 + c ^ 2);
        FOR k IN 1 .. n LOOP
            j := k % n + 1;
            IF len < 1e-12 OR (a * x[k] + b * y[k] + c * z[k]) / len <= 1e-12
                    OR side * (a * nx[k] + b * ny[k] + c * nz[k]) / len <= 1e-12 THEN
                why := 'it spans a hemisphere or more';
                EXIT;
            END IF;
            turn := turn + atan2(  -- the angle from v[k] to v[j] seen from the centre
                (a * (y[k] * z[j] - z[k] * y[j]) + b * (z[k] * x[j] - x[k] * z[j])
                 + c * (x[k] * y[j] - y[k] * x[j])) / len,
                x[k] * x[j] + y[k] * y[j] + z[k] * z[j]
                - (a * x[k] + b * y[k] + c * z[k]) * (a * x[j] + b * y[j] + c * z[j]) / len ^ 2);
        END LOOP;
        IF why IS NULL AND abs(turn) > 3 * pi() THEN
            why := 'it winds around its centre more than once';
        END IF;
    END IF;
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'the POLYGON % of a row is not a convex polygon: %', poly, why
            USING ERRCODE = '22023',
                  HINT = 'a POLYGON must be convex and smaller than a hemisphere, its'
                         ' vertices in order (either direction); leave such rows out, or'
                         ' split the region into convex polygons';
    END IF;
    RETURN poly;
END
$$;

-- The vertices of a polygon as unit vectors, numbered 1..n.
CREATE OR REPLACE FUNCTION qserv.poly_vectors(poly double precision[])
RETURNS TABLE (v_i integer, v_x double precision, v_y double precision, v_z double precision,
               v_n integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT k, cosd($1[2 * k]) * cosd($1[2 * k - 1]), cosd($1[2 * k]) * sind($1[2 * k - 1]),
           sind($1[2 * k]), array_length($1, 1) / 2
    FROM generate_series(1, array_length($1, 1) / 2) AS k
    WHERE array_position($1, NULL) IS NULL
$$;

-- The edges of a polygon: from vertex a to the next, b; the normal a x b of the edge's
-- great circle; and s, 1 or -1, such that the polygon is where s * (normal . p) >= 0
-- (the orientation of qserv.pt_in_cpoly).
CREATE OR REPLACE FUNCTION qserv.poly_edges(poly double precision[])
RETURNS TABLE (e_ax double precision, e_ay double precision, e_az double precision,
               e_bx double precision, e_by double precision, e_bz double precision,
               e_nx double precision, e_ny double precision, e_nz double precision,
               e_s integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH v AS (SELECT * FROM qserv.poly_vectors($1)),
    c AS (SELECT sum(v_x) AS x, sum(v_y) AS y, sum(v_z) AS z FROM v),
    e AS (
        SELECT a.v_i AS i, a.v_x AS ax, a.v_y AS ay, a.v_z AS az,
               b.v_x AS bx, b.v_y AS b_y, b.v_z AS bz,
               a.v_y * b.v_z - a.v_z * b.v_y AS nx, a.v_z * b.v_x - a.v_x * b.v_z AS ny,
               a.v_x * b.v_y - a.v_y * b.v_x AS nz
        FROM v a JOIN v b ON b.v_i = a.v_i % a.v_n + 1
    ), o AS (
        SELECT CASE WHEN e.nx * c.x + e.ny * c.y + e.nz * c.z < 0 THEN -1 ELSE 1 END AS s
        FROM e, c WHERE e.i = 1
    )
    SELECT e.ax, e.ay, e.az, e.bx, e.b_y, e.bz, e.nx, e.ny, e.nz, o.s FROM e, o
$$;

-- Angle in degrees between two vectors (not necessarily unit).
CREATE OR REPLACE FUNCTION qserv.vec_sep(
    x1 double precision, y1 double precision, z1 double precision,
    x2 double precision, y2 double precision, z2 double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT atan2d(sqrt(($2 * $6 - $3 * $5) ^ 2 + ($3 * $4 - $1 * $6) ^ 2
                       + ($1 * $5 - $2 * $4) ^ 2),
                  $1 * $4 + $2 * $5 + $3 * $6)
$$;

-- Area of a polygon in square degrees: the sum of the signed areas (Van Oosterom and
-- Strackee) of the triangles from the vertices' centre to each edge, which for a simple
-- polygon is its sum of angles - (n - 2) pi; the smaller of the two sides.
CREATE OR REPLACE FUNCTION qserv.poly_area(poly double precision[])
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH v AS (SELECT * FROM qserv.poly_vectors($1)),
    c AS (
        SELECT x / l AS x, y / l AS y, z / l AS z
        FROM (SELECT sum(v_x) AS x, sum(v_y) AS y, sum(v_z) AS z,
                     nullif(sqrt(sum(v_x) ^ 2 + sum(v_y) ^ 2 + sum(v_z) ^ 2), 0) AS l
              FROM v) s
    ), t AS (
        SELECT 2 * atan2(
            a.v_x * (b.v_y * c.z - b.v_z * c.y) + a.v_y * (b.v_z * c.x - b.v_x * c.z)
                + a.v_z * (b.v_x * c.y - b.v_y * c.x),
            1 + a.v_x * c.x + a.v_y * c.y + a.v_z * c.z + b.v_x * c.x + b.v_y * c.y
                + b.v_z * c.z + a.v_x * b.v_x + a.v_y * b.v_y + a.v_z * b.v_z) AS e
        FROM v a JOIN v b ON b.v_i = a.v_i % a.v_n + 1, c
    )
    SELECT degrees(degrees(least(abs(sum(e)), 4 * pi() - abs(sum(e))))) FROM t
$$;

-- Centroid {ra, dec} of a polygon: the direction of the sum of the centres of the fan
-- triangles (v1, vk, vk+1), each weighted by its area (as frames.polygon_centroid).
CREATE OR REPLACE FUNCTION qserv.poly_centroid(poly double precision[])
RETURNS double precision[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH v AS (SELECT * FROM qserv.poly_vectors($1)),
    t AS (
        SELECT 2 * atan2(
            a.v_x * (b.v_y * c.v_z - b.v_z * c.v_y) + a.v_y * (b.v_z * c.v_x - b.v_x * c.v_z)
                + a.v_z * (b.v_x * c.v_y - b.v_y * c.v_x),
            1 + a.v_x * b.v_x + a.v_y * b.v_y + a.v_z * b.v_z + b.v_x * c.v_x + b.v_y * c.v_y
                + b.v_z * c.v_z + c.v_x * a.v_x + c.v_y * a.v_y + c.v_z * a.v_z) AS e,
            a.v_x + b.v_x + c.v_x AS mx, a.v_y + b.v_y + c.v_y AS my, a.v_z + b.v_z + c.v_z AS mz
        FROM v a JOIN v b ON a.v_i = 1 AND b.v_i BETWEEN 2 AND b.v_n - 1
                 JOIN v c ON c.v_i = b.v_i + 1
    ), w AS (
        SELECT sign(sum(e)) * sum(e * mx / m) AS x, sign(sum(e)) * sum(e * my / m) AS y,
               sign(sum(e)) * sum(e * mz / m) AS z, count(*) AS k
        FROM (SELECT *, nullif(sqrt(mx ^ 2 + my ^ 2 + mz ^ 2), 0) AS m FROM t) q
    )
    SELECT ARRAY[qserv.ra_norm(atan2d(y, x)), atan2d(z, sqrt(x ^ 2 + y ^ 2))] FROM w
    WHERE k > 0
$$;

-- Angular distance in degrees from (ra, dec) to a polygon: 0 inside, else to the nearest
-- point of an edge (the foot of the perpendicular if it falls on the edge, else the
-- nearer end).
CREATE OR REPLACE FUNCTION qserv.poly_dist(
    ra double precision, decl double precision, poly double precision[])
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH p AS (SELECT cosd($2) * cosd($1) AS px, cosd($2) * sind($1) AS py, sind($2) AS pz),
    d AS (
        SELECT e_s * (e_nx * px + e_ny * py + e_nz * pz) AS side,
            CASE WHEN e_nx ^ 2 + e_ny ^ 2 + e_nz ^ 2 > 0
                  AND (e_ay * pz - e_az * py) * e_nx + (e_az * px - e_ax * pz) * e_ny
                      + (e_ax * py - e_ay * px) * e_nz >= 0
                  AND (py * e_bz - pz * e_by) * e_nx + (pz * e_bx - px * e_bz) * e_ny
                      + (px * e_by - py * e_bx) * e_nz >= 0
                 THEN asind(least(1.0, abs(e_nx * px + e_ny * py + e_nz * pz)
                                       / sqrt(e_nx ^ 2 + e_ny ^ 2 + e_nz ^ 2)))
                 ELSE least(qserv.vec_sep(px, py, pz, e_ax, e_ay, e_az),
                            qserv.vec_sep(px, py, pz, e_bx, e_by, e_bz)) END AS dist
        FROM qserv.poly_edges($3), p
    )
    SELECT CASE WHEN bool_and(side >= 0) THEN 0.0 ELSE min(dist) END FROM d
$$;

-- INTERSECTS(CIRCLE, POLYGON): the polygon comes within r of the centre.
CREATE OR REPLACE FUNCTION qserv.circle_meets_poly(
    ra double precision, decl double precision, r double precision, poly double precision[])
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT qserv.poly_dist($1, $2, $4) <= $3
$$;

-- CONTAINS(CIRCLE, CIRCLE): the first disc inside the second.
CREATE OR REPLACE FUNCTION qserv.circle_in_circle(
    ra1 double precision, dec1 double precision, r1 double precision,
    ra2 double precision, dec2 double precision, r2 double precision)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT qserv.ang_sep($1, $2, $4, $5) + $3 <= $6
$$;

-- CONTAINS(CIRCLE, POLYGON): the centre at least r inside every edge's great circle.
CREATE OR REPLACE FUNCTION qserv.circle_in_poly(
    ra double precision, decl double precision, r double precision, poly double precision[])
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT bool_and(asind(greatest(-1.0, least(1.0,
               e_s * (e_nx * cosd($2) * cosd($1) + e_ny * cosd($2) * sind($1) + e_nz * sind($2))
               / sqrt(e_nx ^ 2 + e_ny ^ 2 + e_nz ^ 2)))) >= $3)
    FROM qserv.poly_edges($4) WHERE e_nx ^ 2 + e_ny ^ 2 + e_nz ^ 2 > 0
$$;

-- CONTAINS(POLYGON, CIRCLE): no point of the polygon nearer than 180 - r to the
-- antipode of the centre.
CREATE OR REPLACE FUNCTION qserv.poly_in_circle(
    poly double precision[], ra double precision, decl double precision, r double precision)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT qserv.poly_dist($2 + 180, -$3, $1) >= 180 - $4
$$;

-- CONTAINS(POLYGON, POLYGON): every vertex of the first in the second (which is convex).
-- (No call of qserv.pt_in_cpoly here: a SQL function called inside another is planned
-- again at every call; poly_vectors and poly_edges are inlined.)
CREATE OR REPLACE FUNCTION qserv.poly_in_poly(a double precision[], b double precision[])
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT bool_and(inside) FROM (
        SELECT bool_and(e_s * (e_nx * v_x + e_ny * v_y + e_nz * v_z) >= 0) AS inside
        FROM qserv.poly_vectors($1), qserv.poly_edges($2) GROUP BY v_i) s
$$;

-- INTERSECTS(POLYGON, POLYGON): a vertex of one in the other, or two edges crossing
-- (the sign test of S2's CrossingSign on the great-circle arcs).
CREATE OR REPLACE FUNCTION qserv.polys_intersect(a double precision[], b double precision[])
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN array_position($1, NULL) IS NULL AND array_position($2, NULL) IS NULL
        THEN EXISTS (SELECT 1 FROM qserv.poly_vectors($1), qserv.poly_edges($2) GROUP BY v_i
                     HAVING bool_and(e_s * (e_nx * v_x + e_ny * v_y + e_nz * v_z) >= 0))
          OR EXISTS (SELECT 1 FROM qserv.poly_vectors($2), qserv.poly_edges($1) GROUP BY v_i
                     HAVING bool_and(e_s * (e_nx * v_x + e_ny * v_y + e_nz * v_z) >= 0))
          OR EXISTS (
              SELECT 1 FROM (
                  SELECT -sign(p.e_nx * q.e_ax + p.e_ny * q.e_ay + p.e_nz * q.e_az) AS acb,
                         sign(p.e_nx * q.e_bx + p.e_ny * q.e_by + p.e_nz * q.e_bz) AS bda,
                         -sign(q.e_nx * p.e_bx + q.e_ny * p.e_by + q.e_nz * p.e_bz) AS cbd,
                         sign(q.e_nx * p.e_ax + q.e_ny * p.e_ay + q.e_nz * p.e_az) AS dac
                  FROM qserv.poly_edges($1) p, qserv.poly_edges($2) q) s
              WHERE acb <> 0 AND bda = acb AND cbd = acb AND dac = acb)
        END
$$;

-- One corner of an ADQL BOX centred on (ra, dec): {ra, dec} of the vector
-- u * centre + e * east + n * north (the tangent basis of regions.Box; at a pole north
-- points to ra + 180). One expression, so that it is inlined.
CREATE OR REPLACE FUNCTION qserv.box_corner(
    ra double precision, decl double precision,
    u double precision, e double precision, n double precision)
RETURNS double precision[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[
        qserv.ra_norm(atan2d($3 * cosd($2) * sind($1) + $4 * cosd($1) - $5 * sind($2) * sind($1),
                             $3 * cosd($2) * cosd($1) - $4 * sind($1) - $5 * sind($2) * cosd($1))),
        atan2d($3 * sind($2) + $5 * cosd($2),
               sqrt(($3 * cosd($2) * cosd($1) - $4 * sind($1) - $5 * sind($2) * cosd($1)) ^ 2
                    + ($3 * cosd($2) * sind($1) + $4 * cosd($1) - $5 * sind($2) * sind($1)) ^ 2))]
$$;

-- The ADQL BOX of centre (ra, dec), width and height as its polygon {ra1, dec1, ...}
-- (corners north-east, north-west, south-west, south-east: sides at right angles to
-- the arms' ends, as regions.Box); NULL unless 0 < width, height < 180.
CREATE OR REPLACE FUNCTION qserv.box_poly(
    ra double precision, decl double precision, width double precision, height double precision)
RETURNS double precision[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN $3 > 0 AND $3 < 180 AND $4 > 0 AND $4 < 180 AND $2 BETWEEN -90 AND 90
        THEN qserv.box_corner($1, $2, cosd($3 / 2) * cosd($4 / 2), sind($3 / 2) * cosd($4 / 2),
                              cosd($3 / 2) * sind($4 / 2))
             || qserv.box_corner($1, $2, cosd($3 / 2) * cosd($4 / 2),
                                 -sind($3 / 2) * cosd($4 / 2), cosd($3 / 2) * sind($4 / 2))
             || qserv.box_corner($1, $2, cosd($3 / 2) * cosd($4 / 2),
                                 -sind($3 / 2) * cosd($4 / 2), -cosd($3 / 2) * sind($4 / 2))
             || qserv.box_corner($1, $2, cosd($3 / 2) * cosd($4 / 2),
                                 sind($3 / 2) * cosd($4 / 2), -cosd($3 / 2) * sind($4 / 2))
        END
$$;

-- Area in square degrees of a disc of radius r (NULL unless 0 <= r <= 180).
CREATE OR REPLACE FUNCTION qserv.circle_area(r double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN $1 BETWEEN 0 AND 180
                THEN 2 * pi() * (1 - cosd($1)) * (180 / pi()) ^ 2 END
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
