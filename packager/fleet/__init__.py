"""The fleet at a glance: `mlpack status` and `mlpack logs`, the parts that need no AWS and no terminal.

Plan, then act: these modules work out what to ask AWS as plain data, packager/aws.py asks it (the
one door to AWS), and they turn the answers into views the command line (packager/cli/status.py) renders.

- `facts.py`: the records asked and answered (MetricQuery; StackFacts, AlarmFacts, AlarmChange, Series,
  LogEvent).
- `metrics.py`: which metrics make the figures, their GetMetricData queries (500 to a request), the
  figures and hourly series computed from the answers.
- `view.py`: a lock joined with the stacks, alarms and figures: each model's status (drift, orphans,
  never deployed, alarms first), one model's detail.
- `logs.py`: a log event read as the handler's JSON line, an EMF metrics document, a Lambda platform line
  or plain text; `--since` and the FilterLogEvents pattern.
- `text.py`: sparklines, ages, compact numbers (no colour).

Imports packager.config, packager.errors and handlers' names and contract; never boto3, click or the
other stages (the import-linter layers in pyproject.toml keep it so).
"""
