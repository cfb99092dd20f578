"""One module per CLI command (or family): ``add_arguments(parser, name)`` and ``run(args)``."""
