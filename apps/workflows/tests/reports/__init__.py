"""The workflow report: its numbers, its statistics, and its admin page.

Most tests write enrollments, step runs and messages straight into the database (the
report only reads them); one runs the real engine to check the two agree.
"""
