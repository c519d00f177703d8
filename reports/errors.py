"""The one error of the reports: records, a run root or a README that cannot be reported, for a reason the
user can fix (the message says which file and what to do). `python -m reports` prints it in one line."""


class ReportError(Exception):
    pass
