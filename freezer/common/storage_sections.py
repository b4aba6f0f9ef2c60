"""``[storage:NAME]`` sections of a ``--config`` ini file: one storage each, as upstream writes them.

Each section names a ``storage`` and a ``container`` and the options that reach it (``ftp_host``,
``ssh_key``...); an option a section leaves out is the one of the job itself.
"""

from __future__ import annotations

import configparser

from freezer.common import config, credentials, inputs
from freezer.errors import FreezerError


class SectionConf:
    """The job's options seen through one section: the section's values first, then the job's."""

    #: a section is one storage, never several
    freezer_storages: tuple = ()

    def __init__(self, name: str, conf, values: dict[str, object]):
        self.section = name
        self._conf = conf
        self._values = values

    def __getattr__(self, dest: str):
        if dest.startswith("_"):
            raise AttributeError(dest)
        if dest in self._values:
            return self._values[dest]
        return getattr(self._conf, dest)

    def __getitem__(self, dest: str):
        return getattr(self, dest)


def read(path: str, conf) -> list[SectionConf]:
    """The ``[storage:NAME]`` sections of ``path``, in file order, as option views."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.read_string(inputs.read_config_text(path), path)  # read_ini has already reported a bad file
    sections = []
    for section in parser.sections():
        if not section.lower().startswith("storage:"):
            continue
        values = {}
        for key, raw in parser.items(section):
            opt = config.option_for(key)
            if opt is None:
                raise FreezerError(f"--config {path}: [{section}] has unknown option {key!r}")
            values[opt.dest] = config.coerce(opt, raw)
            if opt.dest in inputs.HOST_OPTIONS and values[opt.dest]:
                inputs.check_host(f"[{section}] {opt.dest}", values[opt.dest])
        _secrets_from_files(values, section)
        if not values.get("storage"):
            raise FreezerError(f"--config {path}: [{section}] needs storage = local, ftp, sftp, s3...")
        sections.append(SectionConf(section, conf, values))
    return sections


def _secrets_from_files(values: dict, section: str) -> None:
    """A section's ``*_password_file`` (or ``secret_key_file``) gives its password; else the job's is used."""
    for option, (file_option, _env) in credentials.SECRET_SOURCES.items():
        found = credentials.secret(values.get, option, f"[{section}] {file_option}", environ={})
        if found is not None:
            values[option] = found
