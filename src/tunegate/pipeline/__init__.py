"""The commands that chain the stages: audit (fine-tune, run, compare, gate, report), demo, compare/gate/report,
scoring files and validating scorers. Runs are passed in memory within one process; files are read at the boundary."""
