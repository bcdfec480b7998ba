"""Stable Diffusion 2 depth, with no bpy: where models come from (:mod:`.sources`, :mod:`.hub`),
where they run (:mod:`.device`), the one loaded pipeline (:mod:`.cache`), the samplers
(:mod:`.schedulers`), one view from a depth map (:mod:`.generate`), holding what earlier views
painted (:mod:`.kept_regions`) and a tiny random model for tests (:mod:`.tiny`). Nothing is
imported here, so :mod:`.settings` and :mod:`.dependencies` work in a Blender without torch.
"""
