"""The listening gallery as a study: one offline page over top-k outputs.

``python -m sonify_jax.analysis.run --study=gallery --workdir=SITE
--checkpoint=contrastive=TOPK_A,supervised=TOPK_B``: ``--checkpoint`` names
top-k study folders (local or gs://), not runs; nothing is loaded but their
``topk.json`` and the files it names. The page itself is
``analysis.pages.gallery.write_gallery``.
"""
import contextlib

from sonify_jax import mirror
from sonify_jax.analysis import studies


def _run_study(context) -> None:
  from sonify_jax.analysis.pages import gallery  # pylint: disable=g-import-not-at-top
  with contextlib.ExitStack() as stack:  # gs:// topk folders: local copies
    path = gallery.write_gallery(context.workdir, {
        name: stack.enter_context(mirror.pulled(topk_dir))
        for name, topk_dir in context.checkpoints})
  context.say(f"gallery: {path}")


STUDY = studies.Study("gallery", frozenset(), _run_study, reads_runs=False)
