"""The project's model server: TF Serving's gRPC and REST protocol for SavedModels and joblib."""
