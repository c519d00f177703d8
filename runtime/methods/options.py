"""A method's options: one frozen dataclass per method, the one place its flags, types, defaults and help live.

    @dataclass(frozen=True)
    class LocalSGDOptions(Options):
        sync_every: int = option(16, "steps between model averagings (H)", argtypes.positive_int)

Each field is a flag (`sync_every` is `--sync-every`; a bool is `--flag` / `--no-flag`), parsed by the
field's `parse` (an argtypes check, so a bad value is one argparse line). The options are built once,
from the parsed flags (`from_flags`), carried in the handshake and the run record as JSON (`to_json`,
`handshake`) and read back into the same type (`from_json`). A method reads `self.opts.sync_every`,
never a dict or argparse.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, TypeVar

T = TypeVar("T", bound="Options")


def option(default: Any, help: str, parse: Callable[[str], Any] = str, *, ps_only: bool = False,
           workers_may_read: bool = False) -> Any:
    """A field of a method's options. `ps_only`: the PS's alone (a file it reads, a schedule it decides), not
    compared at the handshake; `workers_may_read`: a PS-only file a worker may read too (the local launcher
    passes it on; compared by content)."""
    return dataclasses.field(default=default, metadata={"help": help, "parse": parse, "ps_only": ps_only,
                                                       "workers_may_read": workers_may_read})


@dataclass(frozen=True)
class Option:
    """The command-line view of one field: what argparse and the command-line splitter need."""

    dest: str
    type: Callable[[str], Any]
    default: Any
    help: str
    ps_only: bool = False
    workers_may_read: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")


@dataclass(frozen=True)
class Options:
    """A method without options; every method's options derive from it."""

    @classmethod
    def described(cls) -> tuple[Option, ...]:
        return tuple(Option(f.name, f.metadata["parse"], f.default, f.metadata["help"], f.metadata["ps_only"],
                            f.metadata["workers_may_read"]) for f in fields(cls))

    @classmethod
    def from_flags(cls: type[T], values: Mapping[str, Any]) -> T:
        """From parsed flags by field name; a value of None (a flag not given) keeps the default."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if values.get(f.name) is not None})

    @classmethod
    def from_json(cls: type[T], raw: Mapping[str, Any]) -> T:
        """Read back what `to_json` wrote (a handshake's or a record's); an unknown name or a value its flag
        would refuse is a ValueError naming it."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ValueError(f"{cls.__name__} has no option {', '.join(unknown)}")
        values = {}
        for name, value in raw.items():
            parse = known[name].metadata["parse"]
            if value is not None and parse is not bool:
                try:  # through the flag's own check, so JSON's 1 for a float comes back a float, in range
                    value = parse(str(value))
                except Exception as e:  # argparse.ArgumentTypeError, ValueError
                    raise ValueError(f"--{name.replace('_', '-')} {value!r}: {e}") from None
            values[name] = value
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def handshake(self) -> dict[str, Any]:
        """The options a worker must share with the PS (compared by name at the handshake)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.metadata["ps_only"]}

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

