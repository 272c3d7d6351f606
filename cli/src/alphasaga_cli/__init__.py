"""The ``alphasaga`` command line: run the stack, submit, follow, inspect, operate."""
