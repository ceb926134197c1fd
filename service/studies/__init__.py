"""Scheduled comparative studies: a sweep re-run on a cron schedule, each run compared with
the previous one. ``spec`` (the study spec), ``schedule`` (cron times in the study's zone,
the missed-firing policy), ``manage`` (create, pause/resume, run now), ``scheduler`` (the
loop inside ``headspec serve`` that fires studies exactly once across replicas)."""
