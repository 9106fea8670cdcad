"""The bottom layer: the feature and signature contract, user errors, paths and the command table.

Every other package may import ``core``; ``core`` imports nothing of the project (the command
table names command modules as strings and imports them only when the CLI runs).
"""
