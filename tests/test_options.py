"""Typed method options: flags → dataclass → JSON → dataclass, the help generated from the dataclasses, and the
handshake's refusal naming the option that differs."""
from __future__ import annotations

import dataclasses
import json

import pytest

import models
from runtime.config import RunConfig
from runtime.flags import method_options, ps_parser
from runtime.methods import METHODS, Options, RunInfo, build
from runtime.methods.localsgd import LocalSGDOptions
from runtime.methods.mp2_options import MP2Options

pytestmark = pytest.mark.unit

# Every method with each of its options set away from its default, as a user would type them.
GIVEN = {
    "baseline": [],
    "sync": [],
    "localsgd": ["--sync-every", "8", "--outer-lr", "0.7", "--outer-momentum", "0.9"],
    "sparseloco": ["--sync-every", "16", "--outer-lr", "0.5", "--error-decay", "0.9", "--chunk-top-k", "64"],
    "topk": ["--ratio", "0.05"],
    "dgc": ["--ratio", "0.01", "--momentum", "0.5", "--clip-norm", "1", "--warmup-epochs", "2"],
    "powersgd": ["--rank", "3"],
    "streaming": ["--sync-every", "32", "--fragments", "3", "--outer-lr", "0.5", "--outer-momentum", "0.5",
                  "--outer-bits", "32"],
    "wnn": ["--wnn", "w.npz", "--jump-every", "3"],
    "mp2": ["--predictor", "p.npz", "--prediction", "hold", "--full-push-epochs", "1", "--sync-every", "4",
            "--correction-ratio", "0.01", "--outer-lr", "0.7", "--outer-momentum", "0.9", "--broadcast", "subset", "--warmup-snapshots", "5",
            "--online-snapshot-every", "3", "--partial-snapshot-every", "0", "--retrain-after", "4",
            "--refresh-every", "50", "--refresh-steps", "3", "--switch-tolerance", "0.1", "--check-images", "200",
            "--watch-every", "5", "--watch-tolerance", "0.2", "--no-online-wait", "--round-lag", "7",
            "--online-rounds", "stage", "--first-round-steps", "100", "--round-steps", "50", "--dense-rank", "8",
            "--online-stage-flags=--epochs 1", "--predictor-init", "q.npz", "--control-switch-step", "9",
            "--push-codec", "sparseloco", "--push-error-decay", "0.9", "--push-top-k", "64"],
}


def test_every_method_is_in_the_table():
    assert set(GIVEN) == set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_options_round_trip_flags_dataclass_json_dataclass(name):
    opts = method_options(ps_parser("").parse_args(["--method", name, *GIVEN[name]]))
    assert type(opts) is METHODS[name].Options
    fields = dataclasses.fields(opts)
    # Every option was given a value other than its default: the round trip below would hide a dropped one.
    assert all(getattr(opts, f.name) != f.default for f in fields), name
    back = type(opts).from_json(json.loads(json.dumps(opts.to_json())))
    assert back == opts
    assert all(type(getattr(back, f.name)) is type(getattr(opts, f.name)) for f in fields)  # 1.0 stays a float
    defaults = method_options(ps_parser("").parse_args(["--method", name]))
    assert defaults == type(opts)() and type(opts).from_json(defaults.to_json()) == defaults


def test_json_is_read_back_through_each_flags_own_check():
    assert LocalSGDOptions.from_json({"outer_lr": 1}).outer_lr == 1.0 and isinstance(
        LocalSGDOptions.from_json({"outer_lr": 1}).outer_lr, float)
    with pytest.raises(ValueError, match="LocalSGDOptions has no option ratio"):
        LocalSGDOptions.from_json({"ratio": 0.1})
    with pytest.raises(ValueError, match="--sync-every 0"):
        LocalSGDOptions.from_json({"sync_every": 0})


def test_the_help_is_generated_from_the_dataclasses():
    text = " ".join(ps_parser("").format_help().split())
    for name, method in METHODS.items():
        for option in method.Options.described():
            assert option.flag in text, (name, option.flag)
            assert " ".join(option.help.split())[:40] in text, (name, option.flag)
        if method.Options.described():
            assert f"--method {name} ({method.Options.__name__})" in text


def test_another_methods_option_is_refused_by_name():
    with pytest.raises(ValueError, match="--rank is an option of powersgd, not of --method localsgd"):
        method_options(ps_parser("").parse_args(["--method", "localsgd", "--rank", "2"]))


def test_a_method_takes_its_own_options_type_only():
    layout = models.get("lenet5", 10).layout
    run = RunInfo(workers=2, steps_per_epoch=10, epochs=1, lr=1e-3, seed=0)
    with pytest.raises(TypeError, match="localsgd takes LocalSGDOptions, not MP2Options"):
        METHODS["localsgd"](layout, MP2Options(), run)
    assert build("localsgd", layout, {"sync_every": 4}, run).opts == LocalSGDOptions(sync_every=4)  # a record's JSON


def _config(opts: Options, method: str) -> RunConfig:
    layout = models.get("lenet5", 10).layout
    run = RunInfo(workers=2, steps_per_epoch=10, epochs=1, lr=1e-3, seed=0)
    return RunConfig(model="lenet5", classes=10, fingerprint=layout.fingerprint(), dataset="synthetic", method=method,
                     workers=2, worker_batch=8, epochs=1, lr=1e-3, mixup=0.0, seed=0,
                     method_options=build(method, layout, opts, run).handshake_options())


def test_the_handshake_refuses_other_options_in_one_phrase_naming_the_flag():
    ps = _config(LocalSGDOptions(sync_every=16), "localsgd")
    worker = _config(LocalSGDOptions(sync_every=64), "localsgd")
    assert ps.differences(worker) == ["--sync-every: worker has 64, the PS has 16"]
    # Through the JSON the handshake carries, the same.
    assert ps.differences(RunConfig.from_json(worker.to_json())) == ["--sync-every: worker has 64, the PS has 16"]
    # The PS's own options (a file it reads, its schedule) are not compared.
    assert _config(MP2Options(check_images=5), "mp2").differences(_config(MP2Options(), "mp2")) == []
    other = _config(Options(), "baseline")
    assert [d.split(":")[0] for d in ps.differences(other)] == ["--method", "the method's flags"]
