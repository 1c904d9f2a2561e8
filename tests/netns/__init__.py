"""A multi-host test topology on one machine (Linux network namespaces on a bridge) and
faults injected into it for real: killed, hung and cut-off workers, slow links.

>>> with Topology(("czar", "worker1")) as topo:                     # doctest: +SKIP
...     LocalCluster(root).init(settings, network=topo.network())
"""

from tests.netns.faults import Faults, descendants, state
from tests.netns.proxy import DelayProxy, spec_through, target_of
from tests.netns.topology import Host, NetnsError, Topology, existing, made_by, sweep, unavailable

__all__ = [
    "DelayProxy",
    "Faults",
    "Host",
    "NetnsError",
    "Topology",
    "descendants",
    "existing",
    "made_by",
    "spec_through",
    "state",
    "sweep",
    "target_of",
    "unavailable",
]
