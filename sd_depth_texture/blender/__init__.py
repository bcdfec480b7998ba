"""The Blender side: scenes to arrays, and results back to images and materials."""
