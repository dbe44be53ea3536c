"""Where rows come from: arrays in memory (gmmcli.core.em.InMemoryRows), a file streamed
in chunks (stream.FileRows) or partitions kept on a Dask cluster (cluster.ClusterRows, the
optional dask extra). Each runs the core's functions on its parts of the rows, nothing more.
"""
