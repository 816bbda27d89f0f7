"""Run a style's recipe: every step from the teacher ONNX and the data folders to its weights file.

A recipe is a TOML file in `recipes/` that lists stages, each a training module and its
arguments. Stages run in order in this process. Every module resumes from its own checkpoint
or cache, and a finished stage leaves `<work>/<stage>.done`, so running the recipe again after
a stop goes on where it stopped and a finished recipe is not run twice. Budgets are step
counts, not minutes, so the same recipe does the same work on a fast or a slow CPU.

    python -m livefilter.train.recipe recipes/cute.toml
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

MODULES = {  # the stages a recipe may run: only the project's own training code
    "distill": "livefilter.train.distill",
    "hdcache": "livefilter.train.hdcache",
    "hdtrain": "livefilter.train.hdtrain",
    "quantize": "livefilter.train.quantize",
}


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    argv: list[str]


class RecipeError(ValueError):
    """A recipe file that cannot be run as written."""


def expand(args: list[str], values: dict[str, str], data: list[str]) -> list[str]:
    """`{name}` placeholders take the recipe's values; a lone "@data" becomes the data folders."""
    out: list[str] = []
    for a in args:
        if a == "@data":
            out.extend(data)
            continue
        try:
            out.append(a.format(**values))
        except KeyError as exc:
            raise RecipeError(f"unknown placeholder {exc} in {a!r}") from None
    return out


def load(path: Path, shared: Path) -> tuple[dict, list[Stage]]:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    for key in ("style", "teacher", "stage"):
        if key not in doc:
            raise RecipeError(f"recipe {path} has no '{key}'")
    style = doc["style"]
    values = {"style": style, "shared": str(shared), "teacher": str(shared / "teachers" / doc["teacher"]),
              "faces_model": str(shared / "models" / "face_detection_yunet_2026may.onnx"),
              "work": str(Path(doc.get("work", f"runs/recipe/{style}"))), "cache": doc.get("cache", "runs/cache"),
              "weights": doc.get("weights", "weights")}
    data = ["--photos", *(str(shared / p) for p in doc.get("photos", [])),
            "--clips", *(str(shared / c) for c in doc.get("clips", []))]
    stages = []
    for i, st in enumerate(doc["stage"]):
        name, run = st.get("name"), st.get("run")
        if not name or run not in MODULES:
            raise RecipeError(f"stage {i + 1} of {path}: needs a name and run = one of {', '.join(MODULES)}")
        stages.append(Stage(name, MODULES[run], expand(list(st.get("args", [])), values, data)))
    if len({s.name for s in stages}) != len(stages):
        raise RecipeError(f"recipe {path}: stage names must differ")
    return values, stages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recipe", description=__doc__.splitlines()[0])
    p.add_argument("recipe", type=Path, help="recipes/<style>.toml")
    p.add_argument("--shared", type=Path, default=Path("../shared"), help="teachers, data and models")
    p.add_argument("--dry-run", action="store_true", help="print the stages' commands and stop")
    p.add_argument("--redo", nargs="*", default=[], metavar="STAGE", help="run these stages again")
    args = p.parse_args(argv)
    try:
        values, stages = load(args.recipe, args.shared)
    except RecipeError as exc:
        print(f"recipe: error: {exc}", file=sys.stderr)
        return 2
    unknown = set(args.redo) - {s.name for s in stages}
    if unknown:
        print(f"recipe: error: no stage named {sorted(unknown)[0]!r}", file=sys.stderr)
        return 2
    work = Path(values["work"])
    if args.dry_run:
        for s in stages:
            print(f"# {s.name}\npython -m {s.module} {' '.join(s.argv)}")
        return 0
    if not Path(values["teacher"]).is_file():
        print(f"recipe: error: teacher not found: {values['teacher']}", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    for s in stages:
        done = work / f"{s.name}.done"
        if done.exists() and s.name not in args.redo:
            print(f"recipe: {s.name}: done before ({done})", flush=True)
            continue
        print(f"recipe: {s.name}: python -m {s.module} {' '.join(s.argv)}", flush=True)
        t0 = time.time()
        rc = importlib.import_module(s.module).main(s.argv)
        if rc:
            print(f"recipe: error: stage {s.name} failed (exit {rc}); run the recipe again to resume",
                  file=sys.stderr)
            return rc
        minutes = (time.time() - t0) / 60
        done.write_text(json.dumps({"module": s.module, "argv": s.argv, "minutes": round(minutes, 1),
                                    "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2) + "\n")
        print(f"recipe: {s.name}: finished in {minutes:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
