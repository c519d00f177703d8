"""Several runs of one script of this project in one Python process (tests/cluster.py's run_in_one starts it).

    python tests/in_one.py SCRIPT CASES_JSON      (SCRIPT: a path, or "-m MODULE")

For the cases that stop before any cluster forms (a bad flag, file or setting): TensorFlow starts once for all
of them, not once a case (some 4 s of CPU each). Each case runs the script's own code afresh, as
`python SCRIPT ARGS...` would (runpy; the modules it imports are imported once), with what it prints caught;
its exit is read as the interpreter reads one: SystemExit(None) is 0, a number that number, a message is
printed to stderr and is 1; an uncaught exception prints its traceback and is 1. The last line printed is
MARK and a JSON list, one {"returncode", "output", "stdout", "stderr"} per case (output: both, as printed).
"""
import contextlib
import io
import json
import os
import runpy
import sys
import traceback

MARK = "in_one: "


class _Both(io.StringIO):
    """One stream's text, copied to the text of both streams in the order printed."""

    def __init__(self, both: io.StringIO) -> None:
        super().__init__()
        self.both = both

    def write(self, text: str) -> int:
        self.both.write(text)
        return super().write(text)


def run_case(script: str, args: list[str]) -> dict:
    both = io.StringIO()
    out, err = _Both(both), _Both(both)
    module = script[3:] if script.startswith("-m ") else None
    sys.argv = [module or script, *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: B036 (what the interpreter would print for it)
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    return {"returncode": code, "output": both.getvalue(), "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    script, cases = sys.argv[1], json.loads(sys.argv[2])
    # As `python SCRIPT` does: the script's folder first on the path (not tests/, this file's); `-m`: the cwd.
    sys.path[0] = os.getcwd() if script.startswith("-m ") else os.path.dirname(os.path.abspath(script))
    results = [run_case(script, args) for args in cases]
    print(MARK + json.dumps(results), file=sys.__stdout__, flush=True)


if __name__ == "__main__":
    main()
