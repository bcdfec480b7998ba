"""Batch texturing of asset libraries: every asset of many .blend files, resumable, over Ray.

Each module states its boundary; imports run one way, top to bottom, and none imports
:mod:`..cli` (the ``batch`` command, :mod:`..cli.batch`, is a door onto these):

* :mod:`.records` what a batch works on (files, assets, jobs), the manifest, manifest lines;
* :mod:`.sources` which .blend files the SOURCE arguments name, and their asset catalogs;
* :mod:`.prompts` each asset's prompt and seed: templates, CSV and TOML tables;
* :mod:`.outputs` where a run writes, the lock on ``--out``, what it refuses to overwrite;
* :mod:`.plan` the batch's own options, and what a (re)run does with each asset, decided
  before any texturing;
* :mod:`.report` the progress line, the summary and the contact sheet;
* :mod:`.runners` the sequential loop and the Ray actors, both driving one worker class;
* :mod:`.run` the batch's steps, from the template request to the summary;
* :mod:`.worker` the Blender side and the only module here that imports ``bpy``.

Crash safety rests on three rules:

* an output .blend is only ever replaced whole (written under a temporary name, then renamed),
  after every asset, and it carries an in-file record of the assets it holds; an asset's
  textures are written whole by the flow just before that commit (taken back if it fails, and
  never over a file the output does not own), and its preview is staged beside its final place
  and moved there only once the record naming it is committed (a kill in between is rolled
  forward on the next open);
* the manifest (JSON lines) is appended after that, each line flushed and fsynced;
* a rerun skips an asset whose last manifest line is ``done`` while its output file exists,
  and a worker that finds an asset already in the output's in-file record (the process died
  between the rename and the manifest line) reports it again instead of texturing it twice.

The package has no imports of its own, so ``import sd_depth_texture.batch.plan`` never loads
Blender; Ray is imported only for ``--ray``.
"""
