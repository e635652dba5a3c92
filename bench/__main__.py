"""`python -m bench [NAME ...]`: run every `bench/bench_*.py` module's `main()` in turn.

Modules are discovered by name, so a new `bench_*.py` joins the run without being listed here.
Give names (e.g. `publisher`) to run only those. One failing bench is reported and the rest
still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    """The bench modules, by name, in alphabetical order."""
    here = [str(Path(__file__).resolve().parent)]
    return sorted(info.name for info in pkgutil.iter_modules(here) if info.name.startswith("bench_"))


def run(name: str) -> bool:
    print(f"\n=== {name} ===", flush=True)
    started = time.perf_counter()
    try:
        module = importlib.import_module(f"bench.{name}")
        module.main()
    except Exception:
        traceback.print_exc()
        print(f"--- {name} FAILED", flush=True)
        return False
    print(f"--- {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return True


def main(argv: list[str]) -> int:
    names = discover()
    if argv:
        wanted = {arg.removeprefix("bench_").removesuffix(".py") for arg in argv}
        names = [name for name in names if name.removeprefix("bench_") in wanted]
        if not names:
            print(f"no bench module matches {', '.join(argv)}", file=sys.stderr)
            return 2
    results = [run(name) for name in names]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
