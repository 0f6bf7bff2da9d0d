"""Near-duplicate search, clusters, canonical choice, incremental runs and the dedupe command."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select, update

from catalog.db import Catalog
from catalog.dedupe import (
    canonical_clusters,
    cluster_members,
    colour_signature,
    components,
    contact_sheet,
    hamming,
    hash_bytes,
    list_clusters,
    near_pairs,
    run_dedupe,
    validate_threshold,
    verify_pairs,
)
from catalog.dedupe.search import plan_blocks
from catalog.dedupe.verify import normalise_signatures, signature_similarity
from catalog.errors import InvalidInput
from catalog.ingest import get_or_create_store, ingest_image, link_image, upsert_product
from catalog.models import Image

from helpers.dedupe import brighter, encode, photo_like, resized, silhouette

# ---------------------------------------------------------------- the search alone


def planted_hashes(n: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Random 64-bit hashes with `clusters` groups of 3 within a few bits of each other."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    slots = rng.choice(n, (clusters, 3), replace=False)
    for row in slots:
        for s in row[1:]:
            flips = rng.choice(64, int(rng.integers(0, 7)), replace=False)
            h[s] = h[row[0]] ^ np.uint64(sum(1 << int(b) for b in flips))
    return h


def brute_force(h: np.ndarray, k: int) -> set[tuple[int, int]]:
    d = hamming(h[:, None], h[None, :])
    i, j = np.nonzero(np.triu(d <= k, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def as_set(i: np.ndarray, j: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist(), strict=True))


@pytest.mark.parametrize("n,k", [(1500, 0), (1500, 3), (1500, 8), (4000, 10), (200, 64)])
def test_indexed_search_equals_brute_force(n: int, k: int) -> None:
    h = planted_hashes(n, n // 15)
    i, j, d = near_pairs(h, k)
    assert len(i) == len(as_set(i, j)), "each pair once"
    assert as_set(i, j) == brute_force(h, k)
    assert (hamming(h[i], h[j]) == d).all()


def test_query_mode_finds_only_pairs_touching_the_new_hashes() -> None:
    h = planted_hashes(3000, 200, seed=1)
    new = np.arange(2700, 3000)
    i, j, _ = near_pairs(h, 8, query=new)
    want = {p for p in brute_force(h, 8) if p[0] >= 2700 or p[1] >= 2700}
    assert as_set(i, j) == want
    assert len(i) == len(want)
    assert set(i.tolist()) <= set(new.tolist())


def test_blocks_satisfy_the_pigeonhole() -> None:
    for n in (10, 1000, 10**6):
        for k in (0, 1, 6, 8, 12):
            blocks = plan_blocks(n, k)
            assert sum(b.radius + 1 for b in blocks) == k + 1
            assert sum(b.width for b in blocks) <= 64


def test_components_are_connected_groups() -> None:
    labels = components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels[0] == labels[1] == labels[2]
    assert labels[4] == labels[5] != labels[0]
    assert len(set(labels.tolist())) == 3


@pytest.mark.parametrize("bad", [-1, 65, 1000])
def test_threshold_outside_0_to_64_is_refused(bad: int) -> None:
    with pytest.raises(InvalidInput, match="from 0 to 64"):
        validate_threshold(bad)
    with pytest.raises(InvalidInput):
        near_pairs(np.zeros(3, np.uint64), bad)


# ---------------------------------------------------------------- in the catalog

EPOCH = datetime(2026, 1, 1)
T = 4  # the brighter copy of photo 1 is 2 bits off in pHash and 4 in dHash; others >= 16
# The planted tests below check the hash search and clustering, so they run with verify=False:
# photo 1 has a saturated gradient backdrop that brightening clips (colour similarity 0.96,
# under VERIFY_CUT); the colour check is tested on white-backed products at the end.


def add_images(catalog: Catalog, datas: list[bytes], product: str = "p") -> list[int]:
    """Ingest bytes as images of one product; created_at one minute apart in list order."""
    ids = []
    with catalog.session() as session:
        store = get_or_create_store(session, "shop", "http://shop.test")
        prod, _ = upsert_product(session, store.id, f"http://shop.test/{product}")
        start = session.scalar(select(Image.id).order_by(Image.id.desc()).limit(1)) or 0
        for n, data in enumerate(datas):
            out = ingest_image(session, catalog.store, data)
            out.image.created_at = EPOCH + timedelta(minutes=start + n)
            link_image(session, prod.id, out.image.id, None)
            ids.append(out.image.id)
    return ids


def rows(catalog: Catalog) -> dict[int, tuple[int | None, bool, int | None]]:
    with catalog.session() as session:
        return {
            r.id: (r.cluster_id, r.is_canonical, r.dedupe_threshold)
            for r in session.execute(
                select(Image.id, Image.cluster_id, Image.is_canonical, Image.dedupe_threshold)
            )
        }


@pytest.fixture
def planted(catalog: Catalog) -> dict[str, object]:
    """Eight unrelated photos; photo 0 also resized to 50 % and recompressed, photo 1 brighter."""
    photos = [photo_like(seed, (320, 320), white=seed % 2 == 0) for seed in range(8)]
    ids = add_images(catalog, [encode(p) for p in photos])
    small = add_images(catalog, [encode(resized(photos[0]))])[0]
    q30 = add_images(catalog, [encode(photos[0], quality=30)])[0]
    bright = add_images(catalog, [encode(brighter(photos[1]))])[0]
    return {"catalog": catalog, "ids": ids, "small": small, "q30": q30, "bright": bright}


def test_planted_duplicates_form_clusters(planted: dict) -> None:
    cat, ids = planted["catalog"], planted["ids"]
    summary = run_dedupe(cat, T, verify=False)
    assert summary.mode == "full"
    assert summary.clusters == 2
    assert summary.sizes == {2: 1, 3: 1}
    assert summary.leaving_training == 3
    state = rows(cat)
    first = {ids[0], planted["small"], planted["q30"]}
    assert {i for i, r in state.items() if r[0] == ids[0]} == first
    assert {i for i, r in state.items() if r[0] == ids[1]} == {ids[1], planted["bright"]}
    for other in ids[2:]:
        assert state[other] == (None, True, summary.threshold)  # singletons: own cluster
    with cat.session() as session:
        of = {image_id: c for c in canonical_clusters(session) for image_id in c.image_ids}
    assert of[planted["small"]] == of[ids[0]]
    assert (of[ids[0]].cluster_id, of[ids[0]].canonical_id) == (ids[0], ids[0])
    assert (of[ids[5]].cluster_id, of[ids[5]].image_ids) == (None, (ids[5],))  # a singleton


def test_canonical_is_largest_then_earliest(planted: dict) -> None:
    cat, ids = planted["catalog"], planted["ids"]
    run_dedupe(cat, T, verify=False)
    state = rows(cat)
    # 320 px original beats the 160 px copy and the same-size q30 copy seen later
    assert state[ids[0]][1] is True
    assert state[planted["small"]][1] is False
    assert state[planted["q30"]][1] is False
    # same size: the earlier one wins; make the brighter copy earlier and it takes over
    with cat.session() as session:
        session.execute(update(Image).where(Image.id == planted["bright"])
                        .values(created_at=EPOCH - timedelta(days=1)))
    run_dedupe(cat, T, verify=False, full=True)
    state = rows(cat)
    assert state[planted["bright"]][1] is True and state[ids[1]][1] is False


def test_incremental_run_compares_only_new_images(planted: dict) -> None:
    cat, ids = planted["catalog"], planted["ids"]
    run_dedupe(cat, T, verify=False)
    again = run_dedupe(cat, T, verify=False)
    assert again.mode == "nothing-new" and again.compared == 0
    big = photo_like(0, (320, 320), white=True).resize((640, 640))
    new_id = add_images(cat, [encode(big), encode(photo_like(99))])[0]
    summary = run_dedupe(cat, T, verify=False)
    assert summary.mode == "incremental"
    assert summary.compared == 2
    state = rows(cat)
    assert state[new_id][0] == ids[0]  # joins the cluster, which keeps its id
    assert state[new_id][1] is True  # largest resolution now
    assert state[ids[0]][1] is False
    assert summary.leaving_training == 4


def test_incremental_keeps_a_cluster_whose_first_image_left(planted: dict) -> None:
    cat, ids = planted["catalog"], planted["ids"]
    run_dedupe(cat, T, verify=False)
    with cat.session() as session:
        session.execute(update(Image).where(Image.id == ids[0]).values(rejected_reason="gone"))
    add_images(cat, [encode(photo_like(77))])
    assert run_dedupe(cat, T, verify=False).mode == "incremental"
    state = rows(cat)
    assert state[planted["small"]][0] == state[planted["q30"]][0] == planted["small"]
    assert state[planted["small"]][1] != state[planted["q30"]][1]


def test_other_threshold_redoes_all_pairs(planted: dict) -> None:
    cat = planted["catalog"]
    run_dedupe(cat, threshold=10)
    summary = run_dedupe(cat, threshold=0)
    assert summary.mode == "full" and summary.compared == summary.images == 11
    assert summary.clusters < 2  # identical hashes still cluster at 0
    assert all(r[2] == 0 for r in rows(cat).values())


def test_dry_run_writes_nothing(planted: dict) -> None:
    cat = planted["catalog"]
    before = rows(cat)
    summary = run_dedupe(cat, T, verify=False, dry_run=True)
    assert summary.clusters == 2 and summary.rows_changed == 11
    assert rows(cat) == before


def test_bad_threshold_in_run_is_refused(planted: dict) -> None:
    with pytest.raises(InvalidInput, match="from 0 to 64"):
        run_dedupe(planted["catalog"], threshold=65)
    with pytest.raises(InvalidInput, match="dHash"):
        run_dedupe(planted["catalog"], dhash_threshold=-2)


def test_empty_catalog_has_nothing_to_do(catalog: Catalog) -> None:
    summary = run_dedupe(catalog)
    assert summary.mode == "empty" and summary.images == 0


def test_undecodable_image_keeps_no_hash_and_is_reported(planted: dict) -> None:
    cat = planted["catalog"]
    with cat.session() as session:  # rows from before hashing, one of whose files is damaged
        img = session.get_one(Image, planted["q30"])
        cat.store.path(img.path).write_bytes(b"\xff\xd8\xff" + b"junk" * 50)
        session.execute(update(Image).values(phash=None, dhash=None))
    dry = run_dedupe(cat, T, verify=False, dry_run=True)
    assert [i for i, _ in dry.unhashable] == [planted["q30"]]
    assert dry.clusters == 2 and dry.images == 10
    summary = run_dedupe(cat, T, verify=False)
    assert [i for i, _ in summary.unhashable] == [planted["q30"]]
    assert summary.hashed_now == 10 and summary.images == 10 and summary.clusters == 2
    with cat.session() as session:
        assert session.get_one(Image, planted["q30"]).phash is None
        assert session.get_one(Image, planted["small"]).phash is not None


def test_dhash_second_opinion_removes_pairs(planted: dict) -> None:
    cat = planted["catalog"]
    loose = run_dedupe(cat, T, verify=False, dry_run=True, dhash_threshold=64)
    strict = run_dedupe(cat, T, verify=False, dry_run=True, dhash_threshold=0)
    assert strict.pairs < loose.pairs == 4
    assert loose.dhash_threshold == 64 and strict.dhash_threshold == 0


def test_default_threshold_finds_resized_and_recompressed_copies(planted: dict) -> None:
    cat, ids = planted["catalog"], planted["ids"]
    summary = run_dedupe(cat)
    assert (summary.threshold, summary.dhash_threshold) == (10, 10)
    assert summary.verify_cut is not None
    state = rows(cat)
    assert state[planted["small"]][0] == state[planted["q30"]][0] == ids[0]


def test_listing_members_and_contact_sheet(planted: dict, tmp_path: Path) -> None:
    cat, ids = planted["catalog"], planted["ids"]
    run_dedupe(cat, T, verify=False)
    with cat.session() as session:
        clusters = list_clusters(session)
        assert [(c.cluster_id, c.size) for c in clusters] == [(ids[0], 3), (ids[1], 2)]
        members = cluster_members(session, ids[0])
        assert members[0].is_canonical and members[0].phash_distance == 0
        assert {m.image_id for m in members} == set(clusters[0].member_ids)
        assert all(m.products == 1 for m in members)
        with pytest.raises(InvalidInput, match="no cluster 999"):
            cluster_members(session, 999)
    out = tmp_path / "sheet.png"
    assert contact_sheet(cat, out, per_row=4, thumb=64) == 2
    with PILImage.open(out) as sheet:
        assert sheet.format == "PNG" and sheet.width == 6 + 4 * 70
    with pytest.raises(InvalidInput, match="PNG"):
        contact_sheet(cat, tmp_path / "sheet.jpg")


def test_contact_sheet_without_clusters_is_refused(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no clusters"):
        contact_sheet(catalog, tmp_path / "x.png")


# ---------------------------------------------------------------- the command


def test_cli_dedupe_show_and_sheet(cli, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from catalog.db import open_catalog

    with open_catalog(settings) as cat:
        photos = [photo_like(s, (256, 256)) for s in range(4)]
        ids = add_images(cat, [encode(p) for p in photos] + [encode(resized(photos[2]))])
    dry = cli("dedupe", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.output and "leave training" in dry.output
    assert cli("dedupe", "--show").output.startswith("No clusters")
    result = cli("dedupe", "--threshold", "8")
    assert result.exit_code == 0, result.output
    assert "clusters (2+ images)" in result.output
    listing = cli("dedupe", "--show")
    assert listing.exit_code == 0 and str(ids[2]) in listing.output
    one = cli("dedupe", "--show", str(ids[2]))
    assert one.exit_code == 0 and "256x256" in one.output and "128x128" in one.output
    sheet = tmp_path / "s.png"
    made = cli("dedupe", "--sheet", str(sheet))
    assert made.exit_code == 0 and sheet.stat().st_size > 0
    again = cli("dedupe", "--threshold", "8")
    assert "Nothing to do" in again.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--threshold", "65"], "from 0 to 64"),
        (["--threshold", "-1"], "from 0 to 64"),
        (["--show", "999"], "no cluster 999"),
        (["--show", "abc"], "cluster number"),
        (["--sheet", "x.txt"], "PNG"),
    ],
)
def test_cli_bad_input_is_one_line(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    cli("init")
    result = cli("dedupe", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_empty_catalog(cli) -> None:  # type: ignore[no-untyped-def]
    cli("init")
    result = cli("dedupe")
    assert result.exit_code == 0
    assert "Nothing to do" in result.output


# ---------------------------------------------------------------- colour verification

RED, GREEN = (180, 60, 60), (60, 120, 60)  # equal luminance: one grey picture, two products


def similarity(a: bytes, b: bytes) -> float:
    sigs = normalise_signatures(np.stack([colour_signature(a), colour_signature(b)]))
    return float(signature_similarity(sigs[:1], sigs[1:])[0])


def test_signature_tells_colours_apart_but_not_brightness() -> None:
    red, green = encode(silhouette(RED)), encode(silhouette(GREEN))
    ph_r, dh_r = hash_bytes(red)
    ph_g, dh_g = hash_bytes(green)
    assert bin(ph_r ^ ph_g).count("1") <= 2 and bin(dh_r ^ dh_g).count("1") <= 2
    assert similarity(red, green) < 0.5
    assert similarity(red, encode(brighter(silhouette(RED)))) > 0.95
    assert similarity(red, encode(resized(silhouette(RED)))) > 0.95
    photo = photo_like(3, (320, 240))
    assert similarity(encode(photo), encode(photo, quality=30)) > 0.95
    assert similarity(encode(photo), encode(photo, "PNG")) > 0.95


def test_chroma_features_ignore_a_global_brightness_change() -> None:
    """The chroma damping scales with the image, so k x RGB leaves the chroma as it was."""
    rng = np.random.default_rng(0)
    sig = np.full((1, 256, 3), 255.0, np.float32)  # white backdrop
    sig[0, :100] = rng.uniform(20, 180, (100, 3))  # the product's cells
    bright = sig.copy()
    bright[0, :100] *= 1.2
    a, b = normalise_signatures(sig), normalise_signatures(bright)
    np.testing.assert_allclose(a[0, :100, 1:], b[0, :100, 1:], atol=1e-5)
    assert float(signature_similarity(a, b)[0]) > 0.999


def test_flat_images_agree_with_each_other() -> None:
    white = encode(PILImage.new("RGB", (64, 64), "white"))
    assert similarity(white, white) == 1.0


@pytest.fixture
def silhouettes(catalog: Catalog) -> dict[str, object]:
    """A red and a green product of one silhouette, and a brighter copy of the red one."""
    red, green, bright = add_images(catalog, [
        encode(silhouette(RED)), encode(silhouette(GREEN)), encode(brighter(silhouette(RED))),
    ])
    return {"catalog": catalog, "red": red, "green": green, "bright": bright}


def test_same_silhouette_in_other_colours_is_not_clustered(silhouettes: dict) -> None:
    cat = silhouettes["catalog"]
    red, green, bright = silhouettes["red"], silhouettes["green"], silhouettes["bright"]
    unverified = run_dedupe(cat, dry_run=True, verify=False)
    assert unverified.pairs == 3 and unverified.verify_cut is None  # the hashes merge all
    summary = run_dedupe(cat)
    assert summary.verify_cut is not None
    assert (summary.candidates, summary.rejected, summary.pairs) == (3, 2, 1)
    state = rows(cat)
    assert state[red][0] == state[bright][0] == red  # the brighter copy is a duplicate
    assert state[green][:2] == (None, True)  # the green product is not


def test_incremental_run_verifies_new_pairs(silhouettes: dict) -> None:
    cat = silhouettes["catalog"]
    red = silhouettes["red"]
    run_dedupe(cat)
    blue, copy = add_images(cat, [encode(silhouette((60, 85, 230))),
                                  encode(silhouette(RED), quality=30)], product="q")
    summary = run_dedupe(cat)
    assert summary.mode == "incremental" and summary.compared == 2
    state = rows(cat)
    assert state[copy][0] == red and state[silhouettes["bright"]][0] == red
    assert state[blue][0] is None and state[silhouettes["green"]][0] is None


def test_unreadable_file_is_not_accepted(silhouettes: dict) -> None:
    cat = silhouettes["catalog"]
    with cat.session() as session:
        path = session.scalar(select(Image.path).where(Image.id == silhouettes["bright"]))
    cat.store.path(str(path)).unlink()
    i, j = np.array([0, 0]), np.array([1, 2])
    ids = np.array([silhouettes["red"], silhouettes["green"], silhouettes["bright"]])
    keep, unreadable = verify_pairs(cat, ids, i, j, 0.9)
    assert keep.tolist() == [False, False] and unreadable == 1


def test_bad_verification_cut_is_refused(silhouettes: dict) -> None:
    with pytest.raises(InvalidInput, match="cut-off"):
        run_dedupe(silhouettes["catalog"], verify_cut=1.5)
