"""The command handlers, one module per area. Handlers parse options, call plain
functions in the package and print; they hold no logic of their own."""
