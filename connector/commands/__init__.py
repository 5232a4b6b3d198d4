"""The sub-commands of ``pmx-connector``: one module each, with ``add_arguments`` and ``run``."""
