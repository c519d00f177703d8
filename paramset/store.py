"""Writing and reading parameter-dataset directories."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers import npzio
from models import Layout

FORMAT = "mp2-paramset"
MANIFEST = "manifest.json"
MANIFEST_KEYS = ("model", "classes", "fingerprint", "dataset", "shards", "snapshots")  # what readers rely on


class ParamSetError(Exception):
    """A parameter dataset that cannot be used as asked; the message says why and what to do."""


class ParamSetWriter:
    """Appends snapshots; every `shard_size` of them become one shard file and a new manifest."""

    def __init__(self, directory: str | Path, layout: Layout, dataset: str, shard_size: int = 8) -> None:
        self.dir = Path(directory)
        self.layout, self.shard_size = layout, shard_size
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / MANIFEST
        if path.exists():  # appending (a resumed run): the directory must be of this model
            self.manifest = _read_manifest(self.dir)
            _check_layout(self.manifest, layout, self.dir)
        else:
            self.manifest = {
                "format": FORMAT, "version": 1, "model": layout.model, "classes": layout.classes,
                "fingerprint": layout.fingerprint(), "dataset": dataset, "total": layout.total,
                "pushed": layout.pushed, "shards": [], "snapshots": [],
            }
        self._pending: list[tuple[np.ndarray, dict]] = []

    def __len__(self) -> int:
        return len(self.manifest["snapshots"]) + len(self._pending)

    def keep_through_step(self, step: int) -> int:
        """Drop the snapshots taken after global step `step` (a resumed run abandons that stretch).

        Returns how many were dropped. Shards holding only later snapshots are deleted; one holding
        both is rewritten with the earlier rows.
        """
        kept_shards, kept_records, dropped = [], [], 0
        for shard in self.manifest["shards"]:
            records = [r for r in self.manifest["snapshots"] if r["shard"] == shard["file"]]
            keep = [r for r in records if r["step"] <= step]
            dropped += len(records) - len(keep)
            path = self.dir / shard["file"]
            if not keep:
                path.unlink(missing_ok=True)
                continue
            if len(keep) < len(records):
                arrays, _ = npzio.read(path)
                rows = [r["row"] for r in keep]
                npzio.write(path, {name: value[rows] for name, value in arrays.items()})
                keep = [{**r, "row": i} for i, r in enumerate(keep)]
                shard = {**shard, "count": len(keep)}
            kept_shards.append(shard)
            kept_records += keep
        if dropped:
            self.manifest["shards"], self.manifest["snapshots"] = kept_shards, kept_records
            npzio.write_json(self.dir / MANIFEST, self.manifest)
        return dropped

    def add(self, vector: np.ndarray, **info) -> None:
        """One snapshot (the flat parameter vector) with its step, epoch, test accuracy, ..."""
        if vector.shape != (self.layout.total,):
            raise ValueError(f"a {self.layout.model} snapshot has {self.layout.total} values, got {vector.shape}")
        self._pending.append((np.array(vector, np.float32), info))
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write pending snapshots as one shard, then the manifest that lists it."""
        if not self._pending:
            return
        taken = {shard["file"] for shard in self.manifest["shards"]}
        name = next(f"shard-{i:05d}.npz" for i in range(len(taken) + 1) if f"shard-{i:05d}.npz" not in taken)
        stack = np.stack([v for v, _ in self._pending])
        arrays = {
            p.name: stack[:, a:b].reshape((len(stack), *p.shape))
            for p in self.layout.params
            for a, b in [self.layout.offset(p.name)]
        }
        npzio.write(self.dir / name, arrays)
        self.manifest["shards"].append({"file": name, "count": len(stack)})
        for row, (_, info) in enumerate(self._pending):
            self.manifest["snapshots"].append({"shard": name, "row": row, **info})
        self._pending.clear()
        npzio.write_json(self.dir / MANIFEST, self.manifest)


@dataclass
class Snapshots:
    """Snapshots loaded in memory: pushed [N, P], predicted [N, total - P] and their records."""

    layout: Layout
    dataset: str
    pushed: np.ndarray
    predicted: np.ndarray
    records: list[dict]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.records)

    def vectors(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        return self.layout.join(self.pushed[rows], self.predicted[rows])


def read(directories: list[str | Path], layout: Layout) -> Snapshots:
    """Load one or several parameter-dataset directories made for `layout`."""
    pushed, predicted, records, datasets = [], [], [], set()
    for d in map(Path, directories):
        manifest = _read_manifest(d)
        _check_layout(manifest, layout, d)
        datasets.add(manifest["dataset"])
        for shard in manifest["shards"]:
            arrays = _read_shard(d / shard["file"], layout, shard["count"])
            flat = np.concatenate([arrays[p.name].reshape(shard["count"], -1) for p in layout.params], axis=1)
            a, b = layout.split(flat)
            pushed.append(a)
            predicted.append(b)
        records += [{**r, "source": str(d)} for r in manifest["snapshots"]]
    if not records:
        raise ParamSetError(
            f"no snapshots in {', '.join(map(str, directories))}: the collecting run wrote none yet "
            f"(run a baseline with --snapshot-every K for at least a few epochs)"
        )
    return Snapshots(layout, ",".join(sorted(datasets)), np.concatenate(pushed), np.concatenate(predicted),
                     records, [str(d) for d in directories])


def is_dataset(directory: str | Path) -> bool:
    """Whether `directory` holds a parameter dataset (its manifest): a run's, which a new run must not mix into."""
    return (Path(directory) / MANIFEST).exists()


def clear(directory: str | Path) -> None:
    """Delete the files of `directory` (an earlier attempt's shards and manifest), keeping the directory."""
    directory = Path(directory)
    if directory.exists():
        for f in directory.iterdir():
            f.unlink()


def pushed_groups(directory: str | Path, layout: Layout) -> list[np.ndarray]:
    """The pushed group of every snapshot in `directory`, in the order taken; none while it holds none."""
    directory = Path(directory)
    if not is_dataset(directory) or not _read_manifest(directory)["snapshots"]:
        return []
    return list(read([directory], layout).pushed)


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.exists():
        raise ParamSetError(f"{directory} is not a parameter dataset: it has no {MANIFEST} "
                            f"(collect one with mp2_local.py --method baseline --snapshot-every K)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ParamSetError(f"{path} is unreadable ({e}); collect the snapshots again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ParamSetError(f"{path} is not an MP² parameter-dataset manifest")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise ParamSetError(f"{path} lacks {', '.join(missing)}: it is damaged; collect the snapshots again")
    return manifest


def _check_layout(manifest: dict, layout: Layout, directory: Path) -> None:
    theirs = (manifest["model"], manifest["classes"], manifest["fingerprint"])
    if theirs != (layout.model, layout.classes, layout.fingerprint()):
        raise ParamSetError(
            f"{directory} holds snapshots of {manifest['model']} with {manifest['classes']} classes "
            f"(layout {manifest['fingerprint']}), but {layout.model} with {layout.classes} classes "
            f"(layout {layout.fingerprint()}) was asked for; use a parameter dataset collected with that model"
        )


def _read_shard(path: Path, layout: Layout, count: int) -> dict[str, np.ndarray]:
    try:
        arrays, _ = npzio.read(path)
    except npzio.NpzError as e:
        if not path.exists():
            raise ParamSetError(f"{path} is listed in the manifest but missing; collect the snapshots again") from None
        raise ParamSetError(f"{e}; delete the directory and collect again") from None
    missing = [p.name for p in layout.params if p.name not in arrays]
    if missing:
        raise ParamSetError(f"{path} lacks {', '.join(missing)}; delete the directory and collect again")
    for p in layout.params:
        if arrays[p.name].shape != (count, *p.shape):
            raise ParamSetError(f"{path}: {p.name} has shape {arrays[p.name].shape}, expected {(count, *p.shape)}")
    return arrays
