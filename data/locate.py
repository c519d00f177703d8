"""Finding a dataset's files on disk, and the message for when they are nowhere.

An explicit --data-dir is the only place looked in: if it lacks the files, that is an error
naming it and the files expected there, never a quiet fall-back to another copy. Without one,
the places are, in order: $MP2_DATA, Debian's /usr/share/datasets/<name>/, then the Keras
download cache (only what is already there). Within --data-dir and $MP2_DATA the files may sit
in the folder itself or in a subfolder named after the dataset; CIFAR files may also sit in the
folder their archive unpacks into (cifar-10-batches-py/ and so on).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from data.catalog import DatasetSpec, StorageFormat
from data.errors import DataError

# Module-level so tests (and unusual installs) can point them elsewhere.
DEBIAN_DATASETS = Path("/usr/share/datasets")
DATA_ENV = "MP2_DATA"
DOWNLOAD_ENV = "MP2_DOWNLOAD"


@dataclass(frozen=True)
class Place:
    label: str                 # how the message names it: "--data-dir", "$MP2_DATA", ...
    folders: tuple[Path, ...]  # base folders to look in, in order; empty when not configured
    unset_note: str = ""       # why there is nothing to look in


@dataclass(frozen=True)
class Found:
    spec: DatasetSpec
    storage: StorageFormat
    folder: Path
    paths: tuple[Path, ...]    # one per storage.files entry, in that order


def keras_datasets_dir() -> Path:
    """Where tf.keras.datasets caches downloads, resolved the way Keras resolves it."""
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home:
        return Path(keras_home).expanduser() / "datasets"
    home = Path("~").expanduser()
    base = home if os.access(home, os.W_OK) else Path("/tmp")  # Keras' own fallback
    return base / ".keras" / "datasets"


def places(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> list[Place]:
    """Every place searched for `spec`, in search order (only data_dir when one is given)."""

    def user_place(label: str, root: str | os.PathLike | None, unset_note: str) -> Place:
        if root is None or str(root) == "":
            return Place(label, (), unset_note)
        root_path = Path(root).expanduser()
        return Place(label, (root_path,) + tuple(root_path / name for name in spec.folder_names))

    if data_dir is not None and str(data_dir) != "":
        return [user_place("--data-dir", data_dir, "")]
    keras_root = keras_datasets_dir()
    return [
        user_place(f"${DATA_ENV}", os.environ.get(DATA_ENV), "not set"),
        Place("Debian", (DEBIAN_DATASETS / spec.debian_folder,)),
        Place("Keras cache", tuple(keras_root / sub if sub else keras_root
                                   for sub in spec.keras_folders)),
    ]


def locate(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> Found:
    """The first complete copy of `spec`'s files; DataError listing what was searched if none."""
    searched = places(spec, data_dir)
    incomplete: list[str] = []
    for place in searched:
        for base in place.folders:
            for storage in spec.formats:
                for folder in _with_subdir(base, storage):
                    paths = [_existing(folder, name, storage.gz_optional)
                             for name in storage.files]
                    if all(paths):
                        return Found(spec, storage, folder, tuple(paths))
                    missing = [name for name, path in zip(storage.files, paths) if path is None]
                    if len(missing) < len(paths):
                        incomplete.append(f"  {folder}: has some {storage.description} files but "
                                          f"lacks {', '.join(missing)}")
    if data_dir is not None and str(data_dir) != "":
        raise DataError(_not_in_data_dir_message(spec, Path(data_dir).expanduser(), incomplete))
    raise DataError(_not_found_message(spec, searched, incomplete))


def _with_subdir(base: Path, storage: StorageFormat) -> tuple[Path, ...]:
    return (base, base / storage.subdir) if storage.subdir else (base,)


def _existing(folder: Path, name: str, gz_optional: bool) -> Path | None:
    for candidate in (name, f"{name}.gz") if gz_optional else (name,):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _expected_files(spec: DatasetSpec, where: str) -> list[str]:
    lines = [f"  {storage.expected()}" for storage in spec.formats]
    subdirs = [f"{storage.subdir}/" for storage in spec.formats if storage.subdir]
    if subdirs:
        lines.append(f"  (either directly in {where} or in its subfolder {' or '.join(subdirs)})")
    return lines


def _not_in_data_dir_message(spec: DatasetSpec, data_dir: Path, incomplete: list[str]) -> str:
    if not data_dir.exists():
        state = "does not exist"
    elif not data_dir.is_dir():
        state = "is not a directory"
    elif not any(data_dir.iterdir()):
        state = "is empty"
    else:
        state = f"does not hold {spec.name}'s files"
    named = " or ".join(f"{data_dir / name}/" for name in spec.folder_names)
    lines = [f"--data-dir {data_dir} {state}. {spec.name} is read from its standard files, "
             f"in {data_dir}/ itself or in {named}:"]
    lines += _expected_files(spec, "one of those")
    if incomplete:
        lines.append("Incomplete copies (a download or unpacking that did not finish?):")
        lines += incomplete
    lines.append(f"Put them there, give the --data-dir that holds them, or leave --data-dir out "
                 f"to search ${DATA_ENV}, {DEBIAN_DATASETS / spec.debian_folder} and the Keras "
                 f"cache. To get them: {spec.how_to_get}.")
    return "\n".join(lines)


def _not_found_message(spec: DatasetSpec, searched: list[Place], incomplete: list[str]) -> str:
    lines = [f"dataset {spec.name} not found. It is read from its standard files:"]
    lines += _expected_files(spec, "a searched folder")
    lines.append("Searched, in this order:")
    width = max(len(place.label) for place in searched) + 1
    for place in searched:
        where = ", ".join(f"{folder}" + ("" if folder.is_dir() else " (no such folder)")
                          for folder in place.folders) or place.unset_note
        lines.append(f"  {place.label + ':':<{width}} {where}")
    if incomplete:
        lines.append("Incomplete copies (a download or unpacking that did not finish?):")
        lines += incomplete
    lines.append(f"To get it: {spec.how_to_get}.")
    lines.append(f"Or, on a machine with internet access, set {DOWNLOAD_ENV}=1 to let "
                 f"tf.keras.datasets.{spec.keras_loader} download it into the Keras cache.")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Where NAME's files are found (printed, 0), or what to do to get them (on stderr, 1): scripts/setup.sh
    asks this (`python -c 'from data.locate import main; main(["NAME"])'`) before it installs anything."""
    import sys

    from data.catalog import SPECS

    if len(argv) != 1 or argv[0] not in SPECS:
        print(f"usage: python -m data.locate NAME (one of {', '.join(SPECS)})", file=sys.stderr)
        return 2
    try:
        found = locate(SPECS[argv[0]], None)
    except DataError as e:
        print(e, file=sys.stderr)
        return 1
    print(found.folder)
    return 0

