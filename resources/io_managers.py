"""Where dataset artifacts are stored: local disk under TWIN_HOME by default, S3 by configuration.

A dataset asset returns a `DatasetArtifact` (a versioned folder already written under
TWIN_HOME/datasets). This IO manager records which version each (asset, partition) holds, in a small
pointer file named after the partition key so partitions never overwrite each other, and with S3
configured uploads the folder to `s3://BUCKET/PREFIX/<asset>/<partition>/<version>/` first.
Downstream assets get the artifact back as a local folder (downloaded once from S3 when needed).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import dagster as dg

from twin_platform.datasets.artifact import DatasetArtifact
from twin_platform.fsutil import publishing, write_atomic
from twin_platform.settings import load_settings

_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")


def _partition(context: dg.OutputContext | dg.InputContext) -> str:
    if isinstance(context, dg.InputContext):
        key = context.asset_partition_key if context.has_asset_partitions else None
    else:
        key = context.partition_key if context.has_partition_key else None
    if key is None:
        return "__all__"
    if not _SAFE_KEY.match(key):
        raise dg.Failure(f"partition key {key!r} is not safe in a file path")
    return key


class DatasetIOManager(dg.ConfigurableIOManager):
    """Stores `DatasetArtifact`s; `s3_bucket` set switches from local disk to S3 (dagster-aws)."""

    base_dir: str | None = None  # default: TWIN_HOME/datasets
    s3_bucket: str | None = None
    s3_prefix: str = "twin-platform/datasets"
    s3_endpoint_url: str | None = None  # MinIO or another S3-compatible store

    def _root(self) -> Path:
        return Path(self.base_dir) if self.base_dir else load_settings().datasets_dir

    def _s3(self) -> Any:
        from dagster_aws.s3 import S3Resource

        return S3Resource(endpoint_url=self.s3_endpoint_url).get_client()

    def _s3_key(self, *parts: str) -> str:
        return "/".join([self.s3_prefix.strip("/"), *parts])

    # Writing ---------------------------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: DatasetArtifact) -> None:
        asset, partition = context.asset_key.to_python_identifier(), _partition(context)
        if self.s3_bucket:
            uri = self._upload(obj, asset, partition)
        else:
            obj = self._store_locally(obj, asset, partition)
            uri = str(obj.path)
            write_atomic(self._root() / asset / f"{partition}.json", json.dumps(obj.to_dict()))
        context.add_output_metadata({"uri": uri, "version": obj.version})

    def _store_locally(
        self, artifact: DatasetArtifact, asset: str, partition: str
    ) -> DatasetArtifact:
        """An artifact written outside `base_dir` is copied in: the IO manager owns what it points to."""
        root = self._root().resolve()
        if artifact.path.resolve().is_relative_to(root):
            return artifact
        target = root / asset / partition / artifact.version
        if not target.exists():
            with publishing(target) as staging:
                shutil.copytree(artifact.path, staging, dirs_exist_ok=True)
        return DatasetArtifact(artifact.kind, artifact.author, artifact.version, target)

    def _upload(self, artifact: DatasetArtifact, asset: str, partition: str) -> str:
        client = self._s3()
        folder = self._s3_key(asset, partition, artifact.version)
        for file in sorted(artifact.path.iterdir()):
            client.upload_file(str(file), self.s3_bucket, f"{folder}/{file.name}")
        pointer = artifact.to_dict() | {"path": f"s3://{self.s3_bucket}/{folder}"}
        client.put_object(
            Bucket=self.s3_bucket,
            Key=self._s3_key(asset, f"{partition}.json"),
            Body=json.dumps(pointer),
        )
        return pointer["path"]

    # Reading ---------------------------------------------------------------------------------------

    def load_input(self, context: dg.InputContext) -> DatasetArtifact:
        asset, partition = context.asset_key.to_python_identifier(), _partition(context)
        if not self.s3_bucket:
            pointer = self._root() / asset / f"{partition}.json"
            if not pointer.exists():
                raise dg.Failure(
                    f"{asset} has no stored version for partition {partition!r}: materialize it first"
                )
            return DatasetArtifact.from_dict(json.loads(pointer.read_text()))
        return self._download(asset, partition)

    def _download(self, asset: str, partition: str) -> DatasetArtifact:
        client = self._s3()
        body = client.get_object(
            Bucket=self.s3_bucket, Key=self._s3_key(asset, f"{partition}.json")
        )["Body"]
        pointer = json.loads(body.read())
        target = self._root() / "s3-cache" / asset / partition / pointer["version"]
        if not target.exists():
            prefix = self._s3_key(asset, partition, pointer["version"]) + "/"
            listing = client.list_objects_v2(Bucket=self.s3_bucket, Prefix=prefix)
            with publishing(target) as staging:
                for item in listing.get("Contents", []):
                    client.download_file(
                        self.s3_bucket, item["Key"], str(staging / item["Key"].removeprefix(prefix))
                    )
        return DatasetArtifact(pointer["kind"], pointer["author"], pointer["version"], target)
