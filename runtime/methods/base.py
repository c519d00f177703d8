"""The method interface: what a worker sends, what the PS does with it, and the state each keeps.

One runtime serves every method (in the spirit of GRACE's compressor / memory / communicator
split). A method builds graph pieces on both sides, per *phase* — a kind of step; most methods have
one, MP² has a full-push phase and a partial one — and the PS announces the next step's phase in
every reply, so workers and PS always agree on it:

    worker, each step:  train locally and send `WorkerPhase.up`          (one session run)
                        take the reply, `WorkerPhase.apply(reply)`        (one session run)
    PS, each step:      gather every worker's `up`, update the global model and make the reply:
                        `PSPhase.reply`                                   (one session run)

A step may have several exchanges (PowerSGD: P up and back, then Q up and back): a worker's
`WorkerPhase.then` turns each reply but the last into its next payload, and the PS answers each with
the matching round of `PSPhase.then` (one session run each, gathering again). A step may also have
none (local SGD): `Method.is_local(step)` says so on both sides, from the options alone, so no round
trip is needed to agree on it; the worker then runs `Method.build_local` and the PS runs nothing.
The phase the PS announces in a reply is that of the next step that exchanges.

The global model lives in one PS variable; methods update it in the graph, so a step costs the PS
a single session call and no copy of the model passes through Python. Bytes on the wire are
measured from the tensors sent, so a method never reports its own traffic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import tensorflow as tf

from helpers.optim import MODEL_EPSILON, Adam
from models import Layout
from runtime.methods.local_model import LocalModel
from runtime.methods.options import Options


@dataclass(frozen=True)
class RunInfo:
    """What every method may know about the run, fixed before any graph is built."""

    workers: int
    steps_per_epoch: int
    epochs: int
    lr: float
    seed: int


@dataclass(frozen=True)
class PSContext:
    """What the PS's run tells a method preparing to serve (`Method.prepare_ps`): no argparse reaches a method."""

    out: str                     # the run directory
    model: str                   # --model as given (a name or FILE.py:FUNCTION)
    push: str                    # --push as given
    data_flags: tuple[str, ...]  # the flags that load this run's data again (for a process the method starts)
    seed: int
    step_timeout: float
    resume: bool


@dataclass
class WorkerSide:
    """What the generic worker graph gives a method to build on."""

    local: LocalModel
    loss: tf.Tensor
    lr: tf.Tensor          # the learning rate of this step (the schedule applied to `step`)
    step: tf.Variable      # steps this worker has done (int64), advanced by the runtime
    device: str
    state: list[tf.Variable] = field(default_factory=list)  # saved and restored with the run
    scratches: list[tf.Variable] = field(default_factory=list)  # live within a step only
    _adams: dict[str, Adam] = field(default_factory=dict)
    # What `gradients` returns in place of backpropagating `loss` (None: backpropagation). Set only for a stand-in
    # worker (WorkerGraph's `simulated`, benchmarks/ps_step.py): the method's graph built on it stays its own.
    stand_in: Callable[[list[tf.Variable]], list[tf.Tensor]] | None = None

    def adam(self, var_list: list[tf.Variable], grads: list[tf.Tensor] | None = None, clock: str = "shared") -> tf.Operation:
        """A local Adam step on `var_list` (helpers/optim.py's Adam, the model's ε); its state is worker state.

        One optimizer per `clock` serves every call, so a variable keeps its moments when a method
        trains different subsets in different phases. Adam's bias correction counts the steps of its
        optimizer: variables trained only on some steps (MP²'s predicted group, on full pushes) need a
        clock of their own, or after many skipped steps their second moment is taken as settled while
        it holds a few updates' worth, and their steps come out several times too large.
        `grads` (in var_list's order) saves a second backward pass when the caller has them.
        """
        if clock not in self._adams:
            prefix = "local_adam" if clock == "shared" else f"local_adam_{clock}"
            self._adams[clock] = Adam(lr=self.lr, epsilon=MODEL_EPSILON,
                                      make=lambda name, value: self.variable(f"{prefix}/{name}", value, value.dtype))
        return self._adams[clock].apply(self.gradients(var_list) if grads is None else grads, var_list)

    def forget_momentum(self, var_list: list[tf.Variable]) -> tf.Operation:
        """Zero Adam's first moment of `var_list`: after steps without updates it points somewhere stale.

        Keeping it would apply an old gradient direction at a far-away point in one step; zero is what
        the moment would have decayed to (0.9^k) had the skipped steps been zero-gradient steps. The
        second moment is kept: on a clock of the variables' own it is their recent gradients' scale.
        """
        slots = [adam.first_moment(v) for adam in self._adams.values() for v in var_list]
        return tf.group(*[m.assign(tf.zeros_like(m)) for m in slots if m is not None])

    def gradients(self, var_list: list[tf.Variable] | None = None) -> list[tf.Tensor]:
        """The gradients of the loss on this step's batch, in var_list's order (default: the whole model)."""
        var_list = var_list or self.local.variables()
        if self.stand_in is not None:
            return self.stand_in(var_list)
        return [tf.convert_to_tensor(g) for g in tf.gradients(self.loss, var_list)]

    def variable(self, name: str, value, dtype=tf.float32) -> tf.Variable:
        """A state variable of the method on this worker (saved and restored with the run)."""
        return _state_variable(self.state, self.device, name, value, dtype)

    def scratch(self, name: str, value, dtype=tf.float32) -> tf.Variable:
        """A variable that carries a value from one exchange of a step to the next (not saved)."""
        return _state_variable(self.scratches, self.device, name, value, dtype)


@dataclass
class PSSide:
    """What the generic PS graph gives a method to build on."""

    layout: Layout
    model: tf.Variable     # the global model, a flat float32 vector on the PS
    workers: int
    step: tf.Tensor        # the global step being aggregated (int64 placeholder, 0-based)
    device: str
    gather: Callable[[], list[list[tf.Tensor]]]  # every worker's payload (fresh dequeue ops)
    state: list[tf.Variable] = field(default_factory=list)
    scratches: list[tf.Variable] = field(default_factory=list)

    def variable(self, name: str, value, dtype=tf.float32) -> tf.Variable:
        """A state variable of the method on the PS (saved in the checkpoint, restored on resume)."""
        return _state_variable(self.state, self.device, name, value, dtype)

    def scratch(self, name: str, value, dtype=tf.float32) -> tf.Variable:
        """A variable that carries a value from one exchange of a step to the next (not saved)."""
        return _state_variable(self.scratches, self.device, name, value, dtype)


def _state_variable(state: list[tf.Variable], device: str, name: str, value, dtype) -> tf.Variable:
    with tf.device(device):
        v = tf.Variable(value, dtype=dtype, trainable=False, name=name)
    state.append(v)
    return v


LOCAL = -1  # the phase a trace records for a step without exchange (`Method.is_local`); records name it "local"


@dataclass
class WorkerPhase:
    up: list[tf.Tensor]                                   # what the worker sends (after training)
    apply: Callable[[list[tf.Tensor]], tf.Operation]     # how it takes the PS's (last) reply
    enter: tf.Operation | None = None                     # run before a step of this phase that follows another phase
    # Further exchanges of the step: each turns the reply before it into the next payload. They
    # run in session runs of their own, so what one needs of an earlier run lives in variables.
    then: tuple[Callable[[list[tf.Tensor]], list[tf.Tensor]], ...] = ()


@dataclass
class PSPhase:
    reply: list[tf.Tensor]  # what every worker receives (computed after the model update)
    # The replies of further exchanges, one per `WorkerPhase.then`; each is fetched in a session run
    # of its own and calls `ps.gather()` itself. Rounds share values through variables only
    # (`PSSide.scratch`), never through graph edges, or a later round would rerun an earlier one.
    then: tuple[list[tf.Tensor], ...] = ()


def syncs_at(step: int, steps_per_epoch: int, every: int) -> bool:
    """Periodic exchange (`--sync-every`): global step `step` exchanges when it is every `every`-th step or the
    last of an epoch (so the PS evaluates an exchanged model at every epoch end, and a resume starts from one)."""
    return (step + 1) % every == 0 or (step + 1) % steps_per_epoch == 0


def ordered_sum(tensors: list[tf.Tensor]) -> tf.Tensor:
    """The element-wise sum of same-shaped tensors, added in list order, the same bits on every run.

    Not tf.add_n: its CPU kernel accumulates into an input buffer it may reuse and moves that input to
    the front, so the order of the sum, and a sum's last bit, depended on which buffers other ops still
    held. A baseline run parted from its twin that way (the same four payloads, a reply differing in the
    last bit of 5,444 values at step 660). A stack summed over its first axis adds them in order.
    """
    return tf.reduce_sum(tf.stack(tensors), axis=0)


def outer_step(model: tf.Tensor, target: tf.Tensor, lr: float, momentum: float,
               velocity: tf.Variable | None) -> tuple[tf.Tensor, list[tf.Operation]]:
    """DiLoCo's outer step (Douillard et al., 2023) from the global `model` towards `target` (the workers' average,
    or MP²'s assembled model), g = model − target (`nesterov`). Returns the new model and the velocity's update
    (none without momentum)."""
    new, v = nesterov(model, model - target, lr, momentum, velocity)
    return new, [] if v is None else [velocity.assign(v)]


def nesterov(model: tf.Tensor, gradient: tf.Tensor, lr: float, momentum: float,
             velocity: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor | None]:
    """The outer optimizer, as torch.optim.SGD(nesterov=True): v ← μ·v + g; model − lr·(g + μ·v).
    Returns (the new model, the new velocity; None without momentum)."""
    if momentum <= 0.0:
        return model - lr * gradient, None
    v = momentum * velocity + gradient
    return model - lr * (gradient + momentum * v), v


def mean(payloads: list[tf.Tensor]) -> tf.Tensor:
    """The element-wise mean of the workers' tensors (their ordered sum over their number)."""
    return ordered_sum(payloads) / float(len(payloads))


class Whole:
    """The global model over the PS's pieces, seen whole: for a method whose PS update needs the whole model in one
    place (MP²'s prediction, the WNN's nowcaster; `Method.build_pieces`).

    Each piece averages its slice of the workers' payloads on its own PS task, where they arrive; the update runs on
    the first piece's device over the pieces' averages put together, and each piece is written its slice of the
    result and replies with it. So a PS task's link carries its own slice of every worker's payload and reply, and
    one copy of what the update reads and writes crosses between PS tasks. The averages are element-wise and the
    update the same graph on the same inputs, so the model is one PS's bit for bit. With one piece this is that
    piece: no slice, no copy.
    """

    def __init__(self, layout: Layout, sides: list[PSSide]) -> None:
        self.layout, self.sides, self.device = layout, sides, sides[0].device
        first = sides[0]
        # The update's state lives on the first piece's task and is saved with that piece's.
        self.side = first if len(sides) == 1 else PSSide(layout, None, first.workers, first.step, first.device,
                                                         None, first.state, first.scratches)

    def read(self) -> tf.Tensor:
        """The whole global model, on the first piece's device."""
        if len(self.sides) == 1:
            return self.sides[0].model.read_value()
        with tf.device(self.device):
            return tf.concat([s.model.read_value() for s in self.sides], 0)

    def gather(self) -> list[list[list[tf.Tensor]]]:
        """Every piece's payloads of this exchange (fresh dequeue ops, on the piece's task): [piece][worker][slot]."""
        out = []
        for side in self.sides:
            with tf.device(side.device):
                out.append(side.gather())
        return out

    def means(self, payloads: list[list[list[tf.Tensor]]], sizes: list[int], slot: int = 0) -> list[tf.Tensor]:
        """The workers' mean of `slot`, averaged by each piece on its own task (piece k's has sizes[k] values)."""
        means = []
        for side, piece, size in zip(self.sides, payloads, sizes):
            with tf.device(side.device):
                means.append(tf.reshape(mean([p[slot] for p in piece]), [size]))
        return means

    def concat(self, pieces: list[tf.Tensor]) -> tf.Tensor:
        """The pieces' tensors one after another, on the first piece's task."""
        if len(pieces) == 1:
            return pieces[0]
        with tf.device(self.device):
            return tf.concat(pieces, 0)

    def write(self, model: tf.Tensor, after: list = ()) -> tuple[list[tf.Tensor], tf.Operation]:
        """Make `model` (a whole flat model, on the first piece's device) the global model once `after` ran: each
        piece's slice (read on its own device after every piece is written: what it replies) and the writes."""
        if len(self.sides) == 1:
            with tf.control_dependencies(list(after)):
                written = self.sides[0].model.assign(model).op
            return [model], written
        with tf.device(self.device):
            slices = tf.split(model, [s.layout.total for s in self.sides])
        writes = []
        with tf.control_dependencies(list(after)):
            for side, piece in zip(self.sides, slices):
                with tf.device(side.device):
                    writes.append(side.model.assign(piece).op)
        written = tf.group(*writes)
        replies = []
        for side in self.sides:
            with tf.device(side.device), tf.control_dependencies([written]):
                replies.append(side.model.read_value())
        return replies, written

    def phases(self, replies: list[list[tf.Tensor]], written: tf.Operation) -> list[PSPhase]:
        """Each piece's phase: its reply (`replies[k]`), sent from its own task once every piece is written."""
        out = []
        for side, reply in zip(self.sides, replies):
            with tf.device(side.device), tf.control_dependencies([written]):
                out.append(PSPhase(reply=[tf.identity(t) for t in reply]))
        return out


class Method:
    """Base class; a method overrides the builders and, where it has any, its options."""

    name = ""
    summary = ""  # one line for --help and the README table
    Options: type[Options] = Options  # the method's typed options (runtime/methods/options.py)
    up_dtypes: tuple[tf.DType, ...] = (tf.float32,)
    down_dtypes: tuple[tf.DType, ...] = (tf.float32,)
    # The rate a user who names the method gets: the tuned frontier's choice on the main task at the measured
    # preset's 30 epochs (results/frontier, LeNet-5 / Fashion-MNIST, validation-selected) where it has tuned the
    # method, else the frontier's common 0.003 (baseline, sync and PowerSGD rank 2 chose it; MP² at H=1 and the
    # WNN are not tuned yet).
    default_lr = 0.003
    paper_lr = 1e-3    # the MP² reference's (--preset paper)
    phase_names: dict[int, str] = {0: "step"}
    # Whether the PS's graph can be built over pieces of the model (several PS tasks, --chunks; runtime/shards.py): a
    # per-tensor method by default, each piece as the method over the piece's tensors alone (`for_part`), computing
    # on its piece what the method over the whole model does; a method whose update needs the whole model by its own
    # `build_pieces`. A worker cuts its payload into the pieces' payloads (`split`) and puts the pieces' replies
    # together again (`join`).
    shardable = False

    def __init__(self, layout: Layout, opts: Options, run: RunInfo) -> None:
        if not isinstance(opts, self.Options):
            raise TypeError(f"{self.name} takes {self.Options.__name__}, not {type(opts).__name__}")
        self.layout, self.opts, self.run = layout, opts, run

    # --- pieces of the model (several PS tasks, --chunks) --------------------------------------------
    def for_part(self, layout: Layout) -> "Method":
        """The method as the PS builds it for one piece of the model: over `layout`, a contiguous run of this
        method's tensors. Its payloads and replies are those of `split` and `join`."""
        return type(self)(layout, self.opts, self.run)

    def split(self, payload: list[tf.Tensor], parts: list, phase: int, exchange: int) -> list[list[tf.Tensor]]:
        """A worker's payload for exchange `exchange` (0: the first) of a `phase` step, cut into the payloads of the
        pieces `parts` (runtime.shards.Shard: a contiguous run of the layout's tensors, `start`..`end` in the
        flat model, in layout order): piece k's is what a worker of `for_part(parts[k].layout)` sends. By default
        the payload is one float32 vector of the whole model, and a piece's its slice. A piece's reply must depend
        on the payloads it gathers even when they are empty (a piece with none of the tensors an exchange
        concerns): a dequeue that nothing fetched depends on never runs, and the next exchange would read them."""
        return [[payload[0][part.start:part.end]] for part in parts]

    def build_pieces(self, sides: list["PSSide"]) -> list[tuple["Method", dict[int, "PSPhase"]]]:
        """The PS's graph over the pieces of the model (`sides`, in layout order; one with one PS task and no --chunks):
        per piece, the method that serves it and its phases. By default a per-tensor method (`shardable`) builds each
        piece as the method over the piece's tensors, on the piece's device; a method whose update needs the whole
        model overrides this and builds its pieces together (`Whole`)."""
        built = []
        for side in sides:
            own = self if len(sides) == 1 else self.for_part(side.layout)
            with tf.device(side.device):
                built.append((own, own.build_ps(side)))
        return built

    def join(self, replies: list[list[tf.Tensor]], parts: list, phase: int, exchange: int) -> list[tf.Tensor]:
        """The reply to exchange `exchange` made of every piece's (the inverse of `split` for replies). By default
        one float32 vector of the whole model, the pieces' slices one after another."""
        return [tf.concat([r[0] for r in replies], 0)]

    # --- both sides ---------------------------------------------------------------------------
    def handshake_options(self) -> dict:
        """The options a worker must share with the PS (compared by name at the handshake)."""
        return self.opts.handshake()

    def precheck(self) -> None:
        """The checks of the method's options and files that need no data or graph, made by the local
        launcher before it starts any process; ValueError (or the file's own error) in one line."""

    # --- worker ---------------------------------------------------------------------------------
    def prepare_worker(self, log=print) -> None:
        """Read what the worker needs before building (a file the PS reads too); may raise ValueError."""

    def worker_holds(self) -> dict:
        """What this worker holds besides its flags (e.g. a file's hash), sent with its hello."""
        return {}

    def build_join(self, w: WorkerSide) -> tf.Operation | None:
        """Built before the other worker pieces; run once after the worker takes the PS's model at admission
        (before a resume restores its state): what a method sets from that model (SparseLoCo's anchor)."""
        return None

    def build_worker(self, w: WorkerSide) -> dict[int, WorkerPhase]:
        raise NotImplementedError

    def build_local(self, w: WorkerSide) -> tf.Operation | None:
        """The training op of a local step (`is_local`); None for a method that has none."""
        return None

    def worker_epoch_start(self, w: WorkerSide, session: tf.compat.v1.Session, epoch: int) -> None:
        """Per-epoch settings on the worker (DGC's warm-up ratio)."""

    # --- PS -------------------------------------------------------------------------------------
    def prepare_ps(self, context: PSContext, dataset, log=print) -> None:
        """Read what the PS needs before building (files named by PS-only options); may raise ValueError."""

    def saves_mid_epoch(self) -> bool:
        """Whether the PS may save this method's state after any exchanging step (`--checkpoint-every`), not
        only at epoch ends: False for a method whose `checkpoint` must wait for work in flight."""
        return True

    def checkpoint(self, session: tf.compat.v1.Session) -> tuple[dict[str, np.ndarray], dict]:
        """State the method keeps outside its state variables (online MP²'s schedule and predictors), as
        arrays and JSON for the PS's checkpoint; what `restore` takes back on --resume."""
        return {}, {}

    def restore(self, session: tf.compat.v1.Session, arrays: dict[str, np.ndarray], meta: dict, step: int) -> None:
        """Take back what `checkpoint` saved; the resumed run's first step is `step`. ValueError if unusable."""

    def build_ps(self, ps: PSSide) -> dict[int, PSPhase]:
        raise NotImplementedError

    def admit_worker(self, index: int, holds: dict) -> str:
        """Why worker `index`, holding `holds` (its `worker_holds`), cannot join; "" if it can."""
        return ""

    def ps_inputs(self) -> dict:
        """What the PS reads besides its flags (e.g. a predictor file and its hash): a resume must match it."""
        return {}

    def synced(self, phase: int, model: tf.Tensor) -> tf.Tensor:
        """The part of a flat model that the PS and every worker hold equal after a step of `phase` (what
        --verify-sync compares): the whole model for most methods; the synced fragment for Streaming DiLoCo."""
        return model

    def phase_name(self, phase: int) -> str:
        return self.phase_names.get(phase, str(phase))

    def next_phase(self, step: int) -> int:
        """The phase of global step `step` (0-based), decided by the PS before it is announced.

        Called for exchanging steps only, in order."""
        return 0

    def is_local(self, step: int) -> bool:
        """Whether global step `step` has no exchange: the worker trains alone (`build_local`), the PS
        does nothing. Both sides call it, so it must follow from the handshake options and `run`."""
        return False

    def next_exchange(self, step: int) -> int | None:
        """The first step from `step` on that exchanges with the PS (None: none is left in the run)."""
        end = self.run.epochs * self.run.steps_per_epoch
        return next((t for t in range(step, end) if not self.is_local(t)), None)

    def after_step(self, session: tf.compat.v1.Session, step: int, phase: int) -> None:
        """Python-side bookkeeping after the PS's step `step` ran (rarely needed)."""

    def stats(self) -> dict:
        """Method-specific figures for the run's summary (e.g. online MP²'s training rounds)."""
        return {}

    def drain_events(self) -> list[dict]:
        """What happened since the last call (e.g. a switch of phase), for the epoch's record."""
        return []

    def closing_lines(self) -> list[str]:
        """Lines for the PS's report at the end of the run (what the method did; a warning if it never engaged)."""
        return []

    def close(self) -> None:
        """Stop whatever the method started (a background process)."""


def tensors_of(layout: Layout, part) -> range:
    """The indices in `layout.params` of the tensors of `part` (a runtime.shards.Shard of `layout`)."""
    first = next(i for i, p in enumerate(layout.params) if layout.offset(p.name)[0] == part.start)
    return range(first, first + len(part.layout.params))


def spans(sizes: list[int], indices: range) -> tuple[int, int]:
    """[start, end) of the items `indices` (a contiguous range) in the concatenation of items of `sizes`."""
    return sum(sizes[:indices.start]), sum(sizes[:indices.stop])


def state_arrays(session: tf.compat.v1.Session, variables: list[tf.Variable]) -> dict[str, np.ndarray]:
    """The values of state variables, keyed by position and name (for .npz files)."""
    values = session.run(variables) if variables else []
    return {f"state/{i:03d}/{v.op.name}": np.asarray(x) for i, (v, x) in enumerate(zip(variables, values))}


def restore_state(session: tf.compat.v1.Session, variables: list[tf.Variable], arrays: dict[str, np.ndarray], where: str) -> None:
    """Load state saved by state_arrays into the same variables (same method, same model)."""
    saved = sorted(k for k in arrays if k.startswith("state/"))
    if len(saved) != len(variables):
        raise ValueError(f"{where} holds {len(saved)} state arrays, this run has {len(variables)}: "
                         f"it was written by another method or model")
    for key, v in zip(saved, variables):
        value = arrays[key]
        if tuple(value.shape) != tuple(v.shape.as_list()):
            raise ValueError(f"{where}: state {key} has shape {value.shape}, expected {v.shape}")
        v.load(value, session)  # feeds the initializer: no constant lands in the graph
