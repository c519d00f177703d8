"""The presets of the shared training flags, without TensorFlow (the local launcher reads them before it starts).

"measured" is the setting the tuned frontier measured best on the main task (results/frontier); "paper" the MP²
reference's worker settings. What each preset decides of --lr, --mixup and --push lives in runtime/flags.py
(apply_preset), which needs the methods; the epoch budget is here.
"""
from __future__ import annotations

PRESETS = ("measured", "paper")
DEFAULT = "measured"
# --epochs when not given. measured: the frontier's long budget, 30 epochs of LeNet-5 / Fashion-MNIST
# (results/frontier/frontier.json, best_val_epochs): at 10 epochs 40 of the 42 tuned runs had their best
# validation epoch at the 9th or 10th (still rising); at 30 the median is the 25th (the tuned baseline's: 19, 28,
# 21), and every tuned row scored 0.3 to 2.8 points higher than at 10. A 4-worker LeNet-5 run of 30 epochs takes
# about 2 minutes on 2 cores. paper: the reference's 5.
EPOCHS = {"measured": 30, "paper": 5}


def epochs_of(preset: str | None) -> int:
    """The epochs a run of `preset` (None: the default preset) trains when --epochs is not given."""
    return EPOCHS[preset or DEFAULT]
