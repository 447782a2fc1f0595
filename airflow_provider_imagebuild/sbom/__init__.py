"""What is inside an image, and the team's rules for it (#33).

- :mod:`.inventory`: the installed packages, read from the image's own package database (dpkg's
  status file, or ``rpm -qa`` output), with licenses where the image carries them;
- :mod:`.cyclonedx`: that inventory as a CycloneDX JSON document (cyclonedx-python-lib);
- :mod:`.versions`: Debian's and RPM's version ordering;
- :mod:`.advisories`: known vulnerabilities from a file the team provides (OSV, Debian's tracker);
- :mod:`.policy`: the spec's ``policy:`` block checked against an inventory.

Plain data and files: no Airflow, no cloud, no network except an advisory URL the team names.
"""
