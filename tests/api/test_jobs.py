import time
import pytest
from qserv_py.client import Client

QUERIES = [
    "SELECT COUNT(*) FROM CcdVisit c1, CcdVisit c2, CcdVisit c3",
    "SELECT COUNT(*) FROM CcdVisit c1, CcdVisit c2, CcdVisit c3, CcdVisit c4",
    "SELECT COUNT(*) FROM ForcedSource f1 JOIN ForcedSource f2 ON f1.objectId = f2.objectId JOIN ForcedSource f3 ON f1.objectId = f3.objectId JOIN ForcedSource f4 ON f1.objectId = f4.objectId JOIN ForcedSource f5 ON f1.objectId = f5.objectId",
    "SELECT COUNT(*) FROM ForcedSource f1 JOIN ForcedSource f2 ON f1.objectId = f2.objectId JOIN ForcedSource f3 ON f1.objectId = f3.objectId JOIN ForcedSource f4 ON f1.objectId = f4.objectId JOIN ForcedSource f5 ON f1.objectId = f5.objectId JOIN ForcedSource f6 ON f1.objectId = f6.objectId JOIN ForcedSource f7 ON f1.objectId = f7.objectId",
]

@pytest.mark.parametrize("q", QUERIES)
def test_explore(client: Client, q: str) -> None:
    t = time.monotonic()
    try:
        r = client.query(q)
        print("\n", q[:60], time.monotonic() - t, r)
    except Exception as e:
        print("\n", q[:60], "ERR", e)
