"""rebuild.plan: the live records a rebuild writes, from the copies the workers list."""

from kittenfs.rebuild import Found, plan
from kittenfs.records import BlobListing

OLD, NEW = "17979cfe3d85cd1501020304", "17979cfe3d85cd1601020304"
META = (("content-type", "text/plain"), ("x-kfs-manifest", "12 abc-2"))


def copy(version: str, md5: str, meta: tuple[tuple[str, str], ...] = ()) -> BlobListing:
    return BlobListing("b" * 32 + "-" + version, "/k", version, 3, md5, False, 1000, meta)


def test_the_newest_version_comes_back_with_its_metadata() -> None:
    found = Found()
    found.add(0, copy(OLD, "a" * 32, (("content-type", "old"),)))
    for worker in (1, 2, 3):
        found.add(worker, copy(NEW, "b" * 32, META))
    [record], stale = plan(found)
    assert (record.version, record.replicas, record.meta, stale) == (NEW, (1, 2, 3), META, 1)


def test_copies_without_metadata_do_not_outvote_one_with_it() -> None:
    """Copies written before workers kept metadata hold none; a repair gives a copy the
    record's, so the one with metadata is the value's."""
    found = Found()
    found.add(0, copy(NEW, "b" * 32))
    found.add(1, copy(NEW, "b" * 32))
    found.add(2, copy(NEW, "b" * 32, META))
    [record], _ = plan(found)
    assert record.replicas == (0, 1, 2) and record.meta == META


def test_a_value_without_metadata_comes_back_without() -> None:
    found = Found()
    found.add(0, copy(NEW, "b" * 32))
    [record], _ = plan(found)
    assert record.meta == ()
