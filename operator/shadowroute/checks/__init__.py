"""Acceptance checks, the parts that touch the world: `http.judge` (an answer against an
http check's expectations, pure), `job.render_job` (the owned Job of one attempt, pure)
and `runner` (the shell: sends the request, creates and reads the Job, and reports each
finished attempt to the state machine). What a check is and what status records of it
live in `acceptance`, below the state machine.

Imported by module (``from shadowroute.checks import runner``), like `compare`.
"""
