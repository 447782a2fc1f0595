"""Times as people read them in the CLI: the form the Image builds pages use, in this machine's zone.

Its own module because both the answers (:mod:`.output`) and the tables (:mod:`.render`) show
times, and the tables are drawn by the answers: neither should import the other for it.
"""

from __future__ import annotations

from datetime import datetime, timezone


def shown_time(stamp: str | None) -> str:
    """A stored time (``2026-11-27T07:03:12.123456Z``) as the Image builds pages show times,
    ``2026-11-27 08:03:12``, in this machine's time zone (``TZ``), its name after it: ``CET``,
    ``UTC``. JSON answers keep the stored form."""
    if not stamp:
        return ""
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).astimezone()
    except ValueError:
        return stamp
    return moment.strftime("%Y-%m-%d %H:%M:%S ") + (moment.tzname() or "")
