"""The command line: ``blender -b -c sd_depth_texture COMMAND ...``, a thin door onto the flow.

:func:`.main.main` is the handler registered with ``bpy.utils.register_cli_command``.
"""
