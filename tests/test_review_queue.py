"""The review queue's logic over a real catalog: ordering, filters, resumption, undo, batch."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select

from catalog.errors import InvalidInput, ModelNotFound, UnknownCategory
from catalog.labels import current_labels
from catalog.models import Label, Model
from catalog.review import (
    QueueFilter,
    ReviewSession,
    accept_above,
    load_item,
    queue_ids,
    undo,
)

from helpers.review import BAGS, BOTTOM, DEFAULT_QUEUE, TOP, WATCHES, ReviewData


def names(data: ReviewData, ids: list[int]) -> list[str]:
    by_id = {**{v: k for k, v in data.predictions.items()},
             **{v: k for k, v in data.old_predictions.items()}}
    return [by_id[i] for i in ids]


def queue(data: ReviewData, **kw: object) -> list[str]:
    with data.catalog.session() as s:
        return names(data, queue_ids(s, QueueFilter(**kw)))  # type: ignore[arg-type]


def labels(data: ReviewData) -> list[Label]:
    with data.catalog.session() as s:
        return list(s.scalars(select(Label).order_by(Label.id)))


def session(data: ReviewData, **kw: object) -> ReviewSession:
    return ReviewSession(data.catalog, QueueFilter(below=0.7, **kw), author="ann")  # type: ignore[arg-type]


def test_lowest_confidence_first_ties_by_smallest_margin(review_data: ReviewData) -> None:
    assert queue(review_data, below=0.7) == DEFAULT_QUEUE


def test_without_below_everything_undecided_is_queued(review_data: ReviewData) -> None:
    got = queue(review_data)
    assert got[:5] == DEFAULT_QUEUE
    assert "p7" not in got  # decided by a human earlier
    assert got[5:] == ["p4", "p8", "p6", "p11", "p5", "p10"]  # p6/p11 tie


def test_category_filter_takes_sub_categories_and_short_names(review_data: ReviewData) -> None:
    assert queue(review_data, below=0.7, category="Apparel") == ["p0", "p1"]
    assert queue(review_data, below=0.7, category="Shoes") == ["p9", "p2"]
    with pytest.raises(UnknownCategory, match="Hats"):
        queue(review_data, category="Hats")


def test_model_filter_and_its_errors(review_data: ReviewData) -> None:
    assert queue(review_data, model="v0") == ["p3", "p2", "p1", "p0"]
    with pytest.raises(ModelNotFound, match="no model 'v9'"):
        queue(review_data, model="v9")
    with review_data.catalog.session() as s:
        for m in s.scalars(select(Model)):
            m.active = False
    with pytest.raises(ModelNotFound, match="no active model"):
        queue(review_data)


def test_limit_and_bad_numbers(review_data: ReviewData) -> None:
    assert queue(review_data, below=0.7, limit=2) == ["p0", "p1"]
    with pytest.raises(InvalidInput, match="--limit"):
        queue(review_data, limit=0)
    with pytest.raises(InvalidInput, match="--below must be between 0 and 1"):
        queue(review_data, below=1.5)


def test_disagreements_are_confident_contradictions_of_store_labels(
    review_data: ReviewData,
) -> None:
    assert queue(review_data, disagreements=True) == ["p5", "p8"]
    with pytest.raises(InvalidInput, match="--below does not apply"):
        queue(review_data, disagreements=True, below=0.5)


def test_card_facts(review_data: ReviewData) -> None:
    cat = review_data.catalog
    with cat.session() as s:
        p0 = load_item(s, cat.store.path, review_data.predictions["p0"])
        p5 = load_item(s, cat.store.path, review_data.predictions["p5"])
    assert p0.duplicates == 2 and p5.duplicates == 0
    assert p0.image_path is not None and p0.image_path.is_file()
    assert p0.top_k[:2] == [(TOP, 0.40), (BOTTOM, 0.35)]
    assert (p0.title, p0.model_version, p0.store_label) == ("Striped tee, cotton", "v1", None)
    assert p5.store_label == BAGS and p5.category == WATCHES


def test_decisions_commit_at_once_and_the_next_session_resumes(review_data: ReviewData) -> None:
    first = session(review_data)
    assert (first.position, first.total) == (1, 5)
    d0 = first.accept()
    d1 = first.choose(2)  # p1: Topwear instead of Bottomwear
    assert (d0.accepted, d1.accepted, d1.category) == (True, False, TOP)
    # A second process sees both labels straight away: nothing waits for the end of the session.
    second = session(review_data)
    assert names(review_data, second.pending) == ["p9", "p2", "p3"]
    new = [lb for lb in labels(review_data) if lb.author == "ann"]
    assert [(lb.source, lb.model_version) for lb in new] == [("human", "v1")] * 2
    with review_data.catalog.session() as s:
        current = {c.product_id: c for c in current_labels(s)}
    assert current[review_data.products["p1"]].category == TOP


def test_choose_a_missing_rank_and_an_unknown_category_write_nothing(
    review_data: ReviewData,
) -> None:
    rs = session(review_data)
    before = len(labels(review_data))
    with pytest.raises(InvalidInput, match="no prediction number 4"):
        rs.choose(4)
    with pytest.raises(UnknownCategory):
        rs.decide("Hats")
    assert len(labels(review_data)) == before
    assert rs.current() is not None and rs.current().prediction_id == review_data.predictions["p0"]


def test_undo_appends_a_retraction_and_shows_the_item_again(review_data: ReviewData) -> None:
    rs = session(review_data)
    decision = rs.choose(3)
    assert names(review_data, rs.pending)[0] == "p1"
    undone = rs.undo()
    assert undone == decision
    assert names(review_data, rs.pending)[0] == "p0" and rs.position == 1
    retraction = labels(review_data)[-1]
    assert (retraction.retracts_id, retraction.category_id) == (decision.label_id, None)
    assert queue(review_data, below=0.7) == DEFAULT_QUEUE  # undone means undecided again
    assert rs.undo() is None  # nothing left to undo in this session
    with review_data.catalog.session() as s, pytest.raises(InvalidInput, match="undone already"):
        undo(s, decision.label_id, "ann")


def test_skip_moves_to_the_end_of_this_session_and_comes_back_next_time(
    review_data: ReviewData,
) -> None:
    rs = session(review_data)
    rs.skip()
    assert (names(review_data, rs.pending), rs.position) == (
        ["p1", "p9", "p2", "p3", "p0"], 1
    )
    for _ in range(4):
        rs.accept()
    assert rs.current() is not None and rs.current().product_id == review_data.products["p0"]
    assert (rs.position, rs.total) == (5, 5)
    assert queue(review_data, below=0.7) == ["p0"]  # a skip writes nothing


def test_summary_uses_the_injected_clock(review_data: ReviewData) -> None:
    ticks = itertools.count(start=100.0, step=2.0)  # every clock read is 2 s later
    rs = ReviewSession(
        review_data.catalog, QueueFilter(below=0.7), "ann", clock=lambda: next(ticks)
    )
    rs.accept()  # shown at 102 -> decided at 104: 2 s
    rs.choose(2)  # 2 s
    rs.skip()
    rs.undo()
    rs.accept()
    s = rs.summary()
    assert (s.decisions, s.accepted, s.corrected, s.undone, s.skipped) == (2, 2, 0, 1, 1)
    assert s.seconds_per_decision == pytest.approx(2.0)
    assert s.seconds_total == pytest.approx(12.0)


def test_batch_accept_dry_run_then_real_then_idempotent(review_data: ReviewData) -> None:
    cat = review_data.catalog
    before = len(labels(review_data))
    with cat.session() as s:
        dry = accept_above(s, 0.95, dry_run=True)
    assert dry.per_category == {BAGS: 1, WATCHES: 1} and dry.total == 2
    assert len(labels(review_data)) == before
    with cat.session() as s:
        real = accept_above(s, 0.95, author="batch")
    assert real.per_category == dry.per_category
    new = labels(review_data)[before:]
    assert sorted((lb.product_id, lb.source, lb.model_version, lb.confidence) for lb in new) == [
        (review_data.products["p10"], "model-accepted", "v1", 0.99),
        (review_data.products["p11"], "model-accepted", "v1", 0.96),
    ]
    with cat.session() as s:
        assert accept_above(s, 0.95).total == 0
        assert accept_above(s, 0.90, dry_run=True).per_category == {}  # p8/p5/p6 have store labels
        with pytest.raises(InvalidInput, match="between 0 and 1"):
            accept_above(s, 1.2)


def test_batch_accept_skips_human_decided_products(review_data: ReviewData) -> None:
    rs = ReviewSession(review_data.catalog, QueueFilter(), "ann")
    while rs.current() is not None and rs.current().product_id != review_data.products["p10"]:
        rs.skip()
    rs.choose(2)
    with review_data.catalog.session() as s:
        assert accept_above(s, 0.95).per_category == {BAGS: 1}
        assert s.scalar(select(func.count(Label.id)).where(Label.source == "model-accepted")) == 1


def test_a_locked_catalog_keeps_the_item_and_the_session(review_data: ReviewData) -> None:
    import dataclasses
    import sqlite3

    from catalog.db import open_catalog
    from catalog.errors import CatalogLocked

    settings = dataclasses.replace(review_data.catalog.settings, busy_timeout_s=0.1)
    cat = open_catalog(settings)
    try:
        rs = ReviewSession(cat, QueueFilter(below=0.7), "ann")
        rs.current()
        other = sqlite3.connect(settings.home / "catalog.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process is writing
        with pytest.raises(CatalogLocked, match="locked"):
            rs.accept()
        assert (rs.position, names(review_data, rs.pending)) == (1, DEFAULT_QUEUE)
        other.execute("ROLLBACK")
        other.close()
        assert rs.accept().accepted and rs.position == 2
    finally:
        cat.close()
