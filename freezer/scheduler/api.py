"""freezer-api as the scheduler sees it, through python-freezerclient on a keystoneauth1 session."""

from __future__ import annotations

import logging
import socket
import time

from freezer.errors import FreezerError

LOG = logging.getLogger(__name__)
PAGE = 10
#: the longest failure reason written to freezer-api (the agent's error line, rarely longer)
MAX_REASON = 1000
ACTIVE_JOBS = {"match_not": [{"status": "completed"}]}


def _missing_extra(exc: ImportError) -> FreezerError:
    return FreezerError(f"freezer-api mode needs keystoneauth1 and python-freezerclient ({exc.name} is missing): "
                        "pip install '.[api]' from freezer's checkout, or run with --no-api")


def keystone_session(auth: dict, insecure: bool):
    """A keystoneauth1 session from ``[service_auth]`` (upstream's ``os_*`` keys)."""
    try:
        from keystoneauth1 import session
        from keystoneauth1.identity import generic
    except ImportError as exc:
        raise _missing_extra(exc) from exc
    if not auth.get("os_auth_url"):
        raise FreezerError("no Keystone URL: set os_auth_url in [service_auth] of --config-file (or $OS_AUTH_URL)")
    scope = {key: auth.get(f"os_{key}") for key in
             ("project_id", "project_name", "project_domain_id", "project_domain_name")}
    if auth.get("os_token"):
        plugin = generic.Token(auth_url=auth["os_auth_url"], token=auth["os_token"], **scope)
    else:
        plugin = generic.Password(auth_url=auth["os_auth_url"], username=auth.get("os_username"),
                                  password=auth.get("os_password"), user_domain_id=auth.get("os_user_domain_id"),
                                  user_domain_name=auth.get("os_user_domain_name"), **scope)
    verify = False if insecure else (auth.get("os_cacert") or True)
    return session.Session(auth=plugin, verify=verify, cert=auth.get("os_cert") or None)


class FreezerApi:
    """The calls the scheduler makes: register, list its jobs, report, record backups and sessions."""

    def __init__(self, client, client_id: str):
        self.client = client
        self.client_id = client_id

    @classmethod
    def connect(cls, auth: dict, insecure: bool, client_id: str | None) -> FreezerApi:
        """Log in to Keystone and find freezer-api (the ``backup`` service, or ``os_backup_url``)."""
        try:
            from freezerclient.v2 import client as v2
        except ImportError as exc:
            raise _missing_extra(exc) from exc
        sess = keystone_session(auth, insecure)
        client = v2.Client(session=sess, endpoint=auth.get("os_backup_url"), insecure=insecure,
                           endpoint_type=auth.get("os_endpoint_type") or "public")
        project = _call("log in to Keystone", sess.get_project_id)
        client_id = client_id or f"{project}_{socket.gethostname()}"
        client.client_id = client_id
        return cls(client, client_id)

    def register(self, capabilities: dict) -> None:
        """Register this host as a client with its capabilities; 409 (already registered) is fine."""
        doc = {"client_id": self.client_id, "hostname": socket.gethostname(), "is_central": False, **capabilities}
        try:
            self.client.clients.create(doc)
        except Exception as exc:  # noqa: BLE001 - freezerclient raises its own and requests' errors
            if getattr(exc, "status_code", None) == 409:
                LOG.info("client %s already registered", self.client_id)
                return
            raise _api_error(f"register client {self.client_id}", exc) from exc
        LOG.info("client %s registered", self.client_id)

    def active_jobs(self) -> list[dict]:
        """This client's jobs that are not completed, every page of them."""
        jobs: list[dict] = []
        while True:
            page = _call("list jobs", self.client.jobs.list, limit=PAGE, offset=len(jobs),
                         search={"match_not": list(ACTIVE_JOBS["match_not"])}, client_id=self.client_id)
            jobs.extend(page)
            if len(page) < PAGE:
                return jobs

    def report(self, job: dict) -> None:
        """PATCH the job's schedule and session fields (never its actions, which would conflict)."""
        doc = {"job_schedule": job.get("job_schedule", {}), "session_id": job.get("session_id", ""),
               "session_tag": job.get("session_tag", 0)}
        _call(f"update job {job['job_id']}", self.client.jobs.update, job["job_id"], doc)

    def report_action(self, job: dict, index: int, error: str | None) -> None:
        """Keep an action's last failure reason in its freezer_action (``last_error``, shown by ``job-show``).

        ``None`` clears a reason left by an earlier run; an action without an ``action_id`` is skipped.
        """
        action = job["job_actions"][index]
        freezer_action = {k: v for k, v in (action.get("freezer_action") or {}).items() if v is not None}
        had = freezer_action.pop("last_error", None)
        freezer_action.pop("last_error_date", None)
        if not action.get("action_id") or (error is None and had is None):
            return
        if error is not None:
            freezer_action.update(last_error=error[:MAX_REASON],
                                  last_error_date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        patch = {"freezer_action": freezer_action}
        patch.update({k: action[k] for k in ("max_retries", "max_retries_interval") if action.get(k) is not None})
        _call(f"report on action {action['action_id']}", self.client.actions.update, action["action_id"], patch)

    def record_backup(self, record: dict, job_id: str) -> None:
        """POST one backup record (``backup-list`` shows it) tied to its job."""
        _call("record the backup", self.client.backups.create, {**record, "job_id": job_id})

    def start_session(self, job: dict) -> None:
        """Tell the job's session that this job starts; keep the session tag it hands back."""
        reply = _call("start the session", self.client.sessions.start_session, job["session_id"], job["job_id"],
                      job.get("session_tag", 0))
        if reply.get("result") == "success":
            job["session_tag"] = reply.get("session_tag", job.get("session_tag", 0))

    def end_session(self, job: dict, result: str) -> None:
        _call("end the session", self.client.sessions.end_session, job["session_id"], job["job_id"],
              job.get("session_tag", 0), result)


def _call(what: str, function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except FreezerError:
        raise
    except Exception as exc:  # noqa: BLE001 - keystoneauth1, requests and freezerclient errors alike
        raise _api_error(what, exc) from exc


def _api_error(what: str, exc: Exception) -> FreezerError:
    status = getattr(exc, "status_code", None)
    detail = f"HTTP {status}: {exc}" if status else f"{type(exc).__name__}: {exc}"
    return FreezerError(f"freezer-api: cannot {what}: {detail}")
