"""Adversaries for the tests and tools/fuzz.py: hostile bytes and a hostile peer (issue 14).

Every decoder that reads bytes someone else wrote (a peer, a client of the
control socket, a file) is fed mutants of real encodings, and may fail only
with the typed errors its docstring documents.  Anything else (a KeyError, a
TypeError, an OverflowError...) is a crasher.

* `corpus` builds the seed inputs with the project's own encoders: identities,
  topics, oplogs, every message type (some captured from a real sync round),
  tokens, key files, control requests and a real store file.
* `mutate` (byte level) and `cbormutate` (CBOR aware) derive hostile inputs.
* `decoders` says, per target, how to call the decoder on one input and
  which exceptions it documents; `engine` runs the seeded mutation loop.
* `stateful` is the adversarial peer: a Hypothesis state machine over real
  Requester/Receiver pairs (tests/test_adversary.py runs it in CI).
* `registry.TARGETS` names every target tools/fuzz.py runs (its docstring
  says how to add one).
"""

from __future__ import annotations
