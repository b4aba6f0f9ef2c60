"""``--action info``: the levels of a backup name, or every backup name in the container."""

from __future__ import annotations

import logging

from freezer.actions.base import Job
from freezer.common import dates
from freezer.errors import NotFound
from freezer.storage.base import Storage
from freezer.storage.chains import LONG_CHAIN, BackupRef, Chain, long_chains, restore_length
from freezer.storage.layout import ENGINE, BackupSet
from freezer.storage.leftovers import incomplete_levels
from freezer.storage.metadata import BadMetadata

LOG = logging.getLogger(__name__)



class InfoJob(Job):
    """List the chains of a backup name: levels, dates and sizes."""

    def run(self) -> dict:
        if not self.conf.backup_name:
            return self.result(names=[_name_row(self.storage, host, name) for host, name in backup_names(self.storage)])
        backups = self.backups()
        chains = backups.chains()
        rows = [_info_row(backups, ref) for chain in chains for ref in chain.backups]
        long = [_long_chain_row(chain) for chain in long_chains(chains)]
        if long:
            LOG.warning("%s", long_chain_warning(self.conf.backup_name, long))
        incomplete = [{"l0_time_stamp": ref.l0_ts, "level": ref.level, "time_stamp": ref.ts,
                       "date": dates.show(ref.ts)} for ref in incomplete_levels(backups.inventory())]
        if not rows and not incomplete:
            raise NotFound(f"no backup named {self.conf.backup_name!r} for --hostname {self.conf.hostname} in "
                           f"{self.storage.describe()}: --action info without --backup-name lists the backups there")
        return self.result(backups=rows, incomplete=incomplete, long_chains=long)




def _long_chain_row(chain: Chain) -> dict:
    """A chain longer than LONG_CHAIN as the result's ``long_chains`` lists it."""
    return {"l0_time_stamp": chain.l0_ts, "date": dates.show(chain.l0_ts), "backups": len(chain.backups),
            "highest_level": chain.highest_level, "restore_reads": restore_length(chain)}


def long_chain_warning(backup_name: str, long: list[dict]) -> str:
    """One line about the chains in ``long`` (oldest first), naming the newest and how to bound them."""
    newest = long[-1]
    if len(long) == 1:
        what = f"the chain of {newest['date']} holds {newest['backups']} backups"
    else:
        what = (f"{len(long)} chains hold more than {LONG_CHAIN} backups each (the newest, of {newest['date']}, "
                f"{newest['backups']})")
    reads = f", and a restore of its newest state reads {newest['restore_reads']}" if newest["restore_reads"] else ""
    return (f"backup {backup_name!r}: {what}{reads}: bound chains with --max-level, --restart-always-level "
            "or both --always-level and --restart-always-level (user guide: Bounding a chain)")


def backup_names(storage: Storage) -> list[tuple[str, str]]:
    """(host, backup name) of every backup set in the container, from its ``metadata/<engine>/`` tree."""
    found = []
    for prefix in storage.listdir(f"metadata/{ENGINE}"):
        host, _, name = prefix.partition("_")
        if host and name and "/" not in name:
            found.append((host, name))
    return sorted(found)


def _name_row(storage: Storage, host: str, name: str) -> dict:
    """One backup set as ``--action info`` without ``--backup-name`` lists it."""
    backups = BackupSet(storage, host, name)
    chains = backups.chains()
    refs = [ref for chain in chains for ref in chain.backups]
    sizes = [_info_row(backups, ref)["size"] for ref in refs]
    newest = max((ref.ts for ref in refs), default=None)
    return {"hostname": host, "backup_name": name, "chains": len(chains), "levels": len(refs),
            "newest": dates.show(newest) if newest else None, "newest_time_stamp": newest,
            "size": sum(size for size in sizes if size is not None)}




def _info_row(backups: BackupSet, ref: BackupRef) -> dict:
    """One backup as ``--action info`` lists it; bad metadata marks it unreadable, not the listing."""
    row = {"l0_time_stamp": ref.l0_ts, "level": ref.level, "time_stamp": ref.ts, "date": dates.show(ref.ts)}
    try:
        metadata = backups.read_metadata(ref)
    except BadMetadata as exc:
        LOG.warning("%s", exc)
        return {**row, "size": None, "compression": None, "encryption": None, "unreadable": str(exc)}
    return {**row, "size": metadata.data_size, "compression": metadata.compression,
            "encryption": metadata.encryption}




