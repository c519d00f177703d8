"""The one place a training command line is taken apart: into flags with their values, into what the PS gets
and what each worker gets, into what a stage or a grid keeps, replaces or adds.

    ps_argv, worker_argv = split(argv)               # the launcher, the pipeline, the network benchmark
    groups(argv)                                     # [["--lr", "0.003"], ["--fresh"], ["--push=front"]]
    merge(common, own)                               # a grid setting's --lr replaces the common one
    keep(argv, ("--seed", "--data-dir"))             # what the pipeline passes on to the stage

A flag's value is known from the training parser (runtime/flags.py: `TRAINING`, read once, lazily, as it
imports TensorFlow); for a flag it does not know, the value is the next word unless that starts with "--"
(so such a value must be written --flag=VALUE). Nothing here imports TensorFlow until a PS/worker split or a
value table is asked for.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable


@lru_cache(maxsize=1)
def training_flags() -> tuple[dict[str, bool], frozenset[str]]:
    """(flag -> whether it takes a value, the flags only the PS takes), from the PS's parser."""
    from runtime import flags

    return flags.value_table(), frozenset(flags.ps_only_flags())


def name(word: str) -> str:
    return word.split("=", 1)[0]


def groups(argv: Iterable[str], takes_value: dict[str, bool] | None = None) -> list[list[str]]:
    """`argv` as [flag, value?] groups. `takes_value` (flag -> bool) decides where it knows the flag; else a
    flag's value is the next word unless that is a flag. A word no flag takes is a group of its own."""
    out: list[list[str]] = []
    expect = None  # "value": the next word is the last flag's value; "maybe": unless it is a flag
    for word in argv:
        is_flag = word.startswith("--")
        if expect == "value" or (expect == "maybe" and not is_flag):
            out[-1].append(word)
            expect = None
            continue
        out.append([word])
        expect = None
        if is_flag and "=" not in word:
            known = (takes_value or {}).get(name(word))
            expect = "maybe" if known is None else ("value" if known else None)
    return out


def names(argv: Iterable[str]) -> list[str]:
    return [name(group[0]) for group in groups(argv)]


def given(argv: Iterable[str], flag: str) -> bool:
    return any(name(word) == flag for word in argv)


def keep(argv: list[str], wanted: Iterable[str], takes_value: dict[str, bool] | None = None) -> list[str]:
    """The flags of `argv` named in `wanted`, each with its value."""
    wanted = set(wanted)
    return [word for group in groups(argv, takes_value) if name(group[0]) in wanted for word in group]


def drop(argv: list[str], unwanted: Iterable[str], takes_value: dict[str, bool] | None = None) -> list[str]:
    """`argv` without the flags named in `unwanted` (and their values)."""
    unwanted = set(unwanted)
    return [word for group in groups(argv, takes_value) if name(group[0]) not in unwanted for word in group]


def merge(common: list[str], own: list[str]) -> list[str]:
    """`common` without the flags `own` gives, then `own`: a setting's --lr replaces the common one."""
    return drop(common, names(own)) + own


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    """What the PS gets (everything) and what each worker gets: `argv` without the flags only the PS takes
    (a file the PS reads that workers may read too, a predictor, stays: a local worker can open it)."""
    takes_value, ps_only = training_flags()
    return list(argv), drop(argv, ps_only, takes_value)
