"""The SSH login: the key file, then the password, then the ssh-agent's keys (host keys are hostkeys.py's)."""

from __future__ import annotations

import os
from collections.abc import Callable

import paramiko

from freezer.common.settings import SftpSettings
from freezer.errors import AuthError, reason


def agent_keys(s: SftpSettings) -> list:
    """The ssh-agent's keys, when ``SSH_AUTH_SOCK`` names one; none when it cannot be asked."""
    if not s.agent_socket:
        return []
    try:
        return list(paramiko.Agent().get_keys())
    except (paramiko.SSHException, OSError):
        return []


def authenticate(transport: paramiko.Transport, s: SftpSettings, agent_keys: Callable[[], list]) -> None:
    """Log in with the first credential the server takes; AuthError naming each one tried.

    ``agent_keys`` is called only once the key file and the password were refused or not given.
    """
    tried = []
    if s.key_file:
        tried.append(f"key {s.key_file}")
        if _accepted(lambda: transport.auth_publickey(s.username, load_key(s))):
            return
    if s.password:
        tried.append("password")
        if _accepted(lambda: transport.auth_password(s.username, s.password)):
            return
    for agent_key in agent_keys():
        tried.append("ssh-agent")
        if _accepted(lambda k=agent_key: transport.auth_publickey(s.username, k)):
            return
    what = ", ".join(dict.fromkeys(tried)) or "no password, key or agent"
    raise AuthError(f"login to {s.where} as {s.username!r} refused (tried {what}): check "
                    f"{s.option('username')}, {s.option('password')} or --ssh-key")


def _accepted(attempt: Callable[[], object]) -> bool:
    try:
        attempt()
        return True
    except paramiko.AuthenticationException:
        return False


def load_key(s: SftpSettings) -> paramiko.PKey:
    """The private key of ``--ssh-key``, decrypted with its passphrase; AuthError saying what to fix."""
    try:
        passphrase = s.key_passphrase.encode() if s.key_passphrase else None
        # Positional: paramiko 5.0 renamed this argument from passphrase to password.
        return paramiko.PKey.from_path(os.path.expanduser(s.key_file), passphrase)
    except FileNotFoundError as exc:
        raise AuthError(f"--ssh-key {s.key_file} does not exist") from exc
    except (paramiko.PasswordRequiredException, TypeError) as exc:
        if s.key_passphrase:
            raise AuthError(f"cannot decrypt --ssh-key {s.key_file}: check --ssh-key-passphrase-file") from exc
        raise AuthError(f"--ssh-key {s.key_file} is encrypted: give --ssh-key-passphrase-file") from exc
    except (paramiko.SSHException, ValueError) as exc:
        raise AuthError(f"cannot load --ssh-key {s.key_file} (wrong passphrase or format): {reason(exc)}") from exc
