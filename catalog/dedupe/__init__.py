"""Near-duplicate images: perceptual hashes, the Hamming search, the colour check, clusters
with one canonical image each, the catalog run and a contact sheet.

- hashing: pHash and dHash that agree with imagehash, decoded at reduced scale, batched.
- search: every pair of hashes within a Hamming distance (multi-index hashing, numpy only).
- verify: the colour check of candidate pairs and its cut.
- clusters: connected components, the canonical choice and the readers of recorded clusters.
- run: `run_dedupe`, what `slashcat dedupe` calls.
- sheet: the contact sheet of the largest clusters.
"""

from catalog.dedupe.clusters import (
    Cluster,
    ClusterInfo,
    MemberInfo,
    canonical_clusters,
    cluster_members,
    components,
    list_clusters,
)
from catalog.dedupe.hashing import BatchHashes, hash_bytes, hash_files, to_signed
from catalog.dedupe.run import DedupeSummary, run_dedupe
from catalog.dedupe.search import hamming, near_pairs, validate_threshold
from catalog.dedupe.sheet import contact_sheet
from catalog.dedupe.verify import VERIFY_CUT, colour_signature, verify_pairs

__all__ = [
    "VERIFY_CUT",
    "BatchHashes",
    "Cluster",
    "ClusterInfo",
    "DedupeSummary",
    "MemberInfo",
    "canonical_clusters",
    "cluster_members",
    "colour_signature",
    "components",
    "contact_sheet",
    "hamming",
    "hash_bytes",
    "hash_files",
    "list_clusters",
    "near_pairs",
    "run_dedupe",
    "to_signed",
    "validate_threshold",
    "verify_pairs",
]
