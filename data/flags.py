"""The data flags every script takes, in one place: add them, then load what they ask for.

    data.flags.add_flags(parser)                  # or an argument group
    args = parser.parse_args()
    dataset = data.flags.from_args(args, model.input_shape, args.seed)
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from data.dataset import Dataset
from data.errors import DataError
from data.loader import NAMES, canonical_name, load
from helpers import argtypes


def dataset_name(text: str) -> str:
    """argparse type: a known dataset name, in its canonical spelling."""
    try:
        return canonical_name(text)
    except DataError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
              default_dataset: str = "fashion_mnist") -> None:
    """--dataset, --data-dir, --fit-input and --train-images on `parser` (or a group of it)."""
    parser.add_argument("--dataset", type=dataset_name, default=default_dataset,
                        help=f"one of {', '.join(NAMES)}")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="the folder holding the dataset's files, and the only place looked "
                             "in when given; else $MP2_DATA, /usr/share/datasets/<name>, then "
                             "the Keras cache%(default).0s")
    parser.add_argument("--fit-input", action="store_true",
                        help="fit the dataset's images to the model's input: zero-pad them "
                             "(centred, e.g. 28x28 to 32x32) and repeat a grey channel 3 times; "
                             "digits are upscaled straight to the model's size. Never shrinks")
    parser.add_argument("--train-images", type=argtypes.positive_int, default=None, metavar="N",
                        help="train on a fixed subset of N training images, stratified by "
                             "class and chosen by the seed (default: all of them)%(default).0s")


def from_args(args: argparse.Namespace, image_shape: tuple[int, int, int] | None,
              seed: int) -> Dataset:
    """The dataset the flags ask for, fitted to `image_shape` when --fit-input is given."""
    return load(args.dataset, args.data_dir, image_shape=image_shape, seed=seed,
                fit_input=args.fit_input, train_images=args.train_images)


def describe(args: argparse.Namespace) -> dict[str, Any]:
    """The data flags as a JSON-serialisable dict (for a run's configuration record)."""
    data_dir = os.path.abspath(Path(args.data_dir).expanduser()) if args.data_dir else None
    return {"dataset": canonical_name(args.dataset), "data_dir": data_dir,
            "fit_input": bool(args.fit_input), "train_images": args.train_images}
