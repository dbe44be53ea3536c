"""Where blocks of rows come from: arrays in memory (gmmcli.core.em.InMemoryRows) or a
file streamed in chunks (stream.FileRows). Each hands the core blocks of rows, nothing more.
"""
