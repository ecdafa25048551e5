"""The canonical digest of a vector collection (``attune state digest embedder``).

Vectors are not compared as floats (ONNX results differ in their last bits with the
batch a text was embedded in); each point contributes the hash of the text its
vector encodes, its version, state and payload.
"""

from __future__ import annotations

import json

from services.common.digest import Digest
from services.common.vectorindex import VectorIndex


async def digest_collection(index: VectorIndex, model_name: str) -> Digest:
    digest = Digest()
    async for item in index.scroll(with_vectors=False):
        payload = json.dumps(item.payload, sort_keys=True, separators=(",", ":"))
        state = str(item.payload.get("state"))
        digest.add(state, item.tenant, item.item_id, str(item.version), payload)
    digest.add("model", model_name)
    return digest


__all__ = ["digest_collection"]
