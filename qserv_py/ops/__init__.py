"""Cluster operations: worker health, replication, chunk moves, membership.

Beside :mod:`qserv_py.exec`, not threaded through it: execution asks this package which
workers are live (:mod:`qserv_py.ops.health`) and tells it which failed; the rest
(copies, moves, the replication controller, workers coming and going) runs from the
CLI, the admin routes and the service's replication loop.
"""
