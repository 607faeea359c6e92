"""What the benchmarks (ingest.py, engine.py, segments.py) share: paths, errors and
exit codes, database and Redis set-up with their guards, child processes and granian,
CPU sampling from /proc, and the report's log lines and table."""
