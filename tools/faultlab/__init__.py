"""The fault harness behind tools/faults.py: real `pttsync run` processes, each in
its own Linux network namespace, faulted with real tools (docs/pip-11/faults.md).

* netlab.py: the namespaces, the bridge between them, and the network faults
  (nftables partitions, links down, tc tbf bandwidth caps).
* cluster.py: the peer processes (kill -9, SIGSTOP/SIGCONT, libfaketime
  clocks, restarts) and the workload with its history of acknowledged writes.
* checks.py: the invariants at the end, read from the stopped peers' stores.
* scenarios.py: the named scenarios and the report.
"""
