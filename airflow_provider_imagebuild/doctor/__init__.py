"""``imagebuild doctor``: whether this worker has what the pipeline specs it runs need.

A milestone that finds Packer without its plugin, the Azure SDK missing or a connection undefined
fails an hour into a build, on the worker that picked it up. The doctor asks the same questions
up front, on each worker, without touching a cloud: which tools the specs' actions call (Packer
and the builders and plugins of the templates they name, Ansible, debootstrap and qemu-img for
the local target), which Python extras their clouds, destinations and notifications import,
which Airflow connections they name, and which store their builds are recorded in (the one
network call: a probe write to that store, which can be skipped).

:mod:`.needs` turns specs into needs (pure), the other modules each examine one kind of thing,
and :mod:`.report` puts the answers together with the verdict the exit code carries.
"""
