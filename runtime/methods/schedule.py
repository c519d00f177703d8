"""Online MP²'s decisions as a pure function, `decide(state, event, options) -> (state, actions)`.

No TensorFlow and no process here: runtime/methods/online.py turns what happens on the PS (a step
ran, a round's process ended, an accuracy was measured) into events and carries out the actions
(snapshot, measure, start a round, promote a candidate). Every decision is testable on a scripted
sequence of events (tests/test_online_schedule.py).

    state       live: a predictor passed and is in use; falling_back: the last check or watch failed, full
                pushes until a retrained predictor passes; training: a round is running; pending: the
                round that passed, live from the next step boundary; a round started while a predictor is
                live is polled only --round-lag steps after it started (it trains beside the training)
    events      FullStepDone, PartialStepDone, Tick (after them: start or poll a round), RoundFinished,
                CandidateJudged, LiveChecked, Watched, StepEnd (the step's last: promotions happen here)
    actions     TakeSnapshot, CheckLive, CheckInit, Watch, StartRound, PollRound, JudgeCandidate,
                Accept (a passed round is what the next round starts from), Promote, Record (an event
                for the run's records and its log line)

The phase of a step is a query on the state (`wants_full`), decided when the PS announces the step:
the step after the one whose events promoted a predictor is already announced, so the first partial
step is the one after it.

Also here: the schedule interface both online MP² and its control (--prediction hold
--control-switch-step N) implement, and the control's own implementation.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol, Union

from runtime.methods.mp2_options import MP2Options


# --- state -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class State:
    live: bool = False
    falling_back: bool = False
    training: bool = False
    rounds: int = 0                 # rounds started
    round_started: int = 0          # the step the running round started at (its lag counts from there)
    since_training: int = 0         # snapshots since the last round started
    promotions: int = 0             # predictors that went live (a later round replacing the live one counts)
    has_reference: bool = False     # a full push has been snapshotted: the watch has a reference
    init_unchecked: bool = False    # a warm start (--predictor-init) waits for its check at the first snapshot
    pending: int | None = None      # the round that passed (0: the warm start), live at this step's end
    pending_step: int = 0           # the (1-based) step its check decided, for the switch event
    not_taken: int = 0              # rounds that failed or did not pass their check


def initial(options: MP2Options) -> State:
    return State(init_unchecked=bool(options.predictor_init))


# --- events ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FullStepDone:
    step: int


@dataclass(frozen=True)
class PartialStepDone:
    step: int


@dataclass(frozen=True)
class Tick:
    step: int


@dataclass(frozen=True)
class RoundFinished:
    step: int
    round: int
    ok: bool
    why: str = ""


@dataclass(frozen=True)
class CandidateJudged:
    """A round's (or the warm start's, round 0) predictor on the latest fully pushed model; `live_acc` and
    `candidate_acc` (from the freshest snapshot) when a predictor is live and the round must beat it."""
    step: int
    round: int
    reference: float
    assembled: float
    live_acc: float | None = None
    candidate_acc: float | None = None
    extra: tuple = ()  # (key, value) pairs for the record: the round's seconds, snapshots, the warm start's path


@dataclass(frozen=True)
class LiveChecked:
    step: int
    reference: float
    assembled: float


@dataclass(frozen=True)
class Watched:
    step: int
    reference: float
    live: float


@dataclass(frozen=True)
class StepEnd:
    step: int


Event = Union[FullStepDone, PartialStepDone, Tick, RoundFinished, CandidateJudged, LiveChecked, Watched, StepEnd]


# --- actions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TakeSnapshot:
    step: int
    phase: str  # "full": also the reference accuracy; "partial"


@dataclass(frozen=True)
class CheckLive:
    step: int


@dataclass(frozen=True)
class CheckInit:
    step: int


@dataclass(frozen=True)
class Watch:
    step: int


@dataclass(frozen=True)
class StartRound:
    step: int
    round: int


@dataclass(frozen=True)
class PollRound:
    step: int


@dataclass(frozen=True)
class JudgeCandidate:
    step: int
    round: int
    against_live: bool


@dataclass(frozen=True)
class Accept:
    round: int


@dataclass(frozen=True)
class Promote:
    step: int   # the step whose end promotes it: live from the step after the next
    round: int


@dataclass(frozen=True)
class Record:
    event: dict
    message: str


Action = Union[TakeSnapshot, CheckLive, CheckInit, Watch, StartRound, PollRound, JudgeCandidate, Accept, Promote, Record]


# --- queries ---------------------------------------------------------------------------------------
def in_window(step: int, o: MP2Options) -> bool:
    return step % o.refresh_every < o.refresh_steps


def wants_full(state: State, step: int, o: MP2Options) -> bool:
    return not state.live or state.falling_back or in_window(step, o)


def full_reason(state: State, step: int, o: MP2Options) -> str:
    """Why step `step` pushed the whole model, asked when it has run (its phase was announced a step earlier)."""
    if state.falling_back:
        return "fallback"
    if not state.live:
        if state.training:
            return "waiting for a round"
        return "warm-up" if state.rounds == 0 else "after a round not taken"
    if in_window(step, o):
        return "refresh window"
    return "waiting for a round"  # announced before the promotion at the previous step's end


def polled_from(state: State, o: MP2Options) -> int:
    """The first step whose Tick polls the running round: --round-lag steps after it started while a
    predictor is live; at once while the workers push everything (first round, fallback), where each
    step of lag would cost a full push."""
    live = state.live and not state.falling_back
    return state.round_started + (o.round_lag if live else 0)


# --- the decision function -------------------------------------------------------------------------
def decide(state: State, event: Event, o: MP2Options) -> tuple[State, list[Action]]:
    s, replace = state, dataclasses.replace
    if isinstance(event, FullStepDone):
        step, warming = event.step, not s.live or s.falling_back
        due = (step + 1) % o.online_snapshot_every == 0 if warming else step % o.refresh_every == o.refresh_steps - 1
        if not due:
            return s, []
        actions: list[Action] = [TakeSnapshot(step, "full")]
        s = replace(s, since_training=s.since_training + 1, has_reference=True)
        if s.live and not s.falling_back:
            actions.append(CheckLive(step))
        elif s.init_unchecked and not s.training:
            s = replace(s, init_unchecked=False)
            actions.append(CheckInit(step))
        return s, actions

    if isinstance(event, PartialStepDone):
        step, actions = event.step, []
        if o.partial_snapshot_every and (step + 1) % o.partial_snapshot_every == 0:
            actions.append(TakeSnapshot(step, "partial"))
            s = replace(s, since_training=s.since_training + 1)
        if (step + 1) % o.watch_every == 0 and s.has_reference:
            actions.append(Watch(step))
        return s, actions

    if isinstance(event, Tick):
        if s.training:
            if event.step < polled_from(s, o):  # the round trains beside the training until its lag is over
                return s, []
            return s, [PollRound(event.step)]
        first = s.rounds == 0 and not s.live  # a warm start that passed retrains as any later round
        if s.since_training < (o.warmup_snapshots if first else o.retrain_after):
            return s, []
        s = replace(s, rounds=s.rounds + 1, training=True, since_training=0, round_started=event.step)
        return s, [StartRound(event.step, s.rounds)]

    if isinstance(event, RoundFinished):
        s = replace(s, training=False)
        if not event.ok:
            s = replace(s, not_taken=s.not_taken + 1)
            return s, [Record({"step": event.step + 1, "event": "training failed", "round": event.round},
                              f"online: predictor {event.round} {event.why}; full pushes go on")]
        return s, [JudgeCandidate(event.step, event.round, against_live=s.live and not s.falling_back)]

    if isinstance(event, CandidateJudged):
        return _judged(s, event, o)

    if isinstance(event, LiveChecked):
        if event.assembled < event.reference - o.switch_tolerance:
            return _fall_back(s, event.step, event.reference, event.assembled, "assembled", o)
        return s, []

    if isinstance(event, Watched):
        if event.live < event.reference - o.watch_tolerance:
            return _fall_back(s, event.step, event.reference, event.live, "the live model", o)
        return s, []

    if isinstance(event, StepEnd):
        if s.pending is None:
            return s, []
        switched, r = not s.live or s.falling_back, s.pending
        actions = [Promote(event.step, r)]
        if switched:
            actions.append(Record({"step": s.pending_step, "event": "switch to mp2", "round": r},
                                  f"online: workers switch to MP² with predictor {r}"))
        return replace(s, live=True, falling_back=False, pending=None, promotions=s.promotions + 1), actions

    raise TypeError(f"not an online MP² event: {event!r}")


def _judged(s: State, e: CandidateJudged, o: MP2Options) -> tuple[State, list[Action]]:
    step = e.step + 1
    passed = e.assembled >= e.reference - o.switch_tolerance
    if e.round == 0:  # the warm start's one check, at the first snapshot
        record = {"step": step, "event": "initial predictor checked", "round": 0, **dict(e.extra),
                  "check_full_acc": e.reference, "check_assembled_acc": e.assembled, "passed": bool(passed)}
        message = (f"online: step {step}: the initial predictor {dict(e.extra).get('path')} "
                   f"{'passes' if passed else 'fails'} the check (assembled {e.assembled:.4f} vs full {e.reference:.4f})"
                   + ("" if passed else "; full pushes go on, and the rounds start from it"))
    else:
        record = {"step": step, "event": "trained", "round": e.round, **dict(e.extra),
                  "check_full_acc": e.reference, "check_assembled_acc": e.assembled}
        if passed and e.live_acc is not None:
            # A predictor is live: the round replaces it only if it assembles at least as good a model
            # from the freshest snapshot's pushed group (the last full push may be long past).
            record["latest_live_acc"], record["latest_candidate_acc"] = e.live_acc, e.candidate_acc
            passed = e.candidate_acc >= e.live_acc
        record["passed"] = bool(passed)
        seconds = dict(e.extra).get("seconds", 0.0)
        if passed:
            message = (f"online: step {step}: predictor {e.round} ({seconds:.1f} s) passes the check "
                       f"(assembled {e.assembled:.4f} vs full {e.reference:.4f})")
        else:
            if not s.live or s.falling_back:
                going_on = "full pushes go on and collect more snapshots"
            elif "latest_live_acc" in record:
                going_on = (f"the live predictor stays: from the freshest snapshot it assembles "
                            f"{e.live_acc:.4f}, the round {e.candidate_acc:.4f}")
            else:
                going_on = "the previous predictor stays"
            message = (f"online: step {step}: predictor {e.round} is not taken (assembled {e.assembled:.4f} vs "
                       f"full {e.reference:.4f}); {going_on}")
    actions: list[Action] = [Record(record, message)]
    if passed:
        actions.append(Accept(e.round))
        return dataclasses.replace(s, pending=e.round, pending_step=step), actions
    return dataclasses.replace(s, not_taken=s.not_taken + (e.round > 0)), actions


def _fall_back(s: State, step: int, full: float, got: float, what: str, o: MP2Options) -> tuple[State, list[Action]]:
    if s.falling_back:
        return s, []
    s = dataclasses.replace(s, falling_back=True, since_training=max(s.since_training, o.retrain_after - 1))
    return s, [Record({"step": step + 1, "event": "fallback to full pushes", "signal": what,
                       "check_full_acc": full, "check_got_acc": got},
                      f"online: step {step + 1}: the predictor lags ({what} {got:.4f} vs fully pushed {full:.4f}); "
                      f"full pushes until a retrained predictor passes")]


def never_switched_because(state: State, snapshots: int, o: MP2Options) -> str:
    """Why a run whose every step was full never used a predictor, in the user's words."""
    if state.rounds == 0:
        return (f"no predictor round started: {snapshots} of the {o.warmup_snapshots} warm-up snapshots "
                f"(--warmup-snapshots, one every --online-snapshot-every {o.online_snapshot_every} steps) were taken")
    if state.training and state.not_taken == 0:
        return "the first predictor round had not finished (--online-wait holds the barrier for it)"
    taken = f"{state.not_taken} of {state.rounds} predictor rounds failed or did not pass their check"
    return taken + ("; the last had not finished" if state.training else "")


# --- the schedule interface: online MP² (online.OnlineController) and its control (HeldSchedule) ------
class Schedule(Protocol):
    """What MP² asks of a schedule that decides, step by step, which steps push the whole model."""

    version: int  # predictors promoted so far: a change sends the weights again with --broadcast subset

    def wants_full(self, step: int) -> bool: ...

    def full_reason(self, step: int) -> str: ...

    def after_step(self, session, step: int, full: bool, vector_of) -> None: ...

    def take_events(self) -> list[dict]: ...

    def never_switched_because(self) -> str: ...

    def stats(self) -> dict: ...

    def stop(self) -> None: ...

    def checkpoint(self, session) -> tuple[dict, dict]: ...

    def restore(self, session, arrays: dict, meta: dict, step: int) -> None: ...


class HeldSchedule:
    """The control's half of online MP²'s schedule: full pushes through step `switch_step` + 1 (0-based;
    the MP² run's switch event names the step whose check decided, and the next step's phase was announced
    already), then a window of --refresh-steps full pushes every --refresh-every steps, as after its switch.
    No predictor: its one event is the step where the hold starts, where the MP² run switched."""

    version = 0

    def __init__(self, options: MP2Options) -> None:
        self.settings, self.switch_step = options, options.control_switch_step
        self.events: list[dict] = []

    def wants_full(self, step: int) -> bool:
        return step <= self.switch_step or in_window(step, self.settings)

    def full_reason(self, step: int) -> str:
        return "before the control's switch step" if step <= self.switch_step else "refresh window"

    def after_step(self, session, step: int, full: bool, vector_of) -> None:
        if step == self.switch_step:  # named as the MP² run's switch event names it; partial from step + 2 (1-based)
            self.events.append({"step": self.switch_step, "event": "switch to hold", "round": None})

    def take_events(self) -> list[dict]:
        events, self.events = self.events, []
        return events

    def never_switched_because(self) -> str:
        return f"the run ended before --control-switch-step {self.switch_step} + 2"

    def stats(self) -> dict:
        return {"online": {"control_switch_step": self.switch_step}}

    def stop(self) -> None:
        """Nothing runs beside the control."""

    def checkpoint(self, session) -> tuple[dict, dict]:
        return {}, {}  # its schedule is a function of the step alone

    def restore(self, session, arrays: dict, meta: dict, step: int) -> None:
        """Nothing to restore."""
