"""The trio shell: transport, peer connections, the node and its control socket.

Everything here does I/O; everything it decides is delegated to `pttsync.core`.
"""
