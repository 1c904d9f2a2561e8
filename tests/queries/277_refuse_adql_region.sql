-- refuse: REGION (an STC-S string) is not supported
SELECT objectId FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), REGION('Circle ICRS 10 10 1')) = 1
