"""The sans-I/O core: no trio, no sockets, no wall clock (the time is always passed in).

Records lie flat here (codec, timeutil, identity, oplog, oplogcodec, docop, merkle, topic,
memo); above them, by layer: store/, then lifecycle/, then sync/ and documents/.
"""
