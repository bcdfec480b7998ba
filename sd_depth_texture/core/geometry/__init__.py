"""Geometry and depth: views as matrices, the rasteriser, the Z-buffer, meshes as arrays.

No bpy.
"""
