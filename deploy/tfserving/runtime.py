"""The one TensorFlow version: the exporter, TF Serving and every container that loads a SavedModel.

``pyproject.toml`` pins ``tensorflow`` (which exports the SavedModels and runs inside the
project's model server and serving image) to this minor version; ``docker-compose.yml``
runs the TF Serving image of the same release; on Vertex AI ``housing_keras`` runs on the
project's serving image (Google's prebuilt TensorFlow prediction containers stop at 2.15).
``tests/deploy/test_tf_runtime.py`` keeps all of them equal to these constants, and
``deploy/tfserving/ops-<minor>.json`` (written by ``python -m deploy.tfserving.oplist
record``) is the op registry that a SavedModel must fit.
"""

from __future__ import annotations

TENSORFLOW_VERSION = "2.21.0"
TENSORFLOW_MINOR = ".".join(TENSORFLOW_VERSION.split(".")[:2])
TF_SERVING_IMAGE = f"tensorflow/serving:{TENSORFLOW_VERSION}"
TF_SERVING_GPU_IMAGE = f"{TF_SERVING_IMAGE}-gpu"
TF_SERVING_PLATFORM = "linux/amd64"
"""TF Serving publishes amd64 images only: Apple-silicon hosts run them under emulation."""
