"""Every fuzz target tools/fuzz.py knows, by name.

A target is any callable `(rng: random.Random, budget: engine.Budget) ->
engine.Outcome` (`engine.TargetFn`).  It must:

* draw all its randomness from `rng` (a run is then a pure function of the
  seed the tool was given),
* stop when `budget.inputs` inputs are done or `budget.seconds` have passed
  (whichever the budget holds), calling `budget.progress(inputs, failures)`
  now and then if it is set,
* count what it ran in `Outcome.inputs`, and report each failing input
  with `Outcome.fail(Failure(name, input bytes, "Type: message", where))`,
  the input as bytes someone can replay (a stateful target can record its
  script of moves as bytes).

To add a target, write such a callable (or a `DecoderTarget`: seeds,
mutators, the call and its documented errors) and add it to TARGETS below,
as the stateful adversary (`stateful.adversary_target`) is.
`python tools/fuzz.py --target NAME` then runs it, and a plain
`tools/fuzz.py` runs it with the others.  Give it a `run_one(data) ->
BaseException | None` method too if `--replay` should work for it: None
when the input passes, the documented error when it is refused cleanly, an
`engine.UnusableInput` for bytes it cannot run at all; a failure raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decoders import TARGETS as DECODERS
from .stateful import adversary_target

if TYPE_CHECKING:
    from .engine import TargetFn

TARGETS: dict[str, TargetFn] = {**DECODERS, "adversary": adversary_target}
"""Name -> target; tools/fuzz.py runs them in this order."""
