"""One module per ``openrlhf-act`` command group: ``HELP``, ``configure(parser)``; cheap to import."""
