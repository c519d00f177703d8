"""Online MP²'s options and its pure decision function, on scripted event sequences (no TF, no process)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from runtime.methods import schedule as S
from runtime.methods.mp2_options import DEFAULT_STAGE_FLAGS, MP2Options, measured_command

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
FASHION = MP2Options().for_run(120)  # Fashion-MNIST, 4 workers: 120 steps per epoch
DIGITS = MP2Options().for_run(14)    # digits, --worker-batch 25: 14


# --- the options: one source for the measured setting -------------------------------------------------
def test_defaults_are_the_measured_fashion_setting():
    o = FASHION
    assert (o.warmup_snapshots, o.online_snapshot_every, o.partial_snapshot_every, o.retrain_after) == (30, 2, 50, 8)
    assert (o.refresh_every, o.refresh_steps, o.switch_tolerance, o.watch_tolerance) == (200, 2, 0.02, 0.05)
    assert (o.online_rounds, o.first_round_steps, o.round_steps, o.online_wait) == ("graph", 1500, 300, True)
    assert o.round_lag == 100
    assert o.dense_rank == 16
    assert o.correction_ratio == 0.005
    # Stage rounds (--online-rounds stage) keep the flags their measured runs used.
    assert o.online_stage_flags == "--epochs 6 --image-batches 20 --val-images 1000 --eval-images 1000 --mixup 0 --holdout 0.05"


def test_the_rule_gives_the_measured_digits_setting_and_keeps_given_values():
    assert (DIGITS.warmup_snapshots, DIGITS.online_snapshot_every, DIGITS.partial_snapshot_every,
            DIGITS.retrain_after, DIGITS.round_lag, DIGITS.first_round_steps) == (3, 1, 20, 3, 11, 1500)
    assert MP2Options().for_run(90).retrain_after == 6  # between the two: Fashion-MNIST's, scaled
    given = MP2Options.from_flags({"retrain_after": 100, "partial_snapshot_every": 0}).for_run(120)
    assert given.retrain_after == 100 and given.partial_snapshot_every == 0 and given.warmup_snapshots == 30


def test_the_default_stage_flags_cap_val_images_at_a_tenth_of_the_training_set():
    assert "--val-images 144" in " ".join(FASHION.stage_flags(1442))  # digits' 1,442 training images
    assert "--val-images 1000" in " ".join(FASHION.stage_flags(60000))
    own = MP2Options(online_stage_flags="--epochs 1 --val-images 900")
    assert own.stage_flags(100) == ["--epochs", "1", "--val-images", "900"]  # a user's own flags: as given


def test_the_flags_parse_to_the_same_defaults():
    from runtime.flags import method_options, ps_parser

    opts = method_options(ps_parser("").parse_args(["--method", "mp2"]))
    assert opts.for_run(120) == FASHION


def test_the_methods_page_shows_the_defaults_once_and_the_scripts_do_not_repeat_them():
    readme = (ROOT / "docs" / "methods.md").read_text()
    line = measured_command()
    assert " ".join(line.split()) in " ".join(readme.split())
    # Nowhere else: no script and no README line spells out the stage flags or the derived counts again.
    for path in [ROOT / "docs" / "methods.md", ROOT / "README.md", *sorted((ROOT / "results" / "unseen").glob("*.sh"))]:
        text = " ".join(path.read_text().split())
        assert text.count(DEFAULT_STAGE_FLAGS) <= (1 if path.name == "methods.md" else 0), path
        assert text.count("--warmup-snapshots 30") <= (1 if path.name == "methods.md" else 0), path


def test_digits_command_carries_the_digits_counts():
    flags = shlex.split(measured_command(14))
    values = {flags[i]: flags[i + 1] for i in range(len(flags) - 1) if flags[i].startswith("--")}
    assert values["--warmup-snapshots"] == "3" and values["--partial-snapshot-every"] == "20"


# --- the decision function -----------------------------------------------------------------------------
O = MP2Options(warmup_snapshots=3, online_snapshot_every=1, partial_snapshot_every=0, retrain_after=2, round_lag=0,
               refresh_every=10, refresh_steps=2, switch_tolerance=0.02, watch_every=5, watch_tolerance=0.05)


def feed(state, *events, o=O):
    actions = []
    for event in events:
        state, out = S.decide(state, event, o)
        actions += out
    return state, actions


def kinds(actions):
    return [type(a).__name__ for a in actions]


def warm_up(o=O):
    """Full steps 0..2 (a snapshot each), then the first round starts at step 2's tick."""
    state, actions = S.initial(o), []
    for step in range(3):
        state, out = feed(state, S.FullStepDone(step), S.Tick(step), S.StepEnd(step), o=o)
        actions += out
    return state, actions


def test_warm_up_snapshots_then_starts_the_first_round():
    state, actions = warm_up()
    assert kinds(actions) == ["TakeSnapshot"] * 3 + ["StartRound"]
    assert state.training and state.rounds == 1 and state.since_training == 0 and not state.live
    assert S.full_reason(state, 3, O) == "waiting for a round" and S.wants_full(state, 3, O)
    assert S.full_reason(S.initial(O), 0, O) == "warm-up"


def test_a_passed_round_switches_at_the_step_end_and_partial_steps_follow():
    state, _ = warm_up()
    state, actions = feed(state, S.FullStepDone(3), S.Tick(3))
    assert kinds(actions) == ["TakeSnapshot", "PollRound"]
    state, actions = feed(state, S.RoundFinished(3, 1, True))
    assert actions == [S.JudgeCandidate(3, 1, against_live=False)]
    state, actions = feed(state, S.CandidateJudged(3, 1, reference=0.8, assembled=0.79))
    assert kinds(actions) == ["Record", "Accept"] and actions[0].event["passed"] and state.pending == 1
    assert not state.live  # not before the step's end
    state, actions = feed(state, S.StepEnd(3))
    assert kinds(actions) == ["Promote", "Record"]
    assert actions[1].event == {"step": 4, "event": "switch to mp2", "round": 1}
    assert state.live and state.promotions == 1
    # Refresh windows: steps 10, 11 of every 10 full; the rest partial.
    assert [S.wants_full(state, s, O) for s in (5, 9, 10, 11, 12)] == [False, False, True, True, False]
    assert S.full_reason(state, 10, O) == "refresh window"


def live_state():
    state, _ = warm_up()
    state, _ = feed(state, S.Tick(3), S.RoundFinished(3, 1, True), S.CandidateJudged(3, 1, 0.8, 0.8), S.StepEnd(3))
    assert state.live
    return state


def test_the_refresh_window_snapshots_at_its_end_and_checks_the_live_predictor():
    state = live_state()
    state, actions = feed(state, S.FullStepDone(10))
    assert actions == []  # the window's first step
    state, actions = feed(state, S.FullStepDone(11))
    assert kinds(actions) == ["TakeSnapshot", "CheckLive"]
    state, actions = feed(state, S.LiveChecked(11, reference=0.8, assembled=0.79))
    assert actions == [] and not state.falling_back


def test_a_failed_check_falls_back_until_a_retrained_predictor_passes():
    state = live_state()
    state, _ = feed(state, S.FullStepDone(11))
    state, actions = feed(state, S.LiveChecked(11, reference=0.8, assembled=0.7))
    assert kinds(actions) == ["Record"] and actions[0].event["event"] == "fallback to full pushes"
    assert state.falling_back and S.wants_full(state, 15, O) and S.full_reason(state, 15, O) == "fallback"
    assert state.since_training == O.retrain_after - 1  # one more snapshot starts a round
    state, actions = feed(state, S.FullStepDone(12), S.Tick(12))
    assert kinds(actions) == ["TakeSnapshot", "StartRound"]  # warming again: a snapshot every step
    state, actions = feed(state, S.Tick(13), S.RoundFinished(13, 2, True))
    assert actions[-1] == S.JudgeCandidate(13, 2, against_live=False)  # falling back: judged alone
    state, actions = feed(state, S.CandidateJudged(13, 2, 0.8, 0.8), S.StepEnd(13))
    assert "Promote" in kinds(actions) and any(getattr(a, "event", {}).get("event") == "switch to mp2" for a in actions)
    assert state.live and not state.falling_back


def test_a_watch_drop_falls_back_once():
    state = live_state()
    state, _ = feed(state, S.FullStepDone(11))  # a reference
    state, actions = feed(state, S.PartialStepDone(14))
    assert kinds(actions) == ["Watch"]
    state, actions = feed(state, S.Watched(14, reference=0.8, live=0.74))
    assert kinds(actions) == ["Record"] and actions[0].event["signal"] == "the live model" and state.falling_back
    state, actions = feed(state, S.Watched(19, reference=0.8, live=0.5))
    assert actions == []  # already falling back
    state, actions = feed(S.initial(O), S.PartialStepDone(4))
    assert actions == []  # no reference yet: nothing to watch against


def test_a_failed_round_keeps_full_pushes_and_says_so():
    state, _ = warm_up()
    state, actions = feed(state, S.Tick(3), S.RoundFinished(3, 1, False, "failed (exit 1); see log"))
    assert kinds(actions) == ["PollRound", "Record"] and actions[1].event["event"] == "training failed"
    assert not state.training and not state.live and state.not_taken == 1
    assert S.full_reason(state, 4, O) == "after a round not taken"
    assert "1 of 1 predictor rounds failed" in S.never_switched_because(state, 4, O)
    state, actions = feed(state, S.CandidateJudged(3, 1, 0.8, 0.5))  # a round that ran but does not pass
    assert kinds(actions) == ["Record"] and not actions[0].event["passed"] and state.pending is None


def test_a_later_round_must_beat_the_live_predictor_to_be_promoted():
    state = live_state()
    state, _ = feed(state, S.PartialStepDone(5), S.PartialStepDone(6))
    state = S.State(**{**state.__dict__, "since_training": O.retrain_after})
    state, actions = feed(state, S.Tick(6))
    assert kinds(actions) == ["StartRound"]
    state, actions = feed(state, S.Tick(7), S.RoundFinished(7, 2, True))
    assert actions[-1] == S.JudgeCandidate(7, 2, against_live=True)
    worse, actions = feed(state, S.CandidateJudged(7, 2, 0.8, 0.8, live_acc=0.82, candidate_acc=0.81))
    assert worse.pending is None and not actions[0].event["passed"]
    better, actions = feed(state, S.CandidateJudged(7, 2, 0.8, 0.8, live_acc=0.82, candidate_acc=0.83), S.StepEnd(7))
    assert kinds(actions) == ["Record", "Accept", "Promote"]  # a promotion, not a switch: already live
    assert better.promotions == 2


def test_a_round_started_while_live_is_taken_after_its_lag_and_the_first_at_once():
    o = MP2Options(**{**O.__dict__, "round_lag": 4})
    state, actions = warm_up(o)
    state, actions = feed(state, S.Tick(3), o=o)
    assert kinds(actions) == ["PollRound"]  # no predictor live: every step of lag would push the whole model
    state, _ = feed(state, S.RoundFinished(3, 1, True), S.CandidateJudged(3, 1, 0.8, 0.8), S.StepEnd(3), o=o)
    state = S.State(**{**state.__dict__, "since_training": o.retrain_after})
    state, actions = feed(state, S.Tick(6), o=o)
    assert actions == [S.StartRound(6, 2)] and state.round_started == 6
    for step in (7, 8, 9):  # beside the training
        state, actions = feed(state, S.PartialStepDone(step), S.Tick(step), o=o)
        assert "PollRound" not in kinds(actions)
    state, actions = feed(state, S.Tick(10), o=o)
    assert actions == [S.PollRound(10)]  # the lag is over: taken now (the barrier waits if it is late)
    # A fallback during the lag: the workers push everything, so the round is taken at once.
    state = S.State(**{**state.__dict__, "round_started": 10})
    state, _ = feed(state, S.Watched(11, reference=0.8, live=0.5), o=o)
    state, actions = feed(state, S.Tick(11), o=o)
    assert state.falling_back and actions == [S.PollRound(11)]


def test_a_warm_start_is_checked_at_the_first_snapshot():
    o = MP2Options(**{**O.__dict__, "predictor_init": "p.npz"})
    state, actions = feed(S.initial(o), S.FullStepDone(0), o=o)
    assert kinds(actions) == ["TakeSnapshot", "CheckInit"] and not state.init_unchecked
    state, actions = feed(state, S.CandidateJudged(0, 0, 0.5, 0.5, extra=(("path", "p.npz"),)), S.StepEnd(0), o=o)
    assert actions[0].event["event"] == "initial predictor checked" and actions[0].event["path"] == "p.npz"
    assert [a.event for a in actions if isinstance(a, S.Record)][-1] == {"step": 1, "event": "switch to mp2", "round": 0}
    assert state.live and not kinds([a for a in actions if isinstance(a, S.Accept) and a.round > 0])


def test_partial_snapshots_count_towards_the_next_round():
    o = MP2Options(**{**O.__dict__, "partial_snapshot_every": 3})
    state, actions = feed(S.initial(o), *[S.PartialStepDone(s) for s in range(6)], o=o)
    assert [a.step for a in actions if isinstance(a, S.TakeSnapshot)] == [2, 5] and state.since_training == 2


def test_never_switched_names_the_missing_warm_up_snapshots():
    state, _ = feed(S.initial(O), S.FullStepDone(0), S.Tick(0))
    assert re.search(r"no predictor round started: 1 of the 3 warm-up snapshots", S.never_switched_because(state, 1, O))
    state, _ = warm_up()
    assert "the first predictor round had not finished" in S.never_switched_because(state, 3, O)


def test_the_control_is_a_schedule_of_its_own():
    held = S.HeldSchedule(MP2Options(prediction="hold", control_switch_step=7, refresh_every=10, refresh_steps=2))
    assert [held.wants_full(s) for s in (7, 8, 9, 10, 11, 12)] == [True, False, False, True, True, False]
    assert held.full_reason(3) == "before the control's switch step" and held.full_reason(20) == "refresh window"
    for step in range(10):
        held.after_step(None, step, held.wants_full(step), lambda: None)
    assert held.take_events() == [{"step": 7, "event": "switch to hold", "round": None}] and held.take_events() == []
