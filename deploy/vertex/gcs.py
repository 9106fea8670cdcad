"""Small GCS helpers on top of google-cloud-storage (works against the emulator too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri}")
    bucket, _, path = uri[len("gs://") :].partition("/")
    return bucket, path.strip("/")


def ensure_bucket(client: Any, name: str, location: str) -> bool:
    """Create the bucket in ``location`` unless it exists; True if it was created."""
    if client.lookup_bucket(name) is not None:
        return False
    client.create_bucket(name, location=location)
    return True


def local_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def upload_folder(client: Any, folder: Path, destination: str) -> list[str]:
    """Copy every file under ``folder`` to ``destination`` keeping relative paths."""
    bucket_name, prefix = split_uri(destination)
    bucket = client.bucket(bucket_name)
    uploaded = []
    for path in local_files(folder):
        name = f"{prefix}/{path.relative_to(folder).as_posix()}"
        bucket.blob(name).upload_from_filename(str(path))
        uploaded.append(f"gs://{bucket_name}/{name}")
    return uploaded


def upload_text(client: Any, text: str, destination: str, content_type: str) -> None:
    bucket_name, name = split_uri(destination)
    client.bucket(bucket_name).blob(name).upload_from_string(text, content_type=content_type)


def list_uris(client: Any, prefix_uri: str) -> list[str]:
    bucket_name, prefix = split_uri(prefix_uri)
    return [
        f"gs://{bucket_name}/{blob.name}"
        for blob in client.list_blobs(bucket_name, prefix=prefix + "/" if prefix else None)
    ]


def read_text(client: Any, uri: str) -> str:
    bucket_name, name = split_uri(uri)
    return client.bucket(bucket_name).blob(name).download_as_text()


def delete_prefix(client: Any, prefix_uri: str) -> int:
    """Delete every blob under ``prefix_uri``; the number deleted."""
    bucket_name, prefix = split_uri(prefix_uri)
    blobs = list(client.list_blobs(bucket_name, prefix=prefix + "/" if prefix else None))
    for blob in blobs:
        blob.delete()
    return len(blobs)
