"""The listening gallery as a study: one offline page over top-k outputs.

``python -m sonify_jax.analysis.run --study=gallery --workdir=SITE
--checkpoint=contrastive=TOPK_A,supervised=TOPK_B``: ``--checkpoint`` names
top-k study folders (local or gs://), not runs; nothing is loaded but their
``topk.json`` and the files it names. The page itself is
``analysis.pages.gallery.write_gallery``.

Atlas study folders instead (each holding ``atlas.json``: ``--checkpoint=
crepe_tiny=ATLAS_A,fcn_993=ATLAS_B``, local, any networks and rates) give
one atlas page over all of them, the networks side by side
(``atlas_page.write_atlas_page``); the page refers to their files where they
are.
"""
import contextlib
import os

from sonify_jax import mirror
from sonify_jax import paths
from sonify_jax.analysis import studies
from sonify_jax.analysis.pages import atlas_page
from sonify_jax.errors import UserError


def _run_study(context) -> None:
  from sonify_jax.analysis.pages import gallery  # pylint: disable=g-import-not-at-top
  atlases = [paths.is_local(folder) and os.path.isfile(
      os.path.join(folder, atlas_page.INDEX))
             for _, folder in context.checkpoints]
  if any(atlases):
    if not all(atlases):
      raise UserError("--checkpoint names atlas folders and top-k folders "
                      "(or remote atlases, which the page cannot refer to): "
                      "give one kind, atlas folders local")
    page = atlas_page.write_atlas_page(context.workdir, dict(
        context.checkpoints), title="sonify_jax atlas: " + ", ".join(
            name for name, _ in context.checkpoints))
    context.say(f"gallery: {page}")
    return
  with contextlib.ExitStack() as stack:  # gs:// topk folders: local copies
    path = gallery.write_gallery(context.workdir, {
        name: stack.enter_context(mirror.pulled(topk_dir))
        for name, topk_dir in context.checkpoints})
  context.say(f"gallery: {path}")


STUDY = studies.Study("gallery", frozenset(), _run_study, reads_runs=False)
