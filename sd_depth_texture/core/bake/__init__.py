"""Baking pictures into UV textures: texel surfaces, visibility, sampling, blending, colour
matching, fill, margin, seam figures and the painting of a run (no bpy)."""
