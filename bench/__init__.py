"""Benchmarks: how much time, memory and prompt the bot adds on top of the LLM's own work.

`python -m bench` runs every section and prints its figures; `python -m bench --quick` is a smoke
run at small scale. Results are written under bench/results/ (git-ignored); docs/benchmarks.md
records a full run with the machine and date.
"""
