"""Depth-guided diffusion, with no bpy: the model families (:mod:`.backends`: SD2-depth, SD 1.5
and SDXL with depth ControlNets), where models come from (:mod:`.sources`, :mod:`.hub`,
:mod:`.controlnets`), where they run (:mod:`.device`), the one loaded pipeline (:mod:`.cache`),
the samplers (:mod:`.schedulers`), one view from a depth map (:mod:`.generate`), holding what
earlier views painted (:mod:`.kept_regions`) and tiny random models for tests (:mod:`.tiny`).
Nothing is imported here, so :mod:`.settings` and :mod:`.dependencies` work in a Blender
without torch.
"""
