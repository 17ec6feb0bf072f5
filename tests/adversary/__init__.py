"""Adversarial fuzzing of pttsync's decoders (issue 14, part 3), shared by tools/fuzz.py and tests.

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
* `registry.TARGETS` names every target tools/fuzz.py runs (its docstring
  says how to add one).
"""

from __future__ import annotations
