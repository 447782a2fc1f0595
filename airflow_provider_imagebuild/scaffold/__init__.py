"""``imagebuild init``: a new image-build project for one cloud, made from what the provider ships.

``project`` plans the project (which sample, which files, the placeholders to fill) and is what the
CLI calls; ``os_table`` holds each cloud's table of the OSes its sample can build; ``yaml_edit``
edits the sample spec's text in place so its comments stay; ``writer`` writes the files into a
folder that may hold the team's own, losing none and following no link.
"""
