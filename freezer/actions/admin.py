"""``--action admin``: old chains and incomplete levels removed."""

from __future__ import annotations

import logging
import time

from freezer.actions.base import Job, require
from freezer.common import dates
from freezer.errors import FreezerError
from freezer.storage.chains import chains_to_remove
from freezer.storage.layout import BackupSet
from freezer.storage.leftovers import Leftovers, leftovers

LOG = logging.getLogger(__name__)



class AdminJob(Job):
    """Remove old chains (``--remove-older-than`` or ``--remove-from-date``)."""

    def run(self) -> dict:
        require(self.conf, "backup_name")
        cutoff = self._cutoff()
        backups = self.backups()
        doomed = chains_to_remove(backups.chains(), cutoff)
        for chain in doomed:
            LOG.info("removing chain %s (%d backups)", dates.show(chain.l0_ts), len(chain.backups))
            if not self.conf.dry_run:
                backups.remove_chain(chain)
        gone = self._remove_leftovers(backups)
        if not self.conf.dry_run:
            self._prune_timestamps(backups)
        return self.result(removed=[c.l0_ts for c in doomed], cutoff=cutoff, dry_run=self.conf.dry_run,
                           removed_incomplete=[{"l0_time_stamp": r.l0_ts, "level": r.level, "time_stamp": r.ts}
                                               for r in gone.levels],
                           removed_partials=[backups.partial_path(*partial) for partial in gone.partials])

    def _prune_timestamps(self, backups: BackupSet) -> None:
        """Keep the timestamp claims of complete backups in the chains kept, and the young ones (a
        backup may be running); the others, of removed chains or of backups that never completed, go."""
        chains = backups.chains()
        if not chains:
            return
        oldest = chains[0].l0_ts
        complete = {ref.ts for chain in chains for ref in chain.backups}
        young_after = time.time() - self.conf.remove_incomplete_after * 3600
        backups.prune_timestamps(lambda ts: ts >= oldest and (ts in complete or ts > young_after))

    def _remove_leftovers(self, backups: BackupSet) -> Leftovers:
        """Levels that never completed and stray partial uploads older than --remove-incomplete-after."""
        found = leftovers(backups.inventory(), int(time.time()), self.conf.remove_incomplete_after)
        for ref in found.levels:
            LOG.info("removing incomplete backup %s (%s)", ref.relpath, dates.show(ref.ts))
        for partial in found.partials:
            LOG.info("removing stray partial upload %s", backups.partial_path(*partial))
        if self.conf.dry_run:
            return found
        for l0_ts in found.chains:
            backups.remove_chain_at(l0_ts)
        for ref in found.levels:
            if ref.l0_ts not in found.chains:
                backups.remove_level(ref)
        for partial in found.partials:
            backups.remove_partial(*partial)
        return found

    def _cutoff(self) -> int:
        if self.conf.remove_from_date:
            return dates.parse(self.conf.remove_from_date, "--remove-from-date")
        if self.conf.remove_older_than is not None:
            return int(time.time() - self.conf.remove_older_than * 86400)
        raise FreezerError("--action admin needs --remove-older-than DAYS or --remove-from-date DATE")


