"""The same builds from Concourse: one milestone run outside Airflow (:mod:`.run`), a Concourse
pipeline rendered from a spec (:mod:`.render`), and the state store as a Concourse resource type
(:mod:`.resource`). The store is shared: a build started in one engine resumes in the other."""
