"""The cluster: local instances, cluster files, metadata, catalogs, two-phase commit."""
