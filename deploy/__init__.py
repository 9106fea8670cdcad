"""Deployment targets of the service beyond this machine (Vertex AI)."""
