"""Pure computation (geometry, depth, projection, generation): arrays in, arrays out, no ``bpy``."""
