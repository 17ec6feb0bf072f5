"""The sans-I/O core: records, Merkle tree, store and (later) the sync state machine.

Nothing in here imports trio, opens a socket or reads the wall clock: the
current time is always passed in.  The shell (`pttsync.net`, `pttsync.sim`,
`pttsync.cli`) is built around it.
"""
