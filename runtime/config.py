"""The run configuration that the PS publishes and every worker must agree with."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

# Flags a worker and the PS must share, with the flag that sets each, for messages.
FLAG_OF = {
    "model": "--model",
    "classes": "--classes (from the dataset)",
    "fingerprint": "--model/--classes (layout fingerprint)",
    "push": "--push (pushed layers)",
    "dataset": "--dataset",
    "fit_input": "--fit-input",
    "train_images": "--train-images",
    "validation_images": "--validation-images",
    "method": "--method",
    "method_options": "the method's flags",
    "workers": "--worker_hosts (number of workers)",
    "worker_batch": "--worker-batch",
    "epochs": "--epochs",
    "lr": "--lr",
    "mixup": "--mixup",
    "seed": "--seed",
    "verify_sync": "--verify-sync",
    "ps_tasks": "--ps_hosts (number of PS tasks, which sets the model's partition)",
    "chunks": "--chunks",
}


@dataclass(frozen=True)
class RunConfig:
    model: str
    classes: int
    fingerprint: str
    dataset: str
    method: str
    workers: int
    worker_batch: int
    epochs: int
    lr: float
    mixup: float
    seed: int
    push: list = field(default_factory=list)
    fit_input: bool = False
    train_images: int | None = None
    validation_images: int = 0
    method_options: dict = field(default_factory=dict)
    verify_sync: bool = False
    ps_tasks: int = 1
    chunks: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def differences(self, other: "RunConfig", theirs: str = "worker", mine: str = "the PS",
                    ignore: tuple[str, ...] = ()) -> list[str]:
        """Human-readable differences, phrased as `other` (theirs) against `self` (mine)."""
        out = []
        for name, flag in FLAG_OF.items():
            a, b = getattr(self, name), getattr(other, name)
            if name in ignore or a == b:
                continue
            if name == "method_options" and self.method == other.method:  # one phrase per option, naming its flag
                out += option_differences(a, b, theirs, mine)
            else:
                out.append(f"{flag}: {theirs} has {b!r}, {mine} has {a!r}")
        return out


def option_differences(mine: dict, theirs: dict, theirs_name: str, mine_name: str) -> list[str]:
    """One phrase per method option that differs, naming its flag."""
    return [f"--{name.replace('_', '-')}: {theirs_name} has {theirs.get(name)!r}, {mine_name} has {mine.get(name)!r}"
            for name in sorted(set(mine) | set(theirs)) if mine.get(name) != theirs.get(name)]
