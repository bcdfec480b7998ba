"""Baking pictures into UV textures: texel surfaces, visibility, sampling, blending, fill, margin,
and the painting of a run (no bpy)."""
