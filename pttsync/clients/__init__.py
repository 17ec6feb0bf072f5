"""pttsync from any Python program: clients of a node's control socket, and an embedded node.

* `blocking.Client`: a blocking client, usable from any thread (Django,
  Flask, scripts).  No trio, no event loop.
* `aio.AsyncClient`: the same for asyncio (FastAPI, aiohttp).
* `embed.start_node`: a node in a background thread of this process, with
  its own trio loop, and a `NodeHandle` (a `Client` of it) to use and stop it.

The clients speak the control protocol of docs/pip-11/control.md; what they
share of it (requests, answers, errors, paging) is pttsync.net.controlcodec.
This package sits above `pttsync.net` as the CLI does: it imports the net
layer's protocol pieces (and `embed`, its node), and nothing in `net` or
below imports it.  Nothing here is imported until used: `import pttsync`
stays light, and only `embed` imports trio.
"""

from __future__ import annotations
