"""Level choice, restore plans and retention (pure logic); how listings are asked of a storage."""

import fixtures
import testtools

from freezer.storage import chains as chain_rules
from freezer.storage import layout, leftovers
from freezer.storage.chains import BackupRef, LevelPolicy
from freezer.storage.local import LocalStorage
from freezer.storage.multiple import MultiStorage


def chain(*levels_and_ts):
    """A chain from (level, ts) pairs; the first is level 0."""
    l0 = levels_and_ts[0][1]
    return chain_rules.Chain(tuple(BackupRef(l0, ts, level) for level, ts in levels_and_ts))


class TestPlanLevel(testtools.TestCase):
    def test_first_backup_is_level_zero(self):
        self.assertEqual(0, chain_rules.plan_level([], 100, LevelPolicy()).level)

    def test_not_incremental_always_level_zero(self):
        plan = chain_rules.plan_level([chain((0, 10))], 100, LevelPolicy(incremental=False))
        self.assertEqual((0, None), (plan.level, plan.parent))

    def test_incremental_builds_on_newest(self):
        plan = chain_rules.plan_level([chain((0, 10), (1, 20))], 100, LevelPolicy())
        self.assertEqual((2, 10, BackupRef(10, 20, 1)), (plan.level, plan.l0_ts, plan.parent))

    def test_parent_may_be_ahead_of_the_clock(self):
        plan = chain_rules.plan_level([chain((0, 10), (1, 11))], 10, LevelPolicy())
        self.assertEqual((2, BackupRef(10, 11, 1)), (plan.level, plan.parent))

    def test_max_level_starts_new_chain(self):
        plan = chain_rules.plan_level([chain((0, 10), (1, 20))], 100, LevelPolicy(max_level=1))
        self.assertEqual(0, plan.level)

    def test_below_max_level_goes_on(self):
        plan = chain_rules.plan_level([chain((0, 10), (1, 20))], 100, LevelPolicy(max_level=3))
        self.assertEqual(2, plan.level)

    def test_always_level_is_differential(self):
        plan = chain_rules.plan_level([chain((0, 10), (1, 20), (2, 30))], 100, LevelPolicy(always_level=2))
        self.assertEqual((2, BackupRef(10, 20, 1)), (plan.level, plan.parent))

    def test_always_level_exceeded_starts_new_chain(self):
        plan = chain_rules.plan_level([chain((0, 10), (1, 20), (2, 30))], 100, LevelPolicy(always_level=1))
        self.assertEqual(0, plan.level)

    def test_restart_always_level_counts_from_level_zero(self):
        policy = LevelPolicy(always_level=1, restart_always_level=1)
        self.assertEqual(1, chain_rules.plan_level([chain((0, 0), (1, 80000))], 86399, policy).level)
        self.assertEqual(0, chain_rules.plan_level([chain((0, 0), (1, 80000))], 86400, policy).level)


def daily(policy: LevelPolicy, days: int) -> list[chain_rules.Chain]:
    """The chains ``days`` daily backups under ``policy`` leave, as plan_level chooses their levels."""
    refs: list[BackupRef] = []
    for day in range(days):
        now = (day + 1) * chain_rules.SECONDS_PER_DAY
        plan = chain_rules.plan_level(chain_rules.group_chains(refs), now, policy)
        refs.append(BackupRef(plan.l0_ts or now, now, plan.level))
    return chain_rules.group_chains(refs)


class TestBoundingChains(testtools.TestCase):
    """What the user guide's "Bounding a chain" says, over 90 daily backups."""

    def test_plain_incremental_never_ends_and_is_reported(self):
        chains = daily(LevelPolicy(), 90)
        self.assertEqual(1, len(chains))
        self.assertEqual([chains[0]], chain_rules.long_chains(chains))
        self.assertEqual(90, chain_rules.restore_length(chains[0]))

    def test_max_level_bounds_length_and_restore(self):
        chains = daily(LevelPolicy(max_level=6), 90)
        self.assertEqual({7}, {len(c.backups) for c in chains[:-1]})  # levels 0..6: a weekly chain
        self.assertEqual([], chain_rules.long_chains(chains))

    def test_always_level_alone_bounds_restore_not_length(self):
        chains = daily(LevelPolicy(always_level=1), 90)
        self.assertEqual(1, len(chains))
        self.assertEqual(2, chain_rules.restore_length(chains[0]))  # level 0 and the newest level 1
        self.assertEqual([chains[0]], chain_rules.long_chains(chains))

    def test_restart_always_level_bounds_length(self):
        for policy in (LevelPolicy(always_level=1, restart_always_level=7), LevelPolicy(restart_always_level=7)):
            chains = daily(policy, 90)
            self.assertEqual({7}, {len(c.backups) for c in chains[:-1]}, policy)
            self.assertEqual([], chain_rules.long_chains(chains))

    def test_threshold_is_more_than_thirty(self):
        self.assertEqual([], chain_rules.long_chains(daily(LevelPolicy(), 30)))
        self.assertEqual(1, len(chain_rules.long_chains(daily(LevelPolicy(), 31))))

    def test_restore_length_of_a_broken_chain_is_unknown(self):
        self.assertIsNone(chain_rules.restore_length(chain((0, 10), (2, 30))))


class TestRestorePlan(testtools.TestCase):
    chains = [chain((0, 10), (1, 20)), chain((0, 100), (1, 110), (2, 120), (2, 130))]

    def test_newest(self):
        plan = chain_rules.restore_plan(self.chains)
        self.assertEqual([(0, 100), (1, 110), (2, 130)], [(b.level, b.ts) for b in plan])

    def test_by_date_inside_chain(self):
        plan = chain_rules.restore_plan(self.chains, until=125)
        self.assertEqual([(0, 100), (1, 110), (2, 120)], [(b.level, b.ts) for b in plan])

    def test_by_date_older_chain(self):
        plan = chain_rules.restore_plan(self.chains, until=99)
        self.assertEqual([(0, 10), (1, 20)], [(b.level, b.ts) for b in plan])

    def test_before_everything(self):
        self.assertEqual([], chain_rules.restore_plan(self.chains, until=5))

    def test_nothing(self):
        self.assertEqual([], chain_rules.restore_plan([]))


class TestRetentionAndNames(testtools.TestCase):
    def test_old_chains_removed_but_never_newest(self):
        chains = [chain((0, 10)), chain((0, 20)), chain((0, 30))]
        self.assertEqual([10, 20], [c.l0_ts for c in chain_rules.chains_to_remove(chains, 1000)])
        self.assertEqual([10], [c.l0_ts for c in chain_rules.chains_to_remove(chains, 15)])

    def test_chain_without_level_zero_is_dropped(self):
        refs = [BackupRef(10, 20, 1), BackupRef(30, 30, 0)]
        self.assertEqual([30], [c.l0_ts for c in chain_rules.group_chains(refs)])

    def test_timestamps_stay_unique(self):
        self.assertEqual(51, chain_rules.next_timestamp([BackupRef(40, 50, 0)], 50))
        self.assertEqual(60, chain_rules.next_timestamp([BackupRef(40, 50, 0)], 60))

    def test_bad_names_refused(self):
        for bad in ("", "a/b", "..", "."):
            self.assertRaises(layout.FreezerError, layout.check_name, "--backup-name", bad)


DONE = leftovers.LevelFiles(frozenset({"data", "engine_metadata"}), frozenset({"metadata"}))
HOUR = 3600


def running(*names):
    """A level being written: files under data/, no metadata yet."""
    return leftovers.LevelFiles(frozenset(names))


class TestLeftovers(testtools.TestCase):
    """Which levels never completed, and which of them (and which partial uploads) admin removes."""

    now = 1_000_000

    def test_incomplete_levels_lack_metadata(self):
        inventory = {BackupRef(10, 10, 0): DONE, BackupRef(10, 20, 1): running(".data.partial-0123abcd"),
                     BackupRef(10, 30, 2): leftovers.LevelFiles(frozenset(), frozenset({".metadata.partial-00ff00ff"}))}
        self.assertEqual([BackupRef(10, 20, 1), BackupRef(10, 30, 2)], leftovers.incomplete_levels(inventory))

    def test_partial_names(self):
        self.assertTrue(leftovers.is_partial(".data.partial-0123abcd"))
        self.assertTrue(leftovers.is_partial(".engine_metadata.partial-deadbeef"))
        for name in ("data", "metadata", ".claim", ".data.partial-", "data.partial-0123abcd", ".claim-0123abcd"):
            self.assertFalse(leftovers.is_partial(name), name)

    def test_age_comes_from_the_level_timestamp(self):
        ref = BackupRef(0, self.now - 24 * HOUR, 0)
        self.assertTrue(leftovers.old_enough(ref, self.now, 24))
        self.assertFalse(leftovers.old_enough(ref, self.now, 24.01))
        self.assertTrue(leftovers.old_enough(BackupRef(0, self.now, 0), self.now, 0))

    def test_old_incomplete_level_removed_young_one_kept(self):
        l0 = self.now - 100 * HOUR
        old, young = BackupRef(l0, self.now - 30 * HOUR, 1), BackupRef(l0, self.now - HOUR, 2)
        inventory = {BackupRef(l0, l0, 0): DONE, old: running(".data.partial-0123abcd"), young: running()}
        found = leftovers.leftovers(inventory, self.now, 24)
        self.assertEqual(((), (old,), ()), (found.chains, found.levels, found.partials))
        self.assertEqual((old, young), leftovers.leftovers(inventory, self.now, 0).levels)

    def test_chain_whose_level_zero_never_completed_goes_whole(self):
        l0 = self.now - 48 * HOUR
        inventory = {BackupRef(l0, l0, 0): running(), BackupRef(l0, l0 + 5, 1): DONE,
                     BackupRef(self.now, self.now, 0): running()}
        found = leftovers.leftovers(inventory, self.now, 24)
        self.assertEqual((l0,), found.chains)
        self.assertEqual((BackupRef(l0, l0, 0), BackupRef(l0, l0 + 5, 1)), found.levels)

    def test_chain_without_level_zero_directory_goes_whole(self):
        l0 = self.now - 48 * HOUR
        found = leftovers.leftovers({BackupRef(l0, l0 + 5, 1): DONE}, self.now, 24)
        self.assertEqual(((l0,), (BackupRef(l0, l0 + 5, 1),)), (found.chains, found.levels))

    def test_stray_partials_in_complete_levels(self):
        l0 = self.now - 48 * HOUR
        files = leftovers.LevelFiles(frozenset({"data", ".data.partial-0123abcd"}),
                                  frozenset({"metadata", ".metadata.partial-89abcdef"}))
        ref = BackupRef(l0, l0, 0)
        found = leftovers.leftovers({ref: files}, self.now, 24)
        self.assertEqual((), found.levels)
        self.assertEqual((("data", ref, ".data.partial-0123abcd"), ("metadata", ref, ".metadata.partial-89abcdef")),
                         found.partials)
        self.assertEqual((), leftovers.leftovers({ref: files}, self.now, 49).partials)

    def test_complete_backups_are_no_leftovers(self):
        inventory = {BackupRef(10, 10, 0): DONE, BackupRef(10, 20, 1): DONE}
        self.assertEqual(leftovers.Leftovers(), leftovers.leftovers(inventory, self.now, 0))
        self.assertEqual([], leftovers.incomplete_levels(inventory))


class TestNewestChainListsOnlyWhatItNeeds(testtools.TestCase):
    """Backup and restore list the chains they look at, not the whole history (each listing is a round trip)."""

    def setUp(self):
        super().setUp()
        from freezer.storage.local import LocalStorage

        self.storage = LocalStorage(self.useFixture(fixtures.TempDir()).path)
        self.listed: list[str] = []
        real_listdir = self.storage.listdir
        self.storage.listdir = lambda path: (self.listed.append(path), real_listdir(path))[1]
        self.backups = layout.BackupSet(self.storage, "host", "name")
        for l0 in (100, 200, 300):
            for level, ts in ((0, l0), (1, l0 + 10), (2, l0 + 20)):
                self.backups.write_metadata(BackupRef(l0, ts, level), {"level": level})
        self.storage.claim(self.backups.metadata_path(BackupRef(400, 400, 0)).rsplit("/", 1)[0])  # never completed
        self.listed.clear()

    def test_newest_complete_chain_skips_a_level_zero_that_never_completed(self):
        chain = self.backups.newest_chain()
        self.assertEqual([BackupRef(300, 300, 0), BackupRef(300, 310, 1), BackupRef(300, 320, 2)], list(chain.backups))
        self.assertFalse(any("/100" in path or "/200" in path for path in self.listed), self.listed)

    def test_restore_by_date_lists_the_chain_it_restores_and_newer_ones_only(self):
        self.assertEqual([BackupRef(200, 200, 0), BackupRef(200, 210, 1)], self.backups.plan_restore(until=215))
        self.assertFalse(any("/100" in path for path in self.listed), self.listed)

    def test_same_plan_as_from_every_chain(self):
        for until in (None, 99, 100, 150, 215, 320, 10_000):
            expected = chain_rules.restore_plan(self.backups.chains(), until)
            self.assertEqual(expected, self.backups.plan_restore(until))


class CountingStorage(LocalStorage):
    """Local storage that records each listing call: one per ``listdirs``, whatever its length."""

    def __init__(self, root: str):
        super().__init__(root)
        self.calls: list[str] = []

    def listdir(self, path: str) -> list[str]:
        self.calls.append("listdir")
        return super().listdir(path)

    def listdirs(self, paths):
        self.calls.append("listdirs")
        return [LocalStorage.listdir(self, path) for path in paths]


class TestListingPerDepth(testtools.TestCase):
    """A storage that lists several directories at once is asked once per depth of the tree, not per directory."""

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.storage = CountingStorage(root)
        self.backups = layout.BackupSet(self.storage, "host", "name")
        self.refs = [BackupRef(1000, 1000, 0), BackupRef(1000, 1001, 1), BackupRef(2000, 2000, 0),
                     BackupRef(2000, 2001, 1), BackupRef(2000, 2002, 2)]
        for ref in self.refs:
            self.storage.put_bytes(self.backups.data_path(ref), b"data")
            self.storage.put_bytes(self.backups.metadata_path(ref), b"{}")
        self.storage.put_bytes(self.backups.data_path(BackupRef(2000, 2003, 3)), b"no metadata")
        self.storage.calls.clear()

    def test_list_backups(self):
        self.assertEqual(self.refs, self.backups.list_backups())
        self.assertEqual(["listdirs"] * 3, self.storage.calls)

    def test_inventory(self):
        inventory = self.backups.inventory()
        self.assertEqual(6, len(inventory))
        self.assertFalse(inventory[BackupRef(2000, 2003, 3)].complete)
        self.assertEqual(["listdirs"] * 3, self.storage.calls)  # both trees walked together


class TestMultipleListings(testtools.TestCase):
    def test_every_name_any_storage_has(self):
        first, second = (LocalStorage(self.useFixture(fixtures.TempDir()).path) for _ in range(2))
        first.put_bytes("a/one", b"")
        second.put_bytes("a/two", b"")
        second.put_bytes("b/three", b"")
        both = MultiStorage([first, second])
        self.assertEqual([["one", "two"], ["three"], []], both.listdirs(["a", "b", "c"]))
