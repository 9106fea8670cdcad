"""Vertex AI: upload, deploy, predict, batch-predict, train and tune, driven by settings.

Every operation builds a *plan* (the exact SDK calls with their arguments) first; ``--dry-run``
prints it and a real run executes the very same plan, so what is printed is what is called.
"""
