"""Disclosure audit: can any suppressed cell be narrowed, from everything published, to an interval
that leaves out a value from 0 to 4? (ewi.disclosure.audit runs it; the figures: system.py; the
linear programs: intervals.py.)"""
