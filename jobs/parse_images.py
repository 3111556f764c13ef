"""Ray job entrypoint: label an image store, writing Parquet (same flags as ``m2fp-batch run``).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/parse_images.py --input s3://bucket/photos --out s3://bucket/labels --config configs/default.yaml

Inside ``ray job submit`` RAY_ADDRESS is set, so the job joins that cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir, when the package is not installed

from m2fp_batch.pipeline.cli import entrypoint  # noqa: E402

if __name__ == "__main__":
    sys.exit(entrypoint())
